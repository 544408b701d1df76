from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpResponse, HttpResponseServerError, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template import loader
from django.templatetags.static import static
from django.utils import timezone
from django.views import defaults
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST
from prometheus_client import CONTENT_TYPE_LATEST

from mlops_portal import services
from mlops_portal.core import security_log
from mlops_portal.core import tokens as api_tokens
from mlops_portal.core.policy import can, require
from mlops_portal.core.roles import roles_of
from mlops_portal.core.utils import add_service_errors, service_errors_on
from mlops_portal.health import (
    broker_kind,
    broker_status,
    database_status,
    operations_warnings,
    readiness,
)
from mlops_portal.models import ApiToken, NotificationChannel, Profile
from mlops_portal.overview import charts, dashboards, notifications, portal_metrics
from mlops_portal.overview.changes import ChangeFilter, feed, readable
from mlops_portal.overview.forms import ApiTokenForm, ChannelForm, DashboardForm, EmailEventsForm
from mlops_portal.overview.notifications import events_for
from mlops_portal.overview.search import results, search, search_kind
from mlops_portal.overview.today import record_visit, triage
from mlops_portal.overview.today import since_for as triage_since


def today(request):
    """Morning triage: what needs a look, most urgent first. The page polls itself with
    htmx, keeping the "since" it was first shown with."""
    now = timezone.now()
    since = triage_since(request.user, now, asked=request.GET.get("since", ""))
    context = {"sections": triage(request.user, since), "since": since, "refreshed_at": now}
    if request.htmx:
        return render(request, "mlops_portal/today/_triage.html", context)
    record_visit(request.user, now)
    return render(request, "mlops_portal/today/page.html", context)


@login_not_required
@never_cache
@require_GET
def healthz(request):
    """Liveness for load balancers: database and broker reachability, no login needed."""
    checks = {"database": database_status(), "broker": broker_status()}
    healthy = all(value == "ok" for value in checks.values())
    body = {
        "status": "ok" if healthy else "degraded",
        "checks": checks,
        "broker": broker_kind(settings.CELERY_BROKER_URL),
    }
    return JsonResponse(body, status=200 if healthy else 503)


@login_not_required
@never_cache
@require_GET
def metrics(request):
    """The portal's own metrics in Prometheus text format, for a scraper with the token or
    from an allowed network (METRICS_TOKEN, METRICS_ALLOWED_NETWORKS)."""
    if (refusal := _scraper_refusal(request)) is not None:
        return refusal
    return HttpResponse(portal_metrics.render(), content_type=CONTENT_TYPE_LATEST)


@login_not_required
@never_cache
@require_GET
def readyz(request):
    """Readiness of every component (JSON): 200 when all are green, else 503. Same access
    as /metrics."""
    if (refusal := _scraper_refusal(request)) is not None:
        return refusal
    ready, checks = readiness()
    body = {"status": "ok" if ready else "failing", "checks": checks}
    return JsonResponse(body, status=200 if ready else 503)


@never_cache
@require_GET
def ops_banner(request):
    """The engineers' banner (an htmx partial, polled by every page): beat is late, or jobs
    wait in a queue that no worker takes."""
    require(request.user, "ops.view")
    return render(request, "mlops_portal/_ops_banner.html", {"warnings": operations_warnings()})


def _scraper_refusal(request):
    """None when the caller may read /metrics and /readyz, else the 401 or 403 to answer.
    Engineers logged in to the portal may read them too (the banner links to /readyz)."""
    allowed = portal_metrics.allowed(request)
    if allowed or can(request.user, "ops.view"):
        return None
    status = 401 if allowed is False else 403
    response = HttpResponse(
        "This needs Authorization: Bearer <METRICS_TOKEN> or an address in "
        "METRICS_ALLOWED_NETWORKS.\n",
        status=status,
        content_type="text/plain",
    )
    if status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
    return response


def token_list(request):
    """The user's API tokens; creating one shows its secret on this page, once."""
    form = ApiTokenForm(request.POST or None)
    new_secret = None
    if request.method == "POST" and form.is_valid():
        with service_errors_on(form):
            token, new_secret = api_tokens.create_token(request.user, **form.service_arguments())
            form = ApiTokenForm()
            messages.success(request, f"Token {token.name!r} created. Copy its secret now.")
    tokens = ApiToken.objects.filter(user=request.user)
    return render(
        request,
        "mlops_portal/tokens.html",
        {"form": form, "tokens": tokens, "new_secret": new_secret},
    )


@require_POST
def token_revoke(request, token_id):
    token = get_object_or_404(ApiToken, pk=token_id, user=request.user)
    try:
        api_tokens.revoke_token(request.user, token)
    except PermissionDenied as exc:
        security_log.permission_denied(request, str(exc))
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Token {token.name!r} revoked; it no longer works.")
    return redirect("token-list")


def search_page(request):
    """The header's search box: the best results of each kind, or (with ?kind=) all results
    of one kind, paginated."""
    query = request.GET.get("q", "")
    kind, ranked = search_kind(query, request.GET.get("kind", ""))
    if kind is None:
        return render(request, "mlops_portal/search.html", {"q": query, "groups": search(query)})
    page = Paginator(ranked if ranked is not None else [], 25).get_page(request.GET.get("page"))
    return render(
        request,
        "mlops_portal/search.html",
        {"q": query, "kind": kind.name, "page": page, "groups": {kind.name: results(kind, page)}},
    )


@login_not_required
def favicon(request):
    """The icon for pages without an icon link (a print view, a file); resolved per
    request, since the static manifest exists only after collectstatic."""
    return redirect(static("mlops_portal/favicon.svg"))


def change_feed(request):
    """Every change on record; each object's History link filters it to that object."""
    filters = ChangeFilter(request.GET, queryset=feed())
    page = Paginator(filters.qs, 50).get_page(request.GET.get("page"))
    return render(
        request,
        "mlops_portal/changes.html",
        {"filters": filters, "page": page, "entries": readable(page)},
    )


def notification_list(request):
    """The user's deliveries with their status, and what they get by email. Engineers may
    see every delivery (?all=1), channels included."""
    profile = Profile.objects.filter(user=request.user).first()
    chosen = profile.email_events if profile else None
    current = events_for(request.user, chosen, roles_of(request.user))
    form = EmailEventsForm(request.POST or None, initial={"events": sorted(current)})
    if request.method == "POST":
        if "reset" in request.POST:
            services.reset_email_events(request.user)
            messages.success(request, "Back to the defaults of your role.")
            return redirect("notification-list")
        if form.is_valid():
            with service_errors_on(form):
                services.set_email_events(request.user, form.cleaned_data["events"])
                messages.success(request, "Saved: you get these events by email.")
                return redirect("notification-list")
    seen_before = notifications.mark_seen(request.user)  # the bell's count starts again
    show_all = request.GET.get("all") == "1" and notifications.sees_every_delivery(request.user)
    deliveries = notifications.deliveries_for(request.user, everyone=show_all)
    page = Paginator(deliveries, 25).get_page(request.GET.get("page"))
    return render(
        request,
        "mlops_portal/notifications.html",
        {
            "form": form,
            "page": page,
            "show_all": show_all,
            "uses_defaults": chosen is None,
            "seen_before": seen_before,
        },
    )


def channel_list(request):
    """Team-wide chat and webhook channels; engineers add and edit them."""
    form = ChannelForm(request.POST or None)
    if request.method == "POST":
        services.require_channel_admin(request.user)
        if form.is_valid() and _save_channel(request, form, None):
            return redirect("channel-list")
    channels = NotificationChannel.objects.all()
    return render(request, "mlops_portal/channels.html", {"form": form, "channels": channels})


def channel_edit(request, channel_id):
    services.require_channel_admin(request.user)
    channel = get_object_or_404(NotificationChannel, pk=channel_id)
    fields = ("name", "kind", "url", "events", "enabled")
    form = ChannelForm(
        request.POST or None, initial={name: getattr(channel, name) for name in fields}
    )
    if request.method == "POST":
        if "delete" in request.POST:
            try:
                services.delete_channel(request.user, channel)
            except PermissionDenied as exc:
                security_log.permission_denied(request, str(exc))
                messages.error(request, str(exc))
                return redirect("channel-edit", channel_id=channel.pk)
            messages.success(request, f"Channel {channel.name} deleted.")
            return redirect("channel-list")
        if form.is_valid() and _save_channel(request, form, channel):
            return redirect("channel-list")
    return render(request, "mlops_portal/channel_edit.html", {"form": form, "channel": channel})


def _save_channel(request, form, channel) -> bool:
    try:
        saved = services.save_channel(request.user, channel, **form.cleaned_data)
    except PermissionDenied as exc:
        security_log.permission_denied(request, str(exc))
        messages.error(request, str(exc))
        return False
    except ValidationError as exc:
        add_service_errors(form, exc)
        return False
    messages.success(request, f"Channel {saved.name} saved.")
    return True


def dashboard(request):
    """DORA metrics, deployment outcomes, approval waits, incidents and health, for all or
    for one team or model; every figure is also at /api/v1/metrics/<figure>/."""
    form = DashboardForm(request.GET)
    scope = form.scope()
    dora, outcomes = dashboards.dora(scope), dashboards.deployment_outcomes(scope)
    approvals, incidents = dashboards.approval_waits(scope), dashboards.incidents_by_severity(scope)
    health = dashboards.health_by_target(scope)
    query = urlencode(
        {
            "period": scope.period,
            "since": scope.start.isoformat(),
            "until": scope.end.isoformat(),
            "team": scope.team,
            "model": scope.model,
        }
    )
    return render(
        request,
        "mlops_portal/dashboard.html",
        {
            "form": form,
            "scope": scope,
            "query": query,
            "dora": dora,
            "definitions": dashboards.DEFINITIONS,
            "dora_charts": charts.dora_charts(dora["rows"]),
            "outcome_chart": charts.outcome_chart(outcomes["rows"]),
            "approval_chart": charts.approval_chart(approvals["rows"]),
            "approvals": approvals["summary"],
            "incident_charts": charts.incident_charts(incidents["rows"]),
            "health": health["rows"],
            "health_chart": charts.health_chart(health["rows"]),
            "figures": list(dashboards.FIGURES),
        },
    )


@require_POST
def follow(request, kind, name):
    """Follow or unfollow a model or target (`following=0` unfollows)."""
    if kind not in services.FOLLOWABLE:
        raise Http404
    thing = get_object_or_404(services.FOLLOWABLE[kind], name=name)
    following = request.POST.get("following", "1") != "0"
    try:
        services.set_following(request.user, thing, following)
    except PermissionDenied as exc:
        security_log.permission_denied(request, str(exc))
        messages.error(request, str(exc))
    else:
        verb = "follow" if following else "no longer follow"
        messages.success(request, f"You {verb} {name}: its incidents are mailed to you.")
    return redirect(thing.get_absolute_url())


def permission_denied(request, exception):
    """The 403 page, after one log line saying who was refused what (no traceback)."""
    security_log.permission_denied(request, str(exception), status=403)
    return defaults.permission_denied(request, exception)


def page_not_found(request, exception):
    if request.path.startswith("/api/"):  # a script gets the API's error shape, not a page
        return JsonResponse({"detail": "Not found."}, status=404)
    return render(request, "404.html", status=404)


def server_error(request):
    # No request context: the error may come from the database the context needs.
    return HttpResponseServerError(loader.get_template("500.html").render())
