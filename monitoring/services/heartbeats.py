"""Heartbeat checks (healthchecks.io's model): a batch job pings the portal, and the check
is down when no ping came within its period plus grace time.

    /ping/<key>            the run succeeded          → up
    /ping/<key>/start      a run began (for its duration; no state change)
    /ping/<key>/fail       the run failed             → down
    /ping/<key>/<status>   exit status: 0 → up, anything else → down

Pings and the overdue job (`mark_overdue`, on beat) change a check's state through
`set_heartbeat_state` only, which runs the same incident automation as probe checks: down
opens (or reopens) the check's incident with the recent pings as evidence, up mitigates it,
and `checks.resolve_quiet_incidents` resolves it after the quiet period."""

from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from mlops_portal.core import events
from monitoring.choices import CheckKind, CheckState, PingKind
from monitoring.models import HealthCheck, Ping
from monitoring.services import checks

EVIDENCE_PINGS = 5
STATE_FIELDS = [
    "state", "consecutive_failures", "first_failure_at", "last_ok", "last_error",
    "last_ping_at", "last_start_at", "ping_deadline", "updated_at",
]  # fmt: skip


def record_ping(key, kind: str, *, exit_status=None, body: bytes = b"", remote_addr=None):
    """Store a ping for the heartbeat whose key is `key` and apply it; return the Ping, or
    None when no heartbeat has that key. `body` is cut to its last HEARTBEAT_BODY_KEEP
    bytes (the tail of a log is where the error is)."""
    if exit_status is not None:
        kind = PingKind.SUCCESS if exit_status == 0 else PingKind.FAIL
    now = timezone.now()
    tail = body[-settings.HEARTBEAT_BODY_KEEP :].decode("utf-8", errors="replace")
    with transaction.atomic():
        # Locked: two pings of one check (start and end of a short job) apply in order.
        check = (
            HealthCheck.objects.select_for_update()
            .filter(ping_key=key, kind=CheckKind.HEARTBEAT)
            .first()
        )
        if check is None:
            return None
        started = check.last_start_at
        ping = Ping.objects.create(
            health_check=check, at=now, kind=kind, exit_status=exit_status, body=tail,
            remote_addr=remote_addr,
            duration_seconds=(now - started).total_seconds()
            if started and kind != PingKind.START else None,
        )  # fmt: skip
        if kind == PingKind.START:
            HealthCheck.objects.filter(pk=check.pk).update(last_start_at=now)
        elif check.enabled:  # a paused check records its pings and stays paused
            failed = kind == PingKind.FAIL
            reason = _failure_reason(ping) if failed else ""
            set_heartbeat_state(check, up=not failed, at=now, reason=reason)
    return ping


def mark_overdue(now=None) -> int:
    """The beat job: turn down every enabled heartbeat whose deadline has passed; return
    how many. A ping arriving meanwhile wins (the row is re-read under lock)."""
    now = now or timezone.now()
    overdue = HealthCheck.objects.filter(
        kind=CheckKind.HEARTBEAT, enabled=True, ping_deadline__lte=now
    ).exclude(state=CheckState.DOWN)
    turned = 0
    for pk in overdue.values_list("pk", flat=True):
        with transaction.atomic():
            check = overdue.select_for_update().filter(pk=pk).first()
            if check is None:
                continue
            since = f"since {check.last_ping_at:%Y-%m-%d %H:%M:%S}" if check.last_ping_at else "yet"
            if check.cron_expression:
                due = f"by {check.ping_deadline:%Y-%m-%d %H:%M:%S} UTC (schedule + grace)"
            else:
                late = timedelta(seconds=check.period_seconds + check.grace_seconds)
                due = f"for {_seconds(late)} (period + grace)"
            reason = f"no ping {due}; none {since}"
            set_heartbeat_state(
                check, up=False, at=check.ping_deadline, reason=reason, pinged=False
            )
            turned += 1
    return turned


def set_heartbeat_state(check, *, up: bool, at, reason: str = "", pinged=True) -> HealthCheck:
    """Up (a success ping) or down (a failure ping, or no ping in time: `pinged` False):
    store the state, publish the flip, and run the incident automation. The caller holds
    the row's lock."""
    before = check.state
    if pinged:  # the job ran: the next one is due a period from now
        check.last_ping_at = at
        check.ping_deadline = checks.heartbeat_deadline(check, at)
        check.last_start_at = None
    if up:
        check.state, check.consecutive_failures, check.first_failure_at = CheckState.UP, 0, None
        check.last_ok, check.last_error = True, ""
    else:
        check.state = CheckState.DOWN
        check.consecutive_failures += 1
        check.first_failure_at = check.first_failure_at or at
        check.last_ok, check.last_error = False, reason[:500]
    check.save(update_fields=STATE_FIELDS)
    if check.state != before:
        events.publish(f"check.{check.state}", check=check, before=before)
    checks.automate_incident(check, before, evidence=None if up else recent_pings(check, reason))
    return check


def recent_pings(check, reason: str) -> list[dict]:
    """The incident's evidence: why it is down, then the last pings with their log tails."""
    pings = check.pings.order_by("-at")[:EVIDENCE_PINGS]
    evidence = [
        {"at": p.at.isoformat(), "kind": p.kind, "exit_status": p.exit_status,
         "duration_seconds": p.duration_seconds, "log_tail": p.body[-1000:],
         "error": _failure_reason(p) if p.kind == PingKind.FAIL else ""}
        for p in reversed(pings)
    ]  # fmt: skip
    return [*evidence, {"at": timezone.now().isoformat(), "error": reason}]


def _failure_reason(ping) -> str:
    if ping.exit_status is not None:
        return f"exit status {ping.exit_status}"
    return "the job reported a failure (/fail)"


def _seconds(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds % 3600 == 0 and seconds >= 3600:
        return f"{seconds // 3600} h"
    if seconds % 60 == 0 and seconds >= 60:
        return f"{seconds // 60} min"
    return f"{seconds} s"


def prune(now) -> int:
    cutoff = now - timedelta(days=settings.HEALTHCHECK_RESULT_RETENTION_DAYS)
    deleted, _ = Ping.objects.filter(at__lt=cutoff).delete()
    return deleted
