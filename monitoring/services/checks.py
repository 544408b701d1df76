"""Health checks: configuration, maintenance windows and snoozes, and what a probe result
does to a check's state (`unknown → up ⇄ down`, `paused`) and to its incident."""

import uuid
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from deployments.choices import WAS_LIVE_STATES
from deployments.models import Deployment
from deployments.services.rollouts import auto_rollback
from mlops_portal.core import events
from mlops_portal.core.policy import require
from monitoring import cron
from monitoring.choices import (
    UNRESOLVED_STATES,
    CheckKind,
    CheckState,
    HttpMethod,
    IncidentSource,
    IncidentState,
    RuleState,
    Severity,
)
from monitoring.models import HealthCheck, Incident, MaintenanceWindow, ProbeResult
from monitoring.netpolicy import NetPolicy
from monitoring.probing import ProbeSpec, probe_all_sync
from monitoring.services import incidents

EDITABLE = (
    "name", "url", "method", "interval_seconds", "timeout_seconds", "expected_statuses",
    "latency_threshold_ms", "failures_before_down", "period_seconds", "grace_seconds",
    "cron_expression", "cron_timezone",
)  # fmt: skip
SCHEDULE_FIELDS = ("period_seconds", "grace_seconds", "cron_expression", "cron_timezone")
MAX_PERIOD_SECONDS = 90 * 86400
# Severity of an automatic incident, from the target's environment.
SEVERITY_BY_ENVIRONMENT = {"production": Severity.SEV2, "staging": Severity.SEV3}
CLAIM_SECONDS = 60  # a dispatcher that dies mid-run leaves its checks claimed this long
EVIDENCE_PROBES = 5


def net_policy() -> NetPolicy:
    return NetPolicy.from_setting(settings.HEALTHCHECK_ALLOWED_NETWORKS)


# --- configuration ---------------------------------------------------------------------


def create_check(
    actor, *, name, url="", target=None, kind=CheckKind.HTTP, **options
) -> HealthCheck:
    """Create an HTTP check (probed from now on) or a heartbeat (down unless its job pings
    within period + grace of its creation, then of each ping); return it."""
    require(actor, "check.manage")
    if kind not in CheckKind.values:
        raise ValidationError({"kind": [f"Choose one of {', '.join(CheckKind.values)}."]})
    check = HealthCheck(name=(name or "").strip(), url=(url or "").strip(), target=target,
                        kind=kind, created_by=actor)  # fmt: skip
    _apply(check, options)
    _validate(check)
    if check.kind == CheckKind.HEARTBEAT:
        check.url, check.ping_key = "", uuid.uuid4()
        check.ping_deadline = heartbeat_deadline(check, timezone.now())
    else:
        check.next_due_at = timezone.now()
    check.save()
    return check


def update_check(actor, check, **changes) -> HealthCheck:
    require(actor, "check.manage", check)
    unknown = set(changes) - set(EDITABLE)
    if unknown:
        raise ValidationError({name: ["This field cannot be changed."] for name in unknown})
    if check.follows_target and "url" in changes:
        raise ValidationError({"url": ["This check follows its target's live endpoint."]})
    _apply(check, changes)
    _validate(check)
    if check.kind == CheckKind.HEARTBEAT and check.enabled and set(SCHEDULE_FIELDS) & set(changes):
        check.ping_deadline = heartbeat_deadline(check, check.last_ping_at or timezone.now())
    check.save()
    return check


def heartbeat_deadline(check, since):
    """When a heartbeat that last pinged (or was created, or resumed) at `since` is late:
    a period after it, or the schedule's next run after it, plus the grace time."""
    grace = timedelta(seconds=check.grace_seconds)
    if check.cron_expression:
        return cron.next_run(check.cron_expression, check.cron_timezone, since) + grace
    return since + timedelta(seconds=check.period_seconds) + grace


def delete_check(actor, check) -> None:
    """Delete a check with its results; its incidents stay (their check link is cleared)."""
    require(actor, "check.manage", check)
    check.delete()


def set_paused(actor, check, paused: bool) -> HealthCheck:
    require(actor, "check.pause", check)
    check.enabled = not paused
    check.state = CheckState.PAUSED if paused else CheckState.UNKNOWN
    check.consecutive_failures = 0
    check.first_failure_at = None
    if check.kind == CheckKind.HEARTBEAT:
        check.ping_deadline = None if paused else heartbeat_deadline(check, timezone.now())
    else:
        check.next_due_at = None if paused else timezone.now()
    check.save(update_fields=["enabled", "state", "consecutive_failures", "first_failure_at",
                              "next_due_at", "ping_deadline", "updated_at"])  # fmt: skip
    return check


def snooze(actor, check, *, hours, reason) -> HealthCheck:
    """No incident from this check for `hours` hours; probes still run and are recorded."""
    require(actor, "check.snooze", check)
    errors = {}
    if not isinstance(hours, int | float) or not 0 < hours <= 24 * 14:
        errors["hours"] = ["Snooze for more than 0 and at most 336 hours (two weeks)."]
    if not (reason or "").strip():
        errors["reason"] = ["Say why, so the next on-call knows."]
    if errors:
        raise ValidationError(errors)
    check.snoozed_until = timezone.now() + timedelta(hours=hours)
    check.snooze_reason = reason.strip()
    check.save(update_fields=["snoozed_until", "snooze_reason", "updated_at"])
    return check


def _apply(check, options) -> None:
    for name, value in options.items():
        if name not in EDITABLE:
            raise ValidationError({name: ["Unknown field."]})
        setattr(check, name, value)
    if not check.expected_statuses:
        check.expected_statuses = [200]


def _validate(check) -> None:
    errors = {}
    if not check.name:
        errors["name"] = ["Name the check."]
    if check.kind == CheckKind.HEARTBEAT:
        errors.update(_heartbeat_errors(check))
    else:
        errors.update(_http_errors(check))
    if errors:
        raise ValidationError(errors)


def _heartbeat_errors(check) -> dict:
    errors = {}
    check.cron_expression = (check.cron_expression or "").strip()
    check.cron_timezone = (check.cron_timezone or "UTC").strip()
    if check.cron_expression:
        if check.period_seconds is not None:
            errors["period_seconds"] = ["Give a period or a cron expression, not both."]
        errors.update({k: [v] for k, v in cron.problem(check.cron_expression,
                                                       check.cron_timezone).items()})  # fmt: skip
    elif not isinstance(check.period_seconds, int) or not (
        1 <= check.period_seconds <= MAX_PERIOD_SECONDS
    ):
        errors["period_seconds"] = [
            "How often the job runs: 1 second to 90 days (or give a cron expression)."
        ]
    if not isinstance(check.grace_seconds, int) or not 0 <= check.grace_seconds <= 7 * 86400:
        errors["grace_seconds"] = ["How late it may be: 0 seconds to 7 days."]
    return errors


def _http_errors(check) -> dict:
    errors = {}
    for name in ("period_seconds", "grace_seconds", "cron_expression"):
        if getattr(check, name):
            errors[name] = ["Only heartbeat checks have a schedule and a grace time."]
    problem = net_policy().check_url(check.url)
    if problem:
        errors["url"] = [problem]
    if check.method not in HttpMethod.values:
        errors["method"] = ["Use GET or HEAD."]
    if not 5 <= (check.interval_seconds or 0) <= 86400:
        errors["interval_seconds"] = ["Between 5 seconds and a day."]
    if not 0.1 <= (check.timeout_seconds or 0) <= 60:
        errors["timeout_seconds"] = ["Between 0.1 and 60 seconds."]
    elif check.timeout_seconds >= (check.interval_seconds or 0):
        errors["timeout_seconds"] = ["Must be shorter than the interval."]
    statuses = check.expected_statuses
    if not isinstance(statuses, list) or not all(
        isinstance(s, int) and 100 <= s <= 599 for s in statuses
    ):
        errors["expected_statuses"] = ["A list of HTTP status codes, e.g. [200, 204]."]
    if not 1 <= (check.failures_before_down or 0) <= 100:
        errors["failures_before_down"] = ["Between 1 and 100."]
    if check.latency_threshold_ms is not None and check.latency_threshold_ms <= 0:
        errors["latency_threshold_ms"] = ["A positive number of milliseconds, or empty."]
    return errors


# --- deployments' hooks -------------------------------------------------------------


def follow_live_endpoint(target, endpoint: str) -> HealthCheck | None:
    """Point the target's "live endpoint" check at a new deployment's /health (created on
    first use). Endpoints outside the allowlist (an external CD system's) get no check."""
    if not endpoint:
        return None
    url = f"{endpoint.rstrip('/')}/health"
    if net_policy().check_url(url):
        return None
    check = HealthCheck.objects.filter(target=target, follows_target=True).first()
    if check is None:
        try:
            with transaction.atomic():
                return HealthCheck.objects.create(
                    name=f"{target.name} live endpoint",
                    target=target,
                    follows_target=True,
                    url=url,
                    expected_statuses=[200],
                    interval_seconds=15,
                    timeout_seconds=3,
                    failures_before_down=3,
                    next_due_at=timezone.now(),
                )
        except IntegrityError:  # created by a concurrent deploy
            check = HealthCheck.objects.get(target=target, follows_target=True)
    HealthCheck.objects.filter(pk=check.pk).update(
        url=url, state=CheckState.UNKNOWN if check.enabled else CheckState.PAUSED,
        consecutive_failures=0, first_failure_at=None, next_due_at=timezone.now(),
    )  # fmt: skip
    return check


def begin_deploy_window(deployment) -> MaintenanceWindow:
    """While a deploy job runs, its target's checks raise no incident (expected restart)."""
    return MaintenanceWindow.objects.create(
        target=deployment.target, deployment=deployment, starts_at=timezone.now(),
        reason=f"Deploy #{deployment.pk} of {deployment.version}", automatic=True,
    )  # fmt: skip


def end_deploy_window(deployment) -> None:
    MaintenanceWindow.objects.filter(deployment=deployment, ends_at__isnull=True).update(
        ends_at=timezone.now()
    )


def in_maintenance(check, at) -> bool:
    covering = Q(health_check=check) | (Q(target_id=check.target_id) if check.target_id else Q())
    return (
        MaintenanceWindow.objects.filter(covering, starts_at__lte=at)
        .filter(Q(ends_at__isnull=True) | Q(ends_at__gt=at))
        .exists()
    )


# --- the probe run -------------------------------------------------------------------


CLAIM_SQL_POSTGRES = """
UPDATE {table} SET next_due_at = %s, claim_token = %s
WHERE id IN (SELECT id FROM {table} WHERE enabled AND kind = 'http' AND next_due_at <= %s
             ORDER BY next_due_at LIMIT %s FOR UPDATE SKIP LOCKED)
RETURNING *
"""


def claim_due_checks(now=None, limit=10_000) -> list[HealthCheck]:
    """Claim the checks due now, so no other dispatcher probes them in this slot: their
    next_due_at moves past `now` in the claiming UPDATE, so a second dispatcher's UPDATE no
    longer matches them (and on PostgreSQL skips the rows the first one has locked)."""
    now = now or timezone.now()
    token = uuid.uuid4().hex
    lease = now + timedelta(seconds=CLAIM_SECONDS)
    if connection.vendor == "postgresql":
        sql = CLAIM_SQL_POSTGRES.format(table=HealthCheck._meta.db_table)
        with transaction.atomic():
            return list(HealthCheck.objects.raw(sql, [lease, token, now, limit]))
    due = list(
        HealthCheck.objects.filter(enabled=True, kind=CheckKind.HTTP, next_due_at__lte=now)
        .order_by("next_due_at")
        .values_list("pk", flat=True)[:limit]
    )
    HealthCheck.objects.filter(pk__in=due, enabled=True, next_due_at__lte=now).update(
        next_due_at=lease, claim_token=token
    )
    return list(HealthCheck.objects.filter(pk__in=due, claim_token=token))


def run_probes(now=None) -> int:
    """Probe every due check concurrently, store the results in bulk, update states and
    incidents; return how many checks were probed."""
    checks = claim_due_checks(now)
    if not checks:
        return 0
    specs = [
        ProbeSpec(
            check_id=c.pk,
            url=c.url,
            method=c.method,
            timeout=c.timeout_seconds,
            expected_statuses=tuple(c.expected_statuses or [200]),
            latency_threshold_ms=c.latency_threshold_ms,
        )
        for c in checks
    ]
    outcomes = probe_all_sync(specs, net_policy(), settings.HEALTHCHECK_CONCURRENCY)
    record_outcomes(checks, outcomes)
    return len(checks)


def record_outcomes(checks, outcomes) -> None:
    """Write all results in one INSERT and all check states in one bulk UPDATE, then run
    the incident automation for the checks whose state changed."""
    by_id = {c.pk: c for c in checks}
    insert_results(outcomes)
    flipped, came_up = [], []
    for outcome in outcomes:
        check = by_id[outcome.check_id]
        before = check.state
        _apply_outcome(check, outcome)
        # Only down checks and recoveries need the incident automation (a query each).
        if check.state == CheckState.DOWN or before == CheckState.DOWN:
            flipped.append((check, before))
        elif before == CheckState.UNKNOWN and check.state == CheckState.UP:
            came_up.append((check, before))
    write_states(checks)
    for check, before in flipped + came_up:
        if check.state != before and check.state in (CheckState.DOWN, CheckState.UP):
            events.publish(f"check.{check.state}", check=check, before=before)
    for check, before in flipped + _with_unresolved_incident(came_up):
        automate_incident(check, before)


def _with_unresolved_incident(came_up):
    """The checks of `came_up` whose automatic incident is still unresolved (one query).

    A deploy (or a rollback) that goes live resets its target's check from `down` to
    `unknown` (`follow_live_endpoint`); its first success is the recovery of the incident
    the failures opened, as `down → up` would have been."""
    if not came_up:
        return []
    with_incident = set(
        Incident.objects.filter(
            health_check_id__in=[check.pk for check, _ in came_up], source="check",
            state__in=UNRESOLVED_STATES,
        ).values_list("health_check_id", flat=True)
    )  # fmt: skip
    return [(check, before) for check, before in came_up if check.pk in with_incident]


STATE_COLUMNS = (
    "state", "consecutive_failures", "first_failure_at", "last_probe_at", "last_ok",
    "last_latency_ms", "last_error", "next_due_at",
)  # fmt: skip
# One statement for thousands of checks: Django's bulk_update builds a CASE per column and
# row, which took 13 s for 5,000 checks, where this UPDATE … FROM unnest(…) takes ~50 ms.
STATES_SQL_POSTGRES = """
UPDATE {table} AS h SET state = v.state, consecutive_failures = v.consecutive_failures,
    first_failure_at = v.first_failure_at, last_probe_at = v.last_probe_at,
    last_ok = v.last_ok, last_latency_ms = v.last_latency_ms, last_error = v.last_error,
    next_due_at = v.next_due_at, claim_token = ''
FROM unnest(%s::bigint[], %s::varchar[], %s::int[], %s::timestamptz[], %s::timestamptz[],
            %s::bool[], %s::float8[], %s::varchar[], %s::timestamptz[])
    AS v(id, state, consecutive_failures, first_failure_at, last_probe_at, last_ok,
         last_latency_ms, last_error, next_due_at)
WHERE h.id = v.id
"""


def insert_results(outcomes) -> None:
    """Store probe results: PostgreSQL's COPY, else one multi-row INSERT."""
    rows = [(o.check_id, o.at, o.ok, o.status_code, o.latency_ms, o.error[:300]) for o in outcomes]
    if connection.vendor != "postgresql":
        ProbeResult.objects.bulk_create(
            ProbeResult(health_check_id=r[0], at=r[1], ok=r[2], status_code=r[3],
                        latency_ms=r[4], error=r[5])
            for r in rows
        )  # fmt: skip
        return
    columns = "health_check_id, at, ok, status_code, latency_ms, error"
    with connection.cursor() as cursor:
        copy_sql = f"COPY {ProbeResult._meta.db_table} ({columns}) FROM STDIN"
        with cursor.cursor.copy(copy_sql) as copy:
            for row in rows:
                copy.write_row(row)


def write_states(checks) -> None:
    """Store the probe-derived fields of many checks at once."""
    table = HealthCheck._meta.db_table
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            columns = [[c.pk for c in checks]]
            columns += [[getattr(c, name) for c in checks] for name in STATE_COLUMNS]
            cursor.execute(STATES_SQL_POSTGRES.format(table=table), columns)
            return
        assignments = ", ".join(f"{name} = %s" for name in STATE_COLUMNS)
        cursor.executemany(
            f"UPDATE {table} SET {assignments}, claim_token = '' WHERE id = %s",
            [[getattr(c, name) for name in STATE_COLUMNS] + [c.pk] for c in checks],
        )


def _apply_outcome(check, outcome) -> None:
    check.last_probe_at = outcome.at
    check.last_ok = outcome.ok
    check.last_latency_ms = outcome.latency_ms
    check.last_error = outcome.error[:500]
    check.next_due_at = outcome.at + timedelta(seconds=check.interval_seconds)
    if outcome.ok:
        check.consecutive_failures = 0
        check.first_failure_at = None
        check.state = CheckState.UP
        return
    check.consecutive_failures += 1
    if check.consecutive_failures == 1:
        check.first_failure_at = outcome.at
    if check.consecutive_failures >= check.failures_before_down:
        check.state = CheckState.DOWN


def automate_incident(check, before, evidence=None) -> None:
    """Down: open (or reopen) the check's incident unless maintenance or a snooze covers
    it. Up again (from `down`, or from `unknown` after a deploy reset the check): mitigate
    it; `resolve_quiet_incidents` resolves it after a quiet period. `evidence`: what the
    incident shows (default: the check's last failing probes)."""
    open_incident = Incident.objects.filter(
        health_check=check, source="check", state__in=UNRESOLVED_STATES
    ).first()
    if check.state == CheckState.UP:
        if open_incident and open_incident.state != IncidentState.MITIGATED:
            reason = _recovery_reason(check, before, open_incident)
            incidents.system_transition(open_incident, IncidentState.MITIGATED, reason)
        return
    if check.state != CheckState.DOWN:
        return
    if open_incident is not None:
        if open_incident.state == IncidentState.MITIGATED:
            incidents.system_transition(
                open_incident, IncidentState.OPEN, f"{check.name} is failing again."
            )
        return
    now = timezone.now()
    if (check.snoozed_until and check.snoozed_until > now) or in_maintenance(check, now):
        return
    incident = incidents.open_check_incident(
        check,
        severity=_severity_for(check),
        deployment=likely_cause(check),
        evidence=_failing_probes(check) if evidence is None else evidence,
    )
    if incident is not None:
        maybe_roll_back(incident)


def _recovery_reason(check, before, incident) -> str:
    """What the incident's timeline says when its check answers again: after a deploy or a
    rollback, the deployment that went live since the incident opened."""
    if check.kind == CheckKind.HEARTBEAT:
        return f"{check.name} pinged again."
    fix = _went_live_since(check, incident.opened_at) if before == CheckState.UNKNOWN else None
    if fix is None:
        return f"{check.name} answers again."
    if fix.rollback_of_id:
        return f"{check.name} is up again after rollback #{fix.pk} (to {fix.version}) went live."
    return f"{check.name} is up again after deployment #{fix.pk} ({fix.version}) went live."


def _went_live_since(check, since):
    """The live deployment of the check's target, if it went live after `since`."""
    if check.target_id is None:
        return None
    return (
        Deployment.objects.live()
        .filter(target_id=check.target_id, finished_at__gte=since)
        .select_related("version__model")
        .first()
    )


def likely_cause(check):
    """The deployment that went live on the check's target most recently before it began
    failing."""
    if check.target_id is None:
        return None
    return (
        Deployment.objects.filter(
            target_id=check.target_id,
            state__in=WAS_LIVE_STATES,
            finished_at__lte=check.first_failure_at or timezone.now(),
        )
        .select_related("version__model", "target")
        .order_by("-finished_at")
        .first()
    )


def _severity_for(check) -> str:
    if check.target is None:
        return Severity.SEV3
    return SEVERITY_BY_ENVIRONMENT.get(check.target.environment, Severity.SEV4)


def _failing_probes(check) -> list[dict]:
    rows = ProbeResult.objects.filter(health_check=check, ok=False).order_by("-at")[
        :EVIDENCE_PROBES
    ]
    return [
        {
            "at": r.at.isoformat(),
            "status_code": r.status_code,
            "latency_ms": r.latency_ms,
            "error": r.error,
        }
        for r in reversed(rows)
    ]


def maybe_roll_back(incident) -> None:
    """Auto-rollback: the target asks for it and the failure began inside the likely cause's
    verification window."""
    deployment = incident.deployment
    if deployment is None or not deployment.target.auto_rollback:
        return
    window = timedelta(seconds=deployment.target.verification_window_seconds)
    if incident.opened_at > deployment.finished_at + window:
        return
    rollback = auto_rollback(deployment, f"Incident #{incident.pk}: {incident.title}")
    if rollback is not None:
        incidents.add_note(None, incident, f"Auto-rollback requested as deployment #{rollback.pk}.")


def resolve_quiet_incidents(now=None) -> int:
    """Resolve mitigated automatic incidents whose check stayed up (or whose alert rule
    stayed quiet) for the quiet period."""
    now = now or timezone.now()
    quiet_for = settings.INCIDENT_QUIET_PERIOD_SECONDS
    cutoff = now - timedelta(seconds=quiet_for)
    quiet = Incident.objects.filter(
        Q(source=IncidentSource.CHECK, health_check__state=CheckState.UP)
        | Q(source=IncidentSource.RULE, alert_rule__state=RuleState.OK),
        state=IncidentState.MITIGATED, mitigated_at__lte=cutoff,
    )  # fmt: skip
    resolved = 0
    for incident in quiet:
        how = "Up" if incident.source == IncidentSource.CHECK else "Quiet"
        incidents.system_transition(
            incident, IncidentState.RESOLVED, f"{how} for {quiet_for} s: resolved automatically."
        )
        resolved += 1
    return resolved
