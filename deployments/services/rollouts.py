"""Deployments: request, approve, reject, cancel, roll back, comment, and the deploy job.

Every state change goes through `_transition`, a conditional UPDATE that only moves a row
from the state the caller saw, written in the same transaction as its event row. The
database enforces one running rollout and one live deployment per target (partial unique
constraints), so two workers or two approvers can never both win."""

import json
import logging
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from deployments import hooks, steps
from deployments.backends import DeployError, backend_for, webhook
from deployments.choices import (
    DEPLOYMENT_TRANSITIONS,
    WAS_LIVE_STATES,
    DeploymentEventKind,
    DeploymentState,
    QueuePolicy,
    Strategy,
    VersionStatus,
)
from deployments.models import (
    Deployment,
    DeploymentEvent,
    DeploymentLogLine,
    ModelVersion,
    Target,
)
from mlops_portal.core import audit, events, outbox
from mlops_portal.core.errors import Conflict
from mlops_portal.core.policy import can, require

logger = logging.getLogger(__name__)
State = DeploymentState
# Backends whose live deployments the reconciler checks for a dead server.
SERVED_BACKENDS = ("local", "ray")


# --- requests and decisions ------------------------------------------------------------


def request_deployment(
    actor, *, version: ModelVersion, target, reason, change_ticket="",
    strategy="", canary_steps=None, canary_step_seconds=0,
):  # fmt: skip
    """Ask for `version` on `target`; return the deployment (queued at once when the
    target needs no approval). A canary (`strategy="canary"`) takes `canary_steps` % of
    the traffic in turn, each for `canary_step_seconds` (services.canary)."""
    from deployments.services import canary

    require(actor, "deployment.request")
    plan = canary.clean_request(target, strategy, canary_steps, canary_step_seconds)
    errors = {}
    if version.status != VersionStatus.READY:
        errors["version"] = [
            f"{version} is {version.get_status_display().lower()}; only ready versions deploy."
        ]
    elif version.archived:
        errors["version"] = [f"{version} is archived."]
    if not (reason or "").strip():
        errors["reason"] = ["Say why this version should go to this target."]
    if errors:
        raise ValidationError(errors)
    with transaction.atomic():
        deployment = Deployment.objects.create(
            version=version,
            target=target,
            reason=reason.strip(),
            change_ticket=change_ticket or "",
            requested_by=actor,
            **plan,
        )
        _event(deployment, actor, "", State.REQUESTED, reason.strip())
        awaiting = target.requires_approval
        events.publish("deployment.requested", deployment=deployment, awaiting_approval=awaiting)
        if not awaiting:
            _approve(deployment, None, f"{target} does not require approval.")
    return deployment


def awaiting_decision_by(user):
    """The requests `user` may approve or reject: policy's "deployment.approve" as a query."""
    if not can(user, "deployment.approve"):
        return Deployment.objects.none()
    return Deployment.objects.filter(state=State.REQUESTED).exclude(requested_by=user)


def approve_deployment(actor, deployment, *, comment="", override_reason=""):
    """Approve a requested deployment and queue its job. The requester never approves
    their own request; of two engineers approving at once, exactly one wins."""
    require(actor, "deployment.approve", deployment)
    blocking = blocking_incidents(deployment)
    if blocking and not override_reason.strip():
        numbers = ", ".join(f"#{incident.pk}" for incident in blocking)
        raise ValidationError({"override_reason": [
            f"{deployment.target} has open SEV1/SEV2 incidents ({numbers}); approving anyway "
            "needs a written override reason, recorded on the timeline."
        ]})  # fmt: skip
    with transaction.atomic():
        if blocking and override_reason.strip():
            _record(
                deployment, actor, DeploymentEventKind.OVERRIDE,
                f"Approved despite {', '.join(f'#{i.pk}' for i in blocking)}: "
                f"{override_reason.strip()}",
            )  # fmt: skip
        _approve(deployment, actor, comment)
    return deployment


def blocking_incidents(deployment) -> list:
    """Open SEV1/SEV2 incidents on a production target: approval needs an override.
    Monitoring answers the question (`deployments.hooks`)."""
    if deployment.target.environment != "production":
        return []
    return hooks.ask("blocking_incidents", deployment)


def reject_deployment(actor, deployment, *, comment):
    require(actor, "deployment.reject", deployment)
    if not (comment or "").strip():
        raise ValidationError({"comment": ["Tell the requester why it is rejected."]})
    with transaction.atomic():
        _transition(
            deployment, State.REJECTED, actor, comment.strip(),
            approved_by=actor, decision_comment=comment.strip(), finished_at=timezone.now(),
        )  # fmt: skip
    return deployment


def cancel_deployment(actor, deployment, *, reason=""):
    """The requester (or an engineer) withdraws a request that is still waiting."""
    require(actor, "deployment.cancel", deployment)
    # Only requests still waiting for a decision; queued → cancelled is the queue policy's.
    if deployment.state != State.REQUESTED:
        raise Conflict(
            f"Deployment #{deployment.pk} is {deployment.state}; it cannot be cancelled."
        )
    with transaction.atomic():
        _transition(
            deployment, State.CANCELLED, actor, reason or "Cancelled.", finished_at=timezone.now()
        )
    return deployment


def rollback_deployment(actor, live, *, reason):
    """Deploy again the version that was live before `live` on its target; return the new
    deployment. It skips approval when the target needs none or lets rollbacks skip it."""
    require(actor, "deployment.rollback", live)
    if not (reason or "").strip():
        raise ValidationError({"reason": ["Say why you roll back; everyone involved is told."]})
    if live.state != State.SUCCEEDED:
        raise Conflict(f"Only the live deployment can be rolled back; #{live.pk} is {live.state}.")
    previous = previous_good_deployment(live)
    if previous is None:
        raise Conflict(f"Nothing was live on {live.target} before #{live.pk}.")
    with transaction.atomic():
        rollback = Deployment.objects.create(
            version=previous.version,
            target=live.target,
            reason=f"Rollback of #{live.pk}: {reason.strip()}",
            requested_by=actor,
            rollback_of=live,
        )
        _event(rollback, actor, "", State.REQUESTED, rollback.reason)
        _record(
            live, actor, DeploymentEventKind.NOTE, f"Rollback requested as #{rollback.pk}: {reason}"
        )
        target = live.target
        skips_approval = not target.requires_approval or target.rollback_skips_approval
        events.publish(
            "deployment.requested", deployment=rollback, awaiting_approval=not skips_approval
        )
        if skips_approval:
            _approve(rollback, None, f"{target} lets rollbacks skip approval.")
        events.publish("deployment.rollback_requested", live=live, rollback=rollback)
    return rollback


def auto_rollback(live, reason):
    """The monitoring automation's rollback of `live` (its target has auto_rollback on):
    approved at once; None when `live` is no longer live or nothing was live before it."""
    live.refresh_from_db()
    previous = previous_good_deployment(live) if live.state == State.SUCCEEDED else None
    if previous is None:
        return None
    with transaction.atomic():
        rollback = Deployment.objects.create(
            version=previous.version,
            target=live.target,
            reason=f"Auto-rollback of #{live.pk}: {reason}",
            requested_by=live.requested_by,  # on behalf of; the events name the portal
            rollback_of=live,
        )
        _event(rollback, None, "", State.REQUESTED, rollback.reason)
        _record(live, None, DeploymentEventKind.NOTE, f"Auto-rollback as #{rollback.pk}: {reason}")
        events.publish("deployment.requested", deployment=rollback, awaiting_approval=False)
        _approve(rollback, None, f"{live.target} rolls back automatically.")
        events.publish("deployment.rollback_requested", live=live, rollback=rollback)
    return rollback


def previous_good_deployment(live):
    """The most recent deployment before `live` on its target that served another version
    and was not itself rolled back (after rolling v4 back to v3, v3's "previous good" is
    what served before v3, never v4 again)."""
    return (
        Deployment.objects.filter(
            target=live.target, state__in=WAS_LIVE_STATES, finished_at__lt=live.finished_at
        )
        .exclude(version=live.version)
        .exclude(state=State.ROLLED_BACK)
        .select_related("version")
        .order_by("-finished_at")
        .first()
    )


def add_comment(actor, deployment, body) -> DeploymentEvent:
    """Add `body` to the deployment's timeline as a comment; viewers only read."""
    require(actor, "deployment.comment", deployment)
    if not (body or "").strip():
        raise ValidationError({"body": ["Write something to say."]})
    return _record(deployment, actor, DeploymentEventKind.COMMENT, body.strip())


# --- the deploy job --------------------------------------------------------------------


def run_deployment(deployment_id: int) -> str | None:
    """Run one queued deployment to its end; return its final state, or None when there is
    nothing to do (gone, not queued, or another rollout holds the target)."""
    from deployments.services import canary

    deployment = _claim(deployment_id)
    if deployment is None:
        return None
    steps.reached("claimed")
    backend = backend_for(deployment.target)
    log = JobLog(deployment)
    log(f"Deploying {deployment.version} to {deployment.target} ({deployment.target.backend}).")
    # Before the backend restarts anything: monitoring opens its deploy window here.
    events.publish("deployment.started", deployment=deployment)
    try:
        if deployment.strategy == Strategy.CANARY and canary.start(deployment, backend, log):
            return State.RUNNING  # its step jobs take it on
        outcome = backend.deploy(deployment, log)
    except DeployError as exc:
        return _fail_and_clean_up(deployment, backend, str(exc))
    except Exception as exc:  # any bug in a backend still ends the job with a reason
        logger.exception("Deploy job #%s crashed", deployment.pk)
        return _fail_and_clean_up(deployment, backend, f"Unexpected error: {exc!r}")
    if outcome.awaiting_callback:
        _await_callback(deployment, backend.callback_timeout)
        return State.RUNNING
    steps.reached("deployed")
    return complete_deployment(deployment, outcome.endpoint, log)


def complete_deployment(deployment, endpoint, log=None) -> str:
    """Make `deployment` the target's live one, then stop the one it replaces.

    The replaced one is marked `stop_pending` in the transaction that replaces it, so if
    this job dies before stopping it, the reconciler does (`stop_server`)."""
    log = log or JobLog(deployment)
    with transaction.atomic():
        replaced = Deployment.objects.live().filter(target=deployment.target).first()
        if replaced is not None:
            ended = (
                State.ROLLED_BACK if deployment.rollback_of_id == replaced.pk else State.SUPERSEDED
            )
            _transition(replaced, ended, None, f"Replaced by #{deployment.pk}.", stop_pending=True)
        _transition(
            deployment, State.SUCCEEDED, None, f"Serving at {endpoint or 'the CD system'}.",
            endpoint=endpoint, finished_at=timezone.now(), lease_expires_at=None,
        )  # fmt: skip
        _start_next_waiting(deployment.target)
    log(f"Live: {deployment.version} now serves {deployment.target}.")
    steps.reached("went_live")
    if replaced is not None:
        stop_server(replaced)
        log(f"Stopped the previous deployment #{replaced.pk} ({replaced.version}).")
        steps.reached("stopped_old")
    return State.SUCCEEDED


def receive_callback(deployment, body: bytes, signature: str):
    """Apply a webhook deployment's outcome that its CD system posted back; return the
    deployment. Raises CallbackRefused for a bad or stale signature, Conflict when the
    deployment awaits no callback (a replay), ValidationError for a body that is not JSON."""
    problem = webhook.verify(deployment.target.backend_settings.get("secret", ""), body, signature)
    if problem:
        raise webhook.CallbackRefused(problem)
    if not (
        deployment.state == State.RUNNING and deployment.backend_state.get("awaiting_callback")
    ):
        raise Conflict(f"Deployment #{deployment.pk} is {deployment.state}; it awaits no callback.")
    try:
        data = json.loads(body)
    except ValueError:
        raise ValidationError({"body": ["The body is not JSON."]}) from None
    try:
        outcome = webhook.outcome_from(data if isinstance(data, dict) else {})
    except DeployError as exc:
        fail_deployment(deployment, str(exc))
    else:
        complete_deployment(deployment, outcome.endpoint)
    deployment.refresh_from_db()
    return deployment


def fail_deployment(deployment, reason: str, actor=None) -> str:
    """End a running deployment as failed (by `actor`, or by the portal itself); what its
    backend started is left `stop_pending` for the caller's `stop_server` (or the
    reconciler's)."""
    with transaction.atomic():
        _transition(
            deployment, State.FAILED, actor, reason, failure_reason=reason,
            finished_at=timezone.now(), lease_expires_at=None, stop_pending=True,
            canary_weight=None,
        )  # fmt: skip
        _start_next_waiting(deployment.target)
    return State.FAILED


def stop_server(deployment) -> bool:
    """Stop what an ended deployment's backend started and clear its `stop_pending`;
    return True when this call cleared it. Recorded on the deployment's timeline.

    Safe from two processes at once (the job and the reconciler): stopping twice is
    harmless, and the conditional UPDATE lets one of them record it."""
    deployment.refresh_from_db(fields=["backend_state", "stop_pending"])
    if not deployment.stop_pending:
        return False
    backend = backend_for(deployment.target)
    stopped = backend.stop(deployment)
    if backend.status(deployment) in ("serving", "unhealthy"):
        return False  # still running: the flag stays, the reconciler tries again
    with transaction.atomic():
        cleared = Deployment.objects.filter(pk=deployment.pk, stop_pending=True).update(
            stop_pending=False
        )
        if cleared and stopped:
            _record(deployment, None, DeploymentEventKind.NOTE, stopped)
    deployment.stop_pending = False
    return bool(cleared)


def _claim(deployment_id):
    """Move a queued deployment to running if its target is free; None otherwise."""
    if _superseded_before_claim(deployment_id):
        return None
    now = timezone.now()
    try:
        with transaction.atomic():
            claimed = Deployment.objects.filter(pk=deployment_id, state=State.QUEUED).update(
                state=State.RUNNING,
                attempts=F("attempts") + 1,
                started_at=now,
                lease_expires_at=now + timedelta(seconds=settings.DEPLOY_LEASE_SECONDS),
                updated_at=now,
            )
            if not claimed:
                return None  # already running elsewhere, finished, or gone
            deployment = Deployment.objects.for_list().get(pk=deployment_id)
            _event(deployment, None, State.QUEUED, State.RUNNING, f"Attempt {deployment.attempts}.")
    except IntegrityError:
        return None  # another rollout runs on this target; it starts us when it ends
    return deployment


def _fail_and_clean_up(deployment, backend, reason) -> str:
    JobLog(deployment)(f"Failed: {reason}")
    try:
        fail_deployment(deployment, reason)
    except Conflict:  # the reconciler ended it meanwhile (and stops what it finds)
        deployment.refresh_from_db(fields=["state"])
    stop_server(deployment)  # a half-started new process must not linger
    return deployment.state


def _await_callback(deployment, timeout_seconds: int) -> None:
    deadline = timezone.now() + timedelta(seconds=timeout_seconds)
    deployment.backend_state = {**deployment.backend_state, "awaiting_callback": True}
    Deployment.objects.filter(pk=deployment.pk, state=State.RUNNING).update(
        backend_state=deployment.backend_state, lease_expires_at=deadline
    )


def _start_next_waiting(target) -> None:
    """When a target frees up, start the deployment waiting next on it (its job is written
    in this transaction and sent when it commits)."""
    from deployments.tasks import run_deployment_task

    waiting = next_waiting(target)
    if waiting:
        outbox.enqueue(run_deployment_task, waiting)


# --- the queue policy -------------------------------------------------------------------


def next_waiting(target) -> int | None:
    """The id of the queued deployment to run next on `target`, or None: the oldest under
    the `queue` policy, the newest under `supersede` (it supersedes the others)."""
    if target.queue_policy == QueuePolicy.QUEUE:
        order = ("queued_at", "pk")
    else:
        order = ("-queued_at", "-pk")
    waiting = Deployment.objects.filter(target=target, state=State.QUEUED).order_by(*order)
    return waiting.values_list("pk", flat=True).first()


def _queued_later_than(deployment) -> Q:
    """Approved (queued) after `deployment`: later `queued_at`, ties broken by id."""
    return Q(queued_at__gt=deployment.queued_at) | Q(
        queued_at=deployment.queued_at, pk__gt=deployment.pk
    )


def _queued_after(deployment):
    """Deployments of the same target approved (queued) after `deployment`."""
    return Deployment.objects.filter(target_id=deployment.target_id).filter(
        _queued_later_than(deployment)
    )


def _supersede_older(newest) -> int:
    """Under the `supersede` policy, cancel the deployments of `newest`'s target that wait
    in `queued` since before it; return how many. Each is a conditional UPDATE: one that
    a worker claimed meanwhile runs on (its Conflict is skipped)."""
    if newest.target.queue_policy != QueuePolicy.SUPERSEDE:
        return 0
    older = (
        Deployment.objects.filter(target_id=newest.target_id, state=State.QUEUED)
        .exclude(_queued_later_than(newest))
        .exclude(pk=newest.pk)
    )
    superseded = 0
    for waiting in older.order_by("queued_at", "pk"):
        try:
            with transaction.atomic():
                _supersede(waiting, newest)
        except Conflict:
            continue
        superseded += 1
    return superseded


def _superseded_before_claim(deployment_id) -> bool:
    """True when the queued deployment `deployment_id` must not run because a newer one
    was queued on its supersede-policy target: it is cancelled here. Otherwise the older
    ones still waiting behind it are cancelled (requests that raced its approval)."""
    deployment = (
        Deployment.objects.select_related("target").filter(pk=deployment_id, state=State.QUEUED)
    ).first()
    if deployment is None or deployment.target.queue_policy != QueuePolicy.SUPERSEDE:
        return False
    newest = _queued_after(deployment).order_by("-queued_at", "-pk").first()
    if newest is None:
        _supersede_older(deployment)
        return False
    try:
        with transaction.atomic():
            _supersede(deployment, newest)
    except Conflict:
        pass  # claimed or ended meanwhile
    return True


def _supersede(waiting, newest) -> None:
    _transition(
        waiting, State.CANCELLED, None,
        f"Superseded by #{newest.pk}, a newer request (the target's queue policy is "
        "supersede: only the newest waiting request deploys).",
        finished_at=timezone.now(),
    )  # fmt: skip


class JobLog:
    """Writes timestamped log lines of a deploy job; each line also renews its lease."""

    def __init__(self, deployment):
        self.deployment = deployment

    def __call__(self, message: str) -> None:
        # The worker's own log gets the line too, with the request id of the deployment.
        logger.info(message, extra={"deployment": self.deployment.pk})
        DeploymentLogLine.objects.create(deployment=self.deployment, message=message)
        Deployment.objects.filter(pk=self.deployment.pk, state=State.RUNNING).exclude(
            backend_state__has_key="awaiting_callback"
        ).update(lease_expires_at=timezone.now() + timedelta(seconds=settings.DEPLOY_LEASE_SECONDS))


# --- recovery ---------------------------------------------------------------------------


def reconcile_deployments(now=None) -> dict[str, int]:
    """Bring stuck deployments to a consistent end; return what was done, by kind.

    - running with an expired lease: its worker died (or the CD system never called back):
      mark it failed with the reason and stop whatever it started;
    - ended with its stop pending for longer than a job's lease (its job died between
      going live and stopping the old server, or while failing): stop it now;
    - queued with a free target for a while: its message was lost, send it again;
    - live on the local or ray backend with a dead model server (Serve application):
      record it once on the timeline.

    `now` moves the reconciler's clock (tests: "a lease later"); by default, now."""
    done = {"failed": 0, "stopped": 0, "resent": 0, "dead_servers": 0}
    now = now or timezone.now()
    stuck = Deployment.objects.for_list().filter(state=State.RUNNING, lease_expires_at__lt=now)
    for deployment in stuck:
        if _fail_stuck(deployment):
            done["failed"] += 1
    done["stopped"] = _stop_pending_servers(now)
    done["resent"] = _resend_waiting(now)
    served = Deployment.objects.for_list().live().filter(target__backend__in=SERVED_BACKENDS)
    for deployment in served:
        if _record_dead_server(deployment):
            done["dead_servers"] += 1
    return done


def _fail_stuck(deployment) -> bool:
    if deployment.backend_state.get("awaiting_callback"):
        reason = "No answer from the CD system within the target's timeout_seconds."
    elif deployment.canary_weight is not None:
        reason = (
            "The canary's step job did not run within its hold and "
            f"{settings.DEPLOY_LEASE_SECONDS} s (its worker was lost): the canary is "
            "stopped, the stable version keeps all the traffic."
        )
    else:
        reason = (
            "The deploy job stopped before finishing (its worker was lost; no heartbeat for "
            f"{settings.DEPLOY_LEASE_SECONDS} s). The previous deployment keeps serving."
        )
    try:
        JobLog(deployment)(f"Reconciler: {reason}")
        fail_deployment(deployment, reason)
    except Conflict:
        return False  # it finished while we looked
    # Failed first, then stopped: a job still alive can no longer record a new pid
    # (local.record_process needs `running`), so the pid read here is the last one.
    stop_server(deployment)
    return True


def _stop_pending_servers(now) -> int:
    """Stop the servers whose stop is still pending a lease after their deployment ended;
    return how many were stopped. The grace leaves a live job the time to do it itself."""
    grace = now - timedelta(seconds=settings.DEPLOY_LEASE_SECONDS)
    pending = Deployment.objects.select_related("target").filter(
        stop_pending=True, updated_at__lt=grace
    )
    return sum(stop_server(deployment) for deployment in pending)


def _resend_waiting(now) -> int:
    cutoff = now - timedelta(seconds=settings.DEPLOY_RESEND_QUEUED_SECONDS)
    busy = Deployment.objects.filter(state=State.RUNNING).values("target_id")
    waiting = Deployment.objects.filter(state=State.QUEUED, queued_at__lt=cutoff).exclude(
        target_id__in=busy
    )
    from deployments.tasks import run_deployment_task

    # The one to run next per free target (its queue policy decides which).
    targets = Target.objects.filter(pk__in=waiting.values("target_id"))
    resent = [pk for pk in map(next_waiting, targets) if pk]
    for pk in resent:
        outbox.enqueue(run_deployment_task, pk)
    return len(resent)


def _record_dead_server(deployment) -> bool:
    if deployment.backend_state.get("died_at"):
        return False
    if backend_for(deployment.target).status(deployment) != "stopped":
        return False
    state = {**deployment.backend_state, "died_at": timezone.now().isoformat()}
    if deployment.backend_state.get("app"):
        note = f"The Serve application {deployment.backend_state['app']} no longer serves it."
    else:
        note = f"The model server (pid {deployment.backend_state.get('pid')}) is not running."
    with transaction.atomic():
        Deployment.objects.filter(pk=deployment.pk).update(backend_state=state)
        _record(deployment, None, DeploymentEventKind.NOTE, note)
    return True


# --- state machine core ------------------------------------------------------------------


def _approve(deployment, actor, comment):
    _transition(
        deployment, State.APPROVED, actor, comment or "Approved.",
        approved_by=actor, decision_comment=comment or "",
    )  # fmt: skip
    _transition(deployment, State.QUEUED, None, "Waiting for a deploy worker.",
                queued_at=timezone.now())  # fmt: skip
    _supersede_older(deployment)
    events.publish("deployment.approved", deployment=deployment)
    from deployments.tasks import run_deployment_task

    outbox.enqueue(run_deployment_task, deployment.pk)


def _transition(deployment, to_state, actor, message, **fields) -> None:
    """Move `deployment` from the state it has in memory to `to_state`, or raise Conflict.

    Must run inside a transaction: the UPDATE and the event row commit together."""
    from_state = deployment.state
    if to_state not in DEPLOYMENT_TRANSITIONS.get(from_state, ()):
        raise Conflict(f"Deployment #{deployment.pk} is {from_state}; it cannot become {to_state}.")
    moved = Deployment.objects.filter(pk=deployment.pk, state=from_state).update(
        state=to_state, updated_at=timezone.now(), **fields
    )
    if not moved:
        current = Deployment.objects.filter(pk=deployment.pk).values_list("state", flat=True)
        raise Conflict(
            f"Deployment #{deployment.pk} changed meanwhile: it is now "
            f"{current.first() or 'gone'}; reload the page."
        )
    deployment.state = to_state
    for name, value in fields.items():
        setattr(deployment, name, value)
    event = _event(deployment, actor, from_state, to_state, message)
    audit.record_update(deployment, actor, {"state": (from_state, to_state)})
    if to_state in OUTCOME_EVENTS:  # in the transaction: subscribers' rows commit with it
        events.publish(OUTCOME_EVENTS[to_state], deployment=deployment, event=event)


def _event(deployment, actor, from_state, to_state, message) -> DeploymentEvent:
    return DeploymentEvent.objects.create(
        deployment=deployment,
        kind=DeploymentEventKind.STATE,
        from_state=from_state,
        to_state=to_state,
        actor=actor,
        message=message,
    )


def _record(deployment, actor, kind, message) -> DeploymentEvent:
    return DeploymentEvent.objects.create(
        deployment=deployment, kind=kind, actor=actor, message=message
    )


# --- domain events (mlops_portal.core.events) -------------------------------------------

OUTCOME_EVENTS = {
    State.SUCCEEDED: "deployment.live",
    State.FAILED: "deployment.failed",
    State.ROLLED_BACK: "deployment.rolled_back",  # replaced by its rollback, which is live
}
