"""Monitoring pages: checks with charts, alert rules, incidents with their timeline. Every
change is a service call; views fetch, call and render."""

import time
from datetime import timedelta

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_not_required
from django.core.cache import cache
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db.models import Avg, Count
from django.db.models.functions import TruncWeek
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_POST

from deployments.models import Deployment
from mlops_portal.core.errors import Conflict
from mlops_portal.core.policy import can, require
from mlops_portal.core.utils import service_errors_on
from monitoring import charts, series
from monitoring.choices import CheckKind, CheckState, IncidentState, PingKind, Severity
from monitoring.filters import HealthCheckFilter, IncidentFilter
from monitoring.forms import AlertRuleForm, CheckForm, IncidentForm, MuteForm, NoteForm, SnoozeForm
from monitoring.models import MTTA, MTTR, AlertRule, HealthCheck, Incident
from monitoring.services import alerts, checks, heartbeats, incidents

PER_PAGE = 50
RUNS_SHOWN = 50


def _get_check(pk) -> HealthCheck:
    return get_object_or_404(HealthCheck.objects.select_related("target"), pk=pk)


def _get_incident(pk) -> Incident:
    return get_object_or_404(
        Incident.objects.select_related("target", "deployment__version__model", "commander"),
        pk=pk,
    )


def check_list(request):
    filters = HealthCheckFilter(request.GET, queryset=HealthCheck.objects.select_related("target"))
    page = Paginator(filters.qs, PER_PAGE).get_page(request.GET.get("page"))
    ids = [check.pk for check in page]
    lines = series.sparklines(ids)
    uptimes = series.uptime(ids, timezone.now() - timedelta(days=1))
    rows = [(check, charts.sparkline_points(lines[check.pk]), uptimes[check.pk]) for check in page]
    return render(
        request,
        "monitoring/check_list.html",
        {"page": page, "rows": rows, "filters": filters, "states": CheckState.choices,
         "can_manage": can(request.user, "check.manage")},
    )  # fmt: skip


def check_detail(request, pk):
    check = _get_check(pk)
    chosen = request.GET.get("range", "24h")
    if chosen not in series.RANGES:
        chosen = "24h"
    until = timezone.now()
    since = until - series.RANGES[chosen]
    heartbeat = check.kind == CheckKind.HEARTBEAT
    points = [] if heartbeat else series.points(check.pk, since, until)
    can_manage = can(request.user, "check.manage", check)
    return render(
        request,
        "monitoring/check_detail.html",
        {
            "check": check,
            "heartbeat": heartbeat,
            "runs": check.pings.all()[:RUNS_SHOWN] if heartbeat else [],
            # The ping URL is the job's credential: shown to those who manage checks.
            "ping_url": request.build_absolute_uri(reverse("ping", args=[check.ping_key]))
            if heartbeat and can_manage
            else "",
            "chart": charts.check_chart(points, f"{check.name}, last {chosen}", since, until),
            "ranges": list(series.RANGES),
            "chosen": chosen,
            "uptime": series.uptime([check.pk], since, until)[check.pk],
            "recent": check.results.order_by("-at")[:20],
            "incidents": check.incidents.order_by("-opened_at")[:10],
            "can_manage": can_manage,
            "snooze_form": SnoozeForm(),
            "snoozed": check.snoozed_until and check.snoozed_until > timezone.now(),
        },
    )


def check_form(request, pk=None):
    check = _get_check(pk) if pk else None
    require(request.user, "check.manage", check)
    initial = {}
    if check:
        initial = {name: getattr(check, name) for name in checks.EDITABLE}
        initial["target"], initial["kind"] = check.target, check.kind
    form = CheckForm(request.POST or None, initial=initial)
    if check:
        form.fields["kind"].disabled = True
    if check and check.follows_target:
        form.fields["url"].disabled = True
    if request.method == "POST" and form.is_valid():
        data = dict(form.cleaned_data)
        target = data.pop("target")
        with service_errors_on(form):
            if check:
                data.pop("kind")
                if check.follows_target:
                    data.pop("url")
                check = checks.update_check(request.user, check, **data)
            else:
                check = checks.create_check(request.user, target=target, **data)
            how = (
                "its job pings the URL on this page"
                if check.kind == CheckKind.HEARTBEAT
                else f"it is probed every {check.interval_seconds} s"
            )
            messages.success(request, f"Check {check.name} saved; {how}.")
            return redirect(check)
    return render(request, "monitoring/check_form.html", {"form": form, "check": check})


CHECK_ACTIONS = {"pause": "check.pause", "resume": "check.pause", "snooze": "check.snooze"}


@require_POST
def check_action(request, pk, verb):
    check = _get_check(pk)
    if verb not in CHECK_ACTIONS:
        raise Http404(f"No action {verb!r}.")
    require(request.user, CHECK_ACTIONS[verb])  # a role that never may: 403
    try:
        if verb == "pause":
            checks.set_paused(request.user, check, True)
        elif verb == "resume":
            checks.set_paused(request.user, check, False)
        elif verb == "snooze":
            form = SnoozeForm(request.POST)
            if not form.is_valid():
                raise ValidationError(form.errors.get_json_data())
            checks.snooze(request.user, check, **form.cleaned_data)
        else:
            raise Http404(f"No action {verb!r}.")
    except (ValidationError, PermissionDenied) as exc:
        messages.error(request, " ".join(getattr(exc, "messages", [str(exc)])))
    else:
        messages.success(request, f"Check {check.name}: {verb} done.")
    return redirect(check)


# --- alert rules ---------------------------------------------------------------------------


def _get_rule(pk) -> AlertRule:
    return get_object_or_404(AlertRule.objects.select_related("model", "target"), pk=pk)


def rule_list(request):
    rules = AlertRule.objects.select_related("model", "target").order_by("name", "pk")
    page = Paginator(rules, PER_PAGE).get_page(request.GET.get("page"))
    return render(
        request,
        "monitoring/rule_list.html",
        {"page": page, "can_manage": can(request.user, "rule.manage"), "mute_form": MuteForm()},
    )


def rule_form(request, pk=None):
    rule = _get_rule(pk) if pk else None
    require(request.user, "rule.manage", rule)
    initial = {name: getattr(rule, name) for name in alerts.EDITABLE} if rule else {}
    if rule:
        initial.update(model=rule.model, target=rule.target)
    form = AlertRuleForm(request.POST or None, initial=initial)
    if rule:  # the scope is chosen once
        form.fields["model"].disabled = form.fields["target"].disabled = True
    if request.method == "POST" and form.is_valid():
        data = dict(form.cleaned_data)
        model, target = data.pop("model"), data.pop("target")
        with service_errors_on(form):
            if rule:
                rule = alerts.update_rule(request.user, rule, **data)
            else:
                rule = alerts.create_rule(request.user, model=model, target=target, **data)
            messages.success(request, f"Rule {rule.name} saved: {rule.condition}.")
            return redirect("rule-list")
    return render(request, "monitoring/rule_form.html", {"form": form, "rule": rule})


@require_POST
def rule_action(request, pk, verb):
    rule = _get_rule(pk)
    if verb not in ("mute", "unmute", "delete"):
        raise Http404(f"No action {verb!r}.")
    require(request.user, "rule.manage", rule)  # a viewer: 403
    try:
        if verb == "mute":  # the service checks the reason
            alerts.set_muted(request.user, rule, True, request.POST.get("reason", ""))
        elif verb == "unmute":
            alerts.set_muted(request.user, rule, False)
        else:
            alerts.delete_rule(request.user, rule)
    except ValidationError as exc:
        messages.error(request, f"{rule.name}: {' '.join(exc.messages)}")
    else:
        messages.success(request, f"Rule {rule.name}: {verb} done.")
    return redirect("rule-list")


def incident_list(request):
    filters = IncidentFilter(request.GET, queryset=Incident.objects.for_list())
    page = Paginator(filters.qs, PER_PAGE).get_page(request.GET.get("page"))
    return render(
        request,
        "monitoring/incident_list.html",
        {"page": page, "filters": filters, "severities": Severity.choices,
         "states": IncidentState.choices, "mtta_mttr": incident_figures(),
         "trend": incident_trend(),
         "can_open": can(request.user, "incident.open")},
    )  # fmt: skip


def incident_trend(weeks=8) -> list[dict]:
    """Incidents opened, MTTA and MTTR per week, oldest first, aggregated in SQL."""
    since = timezone.now() - timedelta(weeks=weeks)
    return list(
        Incident.objects.filter(opened_at__gte=since)
        .annotate(week=TruncWeek("opened_at"))
        .values("week")
        .annotate(opened=Count("pk"), mtta=Avg(MTTA), mttr=Avg(MTTR))
        .order_by("week")
    )


def incident_figures(days=30) -> dict:
    """Mean time to acknowledge and to resolve over the last `days`, aggregated in SQL."""
    since = timezone.now() - timedelta(days=days)
    figures = Incident.objects.filter(opened_at__gte=since).aggregate(
        opened=Count("pk"), mtta=Avg(MTTA), mttr=Avg(MTTR)
    )
    return {**figures, "days": days}


def incident_detail(request, pk):
    incident = _get_incident(pk)
    rollback_target = None
    if incident.deployment and incident.deployment.state == "succeeded":
        rollback_target = incident.deployment
    return render(
        request,
        "monitoring/incident_detail.html",
        {
            "incident": incident,
            "events": incident.events.select_related("actor"),
            "can_operate": can(request.user, "incident.resolve", incident),
            "can_note": can(request.user, "incident.note", incident),
            "can_write_postmortem": can(request.user, "docs.write"),
            "can_roll_back": can(request.user, "deployment.rollback", rollback_target),
            "note_form": NoteForm(initial={"severity": incident.severity}),
            "rollback_suggestion": rollback_target,
            "severities": Severity.choices,
        },
    )


def incident_create(request):
    require(request.user, "incident.open")
    initial = {}
    if request.GET.get("deployment"):
        deployment = get_object_or_404(Deployment, pk=request.GET["deployment"])
        initial = {
            "target": deployment.target,
            "title": f"Problem after deployment #{deployment.pk}",
        }
    form = IncidentForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        with service_errors_on(form):
            incident = incidents.open_incident(request.user, **form.cleaned_data)
            return redirect(incident)
    return render(request, "monitoring/incident_form.html", {"form": form})


INCIDENT_ACTIONS = {
    "acknowledge": incidents.acknowledge,
    "mitigate": incidents.mitigate,
    "resolve": incidents.resolve,
}


@require_POST
def incident_action(request, pk, verb):
    incident = _get_incident(pk)
    if verb not in (*INCIDENT_ACTIONS, "note", "severity"):
        raise Http404(f"No action {verb!r}.")
    require(request.user, f"incident.{verb}")  # a role that never may: 403
    form = NoteForm(request.POST)
    form.is_valid()
    note = form.cleaned_data.get("note", "")
    try:
        if verb in INCIDENT_ACTIONS:
            INCIDENT_ACTIONS[verb](request.user, incident, note)
        elif verb == "note":
            incidents.add_note(request.user, incident, note)
        elif verb == "severity":
            incidents.change_severity(
                request.user, incident, form.cleaned_data.get("severity"), note
            )
        else:
            raise Http404(f"No action {verb!r}.")
    except (ValidationError, Conflict, PermissionDenied) as exc:
        messages.error(request, " ".join(getattr(exc, "messages", [str(exc)])))
    return redirect(incident)


# --- heartbeat pings ---------------------------------------------------------------------


@login_not_required  # the one unauthenticated write: the key in the URL is the secret
@csrf_exempt
@never_cache
@require_http_methods(["GET", "POST", "HEAD"])
def ping(request, key, signal="", exit_status=None):
    """A batch job's ping: /ping/<key>[/start|/fail|/<exit status>], an optional log tail
    as the body. Plain-text answers for curl: OK, or what is wrong."""
    if exit_status is not None and exit_status > 255:
        return _plain(400, "The exit status must be 0 to 255.")
    length = request.META.get("CONTENT_LENGTH") or "0"
    if not length.isdigit() or int(length) > settings.HEARTBEAT_BODY_MAX:
        return _plain(413, f"Send at most {settings.HEARTBEAT_BODY_MAX} bytes of log.")
    if _over_rate(key):
        return _plain(429, f"More than {settings.HEARTBEAT_PINGS_PER_MINUTE} pings a minute.")
    kind = {"start": PingKind.START, "fail": PingKind.FAIL}.get(signal, PingKind.SUCCESS)
    recorded = heartbeats.record_ping(
        key, kind, exit_status=exit_status, body=request.read(settings.HEARTBEAT_BODY_MAX),
        remote_addr=request.META.get("REMOTE_ADDR"),
    )  # fmt: skip
    if recorded is None:
        return _plain(404, "No heartbeat check has this key.")
    return _plain(200, "OK")


def _over_rate(key) -> bool:
    """Count this minute's pings of `key` in the cache; a cache that fails lets pings in."""
    name = f"ping-rate:{key}:{int(time.time() // 60)}"
    try:
        cache.add(name, 0, timeout=120)
        return cache.incr(name) > settings.HEARTBEAT_PINGS_PER_MINUTE
    except Exception:
        return False


def _plain(status: int, text: str) -> HttpResponse:
    return HttpResponse(f"{text}\n", status=status, content_type="text/plain; charset=utf-8")
