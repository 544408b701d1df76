"""Eight weeks of made-up history for the demo, so Today's "since" and the dashboards' DORA
figures have something to show on a fresh `make run`.

Written with the ORM and explicit timestamps (services stamp "now"); every row is in a final
state, so no job, reconciler or health check ever acts on it. Demo only."""

from datetime import timedelta

from django.utils import timezone

from deployments.choices import DeploymentEventKind, DeploymentState
from deployments.models import Deployment, DeploymentEvent, ModelVersion
from monitoring.choices import IncidentEventKind, IncidentSource, IncidentState, Severity
from monitoring.models import Incident, IncidentEvent

State = DeploymentState


def write_history(iris, staging, production, alice, bob) -> None:
    """The story of iris-classifier v1 and v2 before today's v3."""
    now = timezone.now()
    v1, v2 = (iris.versions.get(number=number) for number in (1, 2))
    ModelVersion.objects.filter(pk=v1.pk).update(created_at=now - timedelta(days=60))
    ModelVersion.objects.filter(pk=v2.pk).update(created_at=now - timedelta(days=31))
    people = {"alice": alice, "bob": bob}

    # Each rollout ran for its own time (the local backend takes 20 s to a few minutes).
    run_times = iter((212, 48, 187, 63, 95, 141, 30, 76))

    def deploy(version, target, days_ago, end_state, wait_hours=1.0, **fields):
        return _deployment(version, target, now - timedelta(days=days_ago), end_state,
                           timedelta(hours=wait_hours), timedelta(seconds=next(run_times)),
                           people, **fields)  # fmt: skip

    deploy(v1, staging, 58, State.SUPERSEDED, wait_hours=0)
    deploy(v1, production, 56, State.SUPERSEDED, wait_hours=2)
    deploy(v2, staging, 30, State.SUPERSEDED, wait_hours=0)
    bad = deploy(v2, production, 28, State.ROLLED_BACK, wait_hours=0.5)
    outage = _incident(
        "iris-production: accuracy dropped on live traffic", Severity.SEV2,
        bad.finished_at + timedelta(hours=3), timedelta(minutes=12), timedelta(hours=2),
        people, target=production, deployment=bad, version=v2,
    )  # fmt: skip
    rollback_days = (now - outage.opened_at).total_seconds() / 86400 - 0.01
    deploy(v1, production, rollback_days, State.SUPERSEDED, wait_hours=0, rollback_of=bad)
    deploy(v2, production, 21, State.SUPERSEDED, wait_hours=4)
    deploy(v2, production, 14, State.FAILED, wait_hours=1,
           failure_reason="The model server did not answer /health within 30 s.")  # fmt: skip
    deploy(v2, production, 13, State.SUPERSEDED, wait_hours=0.25)
    _incident(
        "Feature store answers slowly", Severity.SEV3, now - timedelta(days=9),
        timedelta(minutes=25), timedelta(minutes=50), people, target=production,
    )  # fmt: skip


def _deployment(version, target, created, end_state, wait, run, people, **fields):
    """A deployment that was requested at `created`, approved after `wait`, ran for `run`
    and ended in `end_state`, with its timeline."""
    queued = created + wait
    finished = queued + run
    approver = people["bob"] if wait else None
    deployment = Deployment.objects.create(
        version=version, target=target, state=end_state, requested_by=people["alice"],
        approved_by=approver, reason="Demo history.", queued_at=queued, started_at=queued,
        finished_at=finished, attempts=1, **fields,
    )  # fmt: skip
    live_state = State.FAILED if end_state == State.FAILED else State.SUCCEEDED
    steps = [
        ("", State.REQUESTED, created, people["alice"]),
        (State.REQUESTED, State.APPROVED, queued, approver),
        (State.APPROVED, State.QUEUED, queued, None),
        (State.QUEUED, State.RUNNING, queued, None),
        (State.RUNNING, live_state, finished, None),
    ]
    if end_state != live_state:
        steps.append((State.SUCCEEDED, end_state, finished + timedelta(days=1), None))
    for from_state, to_state, at, actor in steps:
        event = DeploymentEvent.objects.create(
            deployment=deployment, kind=DeploymentEventKind.STATE, from_state=from_state,
            to_state=to_state, actor=actor, message=fields.get("failure_reason", ""),
        )  # fmt: skip
        DeploymentEvent.objects.filter(pk=event.pk).update(created_at=at)
    Deployment.objects.filter(pk=deployment.pk).update(created_at=created, updated_at=finished)
    deployment.refresh_from_db()
    return deployment


def _incident(title, severity, opened, to_acknowledge, to_resolve, people, **links):
    acknowledged, resolved = opened + to_acknowledge, opened + to_resolve
    incident = Incident.objects.create(
        title=title, severity=severity, state=IncidentState.RESOLVED,
        source=IncidentSource.MANUAL, opened_by=people["bob"], commander=people["bob"],
        opened_at=opened, acknowledged_at=acknowledged, resolved_at=resolved, **links,
    )  # fmt: skip
    steps = [
        ("", IncidentState.OPEN, opened),
        (IncidentState.OPEN, IncidentState.ACKNOWLEDGED, acknowledged),
        (IncidentState.ACKNOWLEDGED, IncidentState.RESOLVED, resolved),
    ]
    for from_state, to_state, at in steps:
        event = IncidentEvent.objects.create(
            incident=incident, kind=IncidentEventKind.STATE, from_state=from_state,
            to_state=to_state, actor=people["bob"], message="Demo history.",
        )  # fmt: skip
        IncidentEvent.objects.filter(pk=event.pk).update(created_at=at)
    return incident
