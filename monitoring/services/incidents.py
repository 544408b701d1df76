"""Incidents: opened by people or by failing checks, run to resolution on one timeline.

Every state change goes through `_transition`: a conditional UPDATE from the state the
caller saw, written with its IncidentEvent in one transaction."""

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from mlops_portal.core import audit, events
from mlops_portal.core.errors import Conflict
from mlops_portal.core.policy import require
from monitoring.choices import (
    INCIDENT_TRANSITIONS,
    CheckKind,
    IncidentEventKind,
    IncidentSource,
    IncidentState,
    Severity,
)
from monitoring.models import Incident, IncidentEvent

STATE_TIMESTAMPS = {
    IncidentState.ACKNOWLEDGED: "acknowledged_at",
    IncidentState.MITIGATED: "mitigated_at",
    IncidentState.RESOLVED: "resolved_at",
}


def open_incident(
    actor,
    *,
    title,
    severity=Severity.SEV3,
    description="",
    target=None,
    deployment=None,
    version=None,
    source=IncidentSource.MANUAL,
) -> Incident:
    """Open an incident by hand (pages, API); return it."""
    require(actor, "incident.open")
    errors = {}
    if not (title or "").strip():
        errors["title"] = ["Say what is wrong, e.g. 'churn-prod answers 500s'."]
    if severity not in Severity.values:
        errors["severity"] = [f"Choose one of {', '.join(Severity.labels)}."]
    if errors:
        raise ValidationError(errors)
    if deployment is not None:
        target = target or deployment.target
        version = version or deployment.version
    with transaction.atomic():
        incident = Incident.objects.create(
            title=title.strip(), severity=severity, description=description, target=target,
            deployment=deployment, version=version, source=source, opened_by=actor,
            opened_at=timezone.now(),
        )  # fmt: skip
        event = _event(incident, actor, "", IncidentState.OPEN, f"Opened by {actor}.")
        _announce(incident, event)
    return incident


def open_check_incident(check, *, severity, deployment, evidence) -> Incident | None:
    """Open the automatic incident of a check that went down; None if one is already open.

    The partial unique constraint makes "never two open auto-incidents for one check" hold
    even when two probe runs race."""
    return _open_automatic(
        f"{check.name} is down", evidence, _evidence_noun(check), severity=severity,
        source=IncidentSource.CHECK, health_check=check, target=check.target,
        deployment=deployment, opened_at=check.first_failure_at or timezone.now(),
    )  # fmt: skip


def open_rule_incident(rule, *, deployment, evidence) -> Incident | None:
    """Open the incident of an alert rule that fires on `deployment` (the likely cause);
    None if the rule's incident is already open (a partial unique constraint)."""
    return _open_automatic(
        f"{rule.name}: {rule.condition}", evidence, "measurement(s)", severity=rule.severity,
        source=IncidentSource.RULE, alert_rule=rule, target=deployment.target,
        deployment=deployment, opened_at=timezone.now(),
    )  # fmt: skip


def _open_automatic(title, evidence, noun, *, deployment, **fields) -> Incident | None:
    try:
        with transaction.atomic():
            incident = Incident.objects.create(
                title=title, deployment=deployment,
                version=deployment.version if deployment else None, **fields,
            )  # fmt: skip
            cause = (
                f" Likely cause: deployment #{deployment.pk} ({deployment.version})."
                if (deployment)
                else ""
            )
            event = _event(incident, None, "", IncidentState.OPEN, f"{title}.{cause}")
            add_evidence(incident, evidence, noun)
            _announce(incident, event)
    except IntegrityError:
        return None
    return incident


def acknowledge(actor, incident, note=""):
    require(actor, "incident.acknowledge", incident)
    with transaction.atomic():
        _transition(incident, IncidentState.ACKNOWLEDGED, actor, note or "Acknowledged.")
        if incident.commander_id is None:
            Incident.objects.filter(pk=incident.pk).update(commander=actor)
            incident.commander = actor
    return incident


def mitigate(actor, incident, note=""):
    require(actor, "incident.mitigate", incident)
    with transaction.atomic():
        _transition(incident, IncidentState.MITIGATED, actor, note or "Mitigated.")
    return incident


def resolve(actor, incident, note=""):
    require(actor, "incident.resolve", incident)
    with transaction.atomic():
        _transition(incident, IncidentState.RESOLVED, actor, note or "Resolved.")
    return incident


def add_note(actor, incident, text) -> IncidentEvent:
    """Add a note to the incident's timeline; viewers only read. `actor` None is the
    portal's own automation (an auto-rollback), which needs no permission."""
    if actor is not None:
        require(actor, "incident.note", incident)
    if not (text or "").strip():
        raise ValidationError({"note": ["Write the note."]})
    return IncidentEvent.objects.create(
        incident=incident, kind=IncidentEventKind.NOTE, actor=actor, message=text.strip()
    )


def change_severity(actor, incident, severity, reason=""):
    require(actor, "incident.severity", incident)
    if severity not in Severity.values:
        raise ValidationError({"severity": [f"Choose one of {', '.join(Severity.labels)}."]})
    with transaction.atomic():
        previous = incident.severity
        Incident.objects.filter(pk=incident.pk).update(severity=severity)
        incident.severity = severity
        audit.record_update(incident, actor, {"severity": (previous, severity)})
        IncidentEvent.objects.create(
            incident=incident, kind=IncidentEventKind.SEVERITY, actor=actor,
            message=f"{previous.upper()} → {severity.upper()}. {reason}".strip(),
        )  # fmt: skip
    return incident


def add_evidence(incident, probes: list[dict], noun="failing probe(s)") -> IncidentEvent:
    """Attach what went wrong: dicts with at least an "error" ("" when fine)."""
    summary = "; ".join(p["error"] or "ok" for p in probes[-3:])
    return IncidentEvent.objects.create(
        incident=incident, kind=IncidentEventKind.EVIDENCE,
        message=f"{len(probes)} {noun}: {summary}", data={"probes": probes},
    )  # fmt: skip


def _evidence_noun(check) -> str:
    return "recent ping(s)" if check.kind == CheckKind.HEARTBEAT else "failing probe(s)"


def system_transition(incident, to_state, message):
    """A state change made by the automation (recovery, quiet period, relapse)."""
    with transaction.atomic():
        _transition(incident, to_state, None, message)
    return incident


def _transition(incident, to_state, actor, message) -> None:
    from_state = incident.state
    if to_state not in INCIDENT_TRANSITIONS.get(from_state, ()):
        raise Conflict(f"Incident #{incident.pk} is {from_state}; it cannot become {to_state}.")
    now = timezone.now()
    fields = {"state": to_state}
    if to_state in STATE_TIMESTAMPS:
        fields[STATE_TIMESTAMPS[to_state]] = now
    if to_state == IncidentState.RESOLVED and not incident.acknowledged_at:
        fields["acknowledged_at"] = now  # resolving implies someone looked (MTTA)
    if not Incident.objects.filter(pk=incident.pk, state=from_state).update(**fields):
        raise Conflict(f"Incident #{incident.pk} changed meanwhile; reload the page.")
    for name, value in fields.items():
        setattr(incident, name, value)
    event = _event(incident, actor, from_state, to_state, message)
    audit.record_update(incident, actor, {"state": (from_state, to_state)})
    _announce(incident, event)


def _event(incident, actor, from_state, to_state, message) -> IncidentEvent:
    return IncidentEvent.objects.create(
        incident=incident, kind=IncidentEventKind.STATE, from_state=from_state,
        to_state=to_state, actor=actor, message=message,
    )  # fmt: skip


def _announce(incident, event) -> None:
    """Publish the change (notifications subscribe), in the transaction that made it."""
    name = "incident.state_changed" if event.from_state else "incident.opened"
    events.publish(name, incident=incident, event=event)
