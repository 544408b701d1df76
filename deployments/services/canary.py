"""Canary releases: a deployment that takes a share of the target's traffic first, step by
step, while the live (stable) deployment serves the rest, then is promoted or aborted.

The state machine is unchanged: a canary is `running` (it holds the target's one rollout)
with `canary_weight` set. The deploy job starts it (`start`) at the first step's weight and
schedules the first step job for the end of the hold. Each step job (`run_step`) compares
the canary with the stable version over the hold (deployments.canary_analysis): passed,
the next weight, or after the last step promotion, which completes the deployment like any
success (the stable one is superseded and stopped); failed, the canary is aborted and the
deployment fails with the analysis as its reason, the stable one serving everything.

`canary_step` makes the deciders take turns: a step job, or an engineer's promote/abort,
first moves it from the step it saw to DECIDING with a conditional UPDATE; whoever loses
finds another value and stops (a step job quietly, an engineer with a Conflict). A step
job lost with its worker leaves the lease to expire (hold + DEPLOY_LEASE_SECONDS): the
reconciler then fails the canary and stops what it started, so the stable one serves all."""

import itertools
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from deployments import canary_analysis as analysis
from deployments.backends import DeployError, backend_for
from deployments.choices import DeploymentEventKind, DeploymentState, Strategy
from deployments.models import Deployment
from deployments.services.rollouts import (
    JobLog,
    _record,
    complete_deployment,
    fail_deployment,
    stop_server,
)
from mlops_portal.core import outbox
from mlops_portal.core.errors import Conflict
from mlops_portal.core.policy import require

State = DeploymentState
DECIDING = 999  # canary_step while a step job or an engineer's decision acts
MAX_STEP_SECONDS = 24 * 3600


# --- the request ----------------------------------------------------------------------


def clean_request(target, strategy, steps, step_seconds) -> dict:
    """The canary fields of a deployment request, validated; ValidationError naming the
    field otherwise. All at once ignores the canary fields."""
    strategy = strategy or Strategy.ALL_AT_ONCE
    if strategy not in Strategy.values:
        raise ValidationError({"strategy": [f"Choose one of {', '.join(Strategy.values)}."]})
    if strategy == Strategy.ALL_AT_ONCE:
        return {"strategy": strategy, "canary_steps": [], "canary_step_seconds": 0}
    errors = {}
    if not backend_for(target).supports_canary:
        errors["strategy"] = [
            f"{target} uses the {target.backend} backend, which cannot split traffic; "
            "deploy all at once."
        ]
    steps = list(steps or [])
    if not steps:
        errors["canary_steps"] = ["Give the canary's traffic percentages, e.g. [10, 50]."]
    elif not all(isinstance(w, int) and not isinstance(w, bool) and 0 < w < 100 for w in steps):
        errors["canary_steps"] = ["Each step is a whole percentage above 0 and below 100."]
    elif any(later <= earlier for earlier, later in itertools.pairwise(steps)):
        errors["canary_steps"] = ["The steps must increase, e.g. [10, 50]."]
    if not isinstance(step_seconds, int) or not 1 <= step_seconds <= MAX_STEP_SECONDS:
        errors["canary_step_seconds"] = [
            f"How long each step holds before its analysis: 1 to {MAX_STEP_SECONDS} seconds."
        ]
    if errors:
        raise ValidationError(errors)
    return {"strategy": strategy, "canary_steps": steps, "canary_step_seconds": step_seconds}


# --- the deploy job's part ------------------------------------------------------------


def start(deployment, backend, log) -> bool:
    """Start `deployment` as a canary at its first step; False when there is no live
    version to compare with (a first deployment goes all at once). Raises DeployError."""
    stable = live_on(deployment.target)
    if stable is None:
        log(f"Nothing is live on {deployment.target}: a first deployment goes all at once.")
        return False
    weight = deployment.canary_steps[0]
    outcome = backend.start_canary(deployment, stable, weight, log)
    with transaction.atomic():
        moved = Deployment.objects.filter(pk=deployment.pk, state=State.RUNNING).update(
            endpoint=outcome.endpoint, canary_weight=weight, canary_step=0
        )
        if not moved:
            raise DeployError("The deployment ended while its canary started.")
        deployment.endpoint, deployment.canary_weight = outcome.endpoint, weight
        _record(
            deployment, None, DeploymentEventKind.CANARY,
            f"Step 1 of {len(deployment.canary_steps)}: {weight} % of the traffic to "
            f"{deployment.version} at {outcome.endpoint}, the rest to #{stable.pk} "
            f"({stable.version}); analysis in {deployment.canary_step_seconds} s.",
        )  # fmt: skip
        _schedule(deployment, 0, stable, backend)
    return True


def live_on(target):
    return Deployment.objects.live().filter(target=target).select_related("version").first()


def _schedule(deployment, step, stable, backend) -> None:
    """Keep the counters at the start of `step` and send its job for the end of its hold;
    the lease covers the hold, so only a lost job lets it expire."""
    from deployments.tasks import canary_step_task

    hold = deployment.canary_step_seconds
    deployment.canary_baseline = _readings(deployment, stable, backend)
    Deployment.objects.filter(pk=deployment.pk).update(
        canary_step=step,
        canary_baseline=deployment.canary_baseline,
        lease_expires_at=timezone.now() + timedelta(seconds=hold + settings.DEPLOY_LEASE_SECONDS),
    )
    deployment.canary_step = step
    outbox.enqueue(canary_step_task, deployment.pk, step, countdown=hold)


def _readings(deployment, stable, backend) -> dict:
    """Both servers' counters now ({} for one that cannot be read: its window then counts
    from its start)."""
    urls = backend.canary_metrics_urls(deployment, stable)
    if urls is None:
        return {}
    readings = {}
    for side, url in zip(("stable", "canary"), urls, strict=True):
        try:
            readings[side] = analysis.scrape(url)
        except analysis.MetricsUnavailable:
            readings[side] = {}
    return readings


# --- the step job ---------------------------------------------------------------------


def run_step(deployment_id: int, step: int) -> str | None:
    """The end of step `step`'s hold: analyse, then the next step, promotion or abort;
    return the deployment's state, or None when another decider took this step."""
    deployment = _claim(deployment_id, step)
    if deployment is None:
        return None
    backend = backend_for(deployment.target)
    log = JobLog(deployment)
    stable = live_on(deployment.target)
    if stable is None:
        return _abort(deployment, None, backend, log, None, "The stable deployment is gone.")
    verdict = _analyse(deployment, stable, backend)
    number = step + 1
    _record(deployment, None, DeploymentEventKind.CANARY,
            f"Step {number} ({deployment.canary_weight} %): {verdict.summary}")  # fmt: skip
    log(f"Canary step {number}: {verdict.summary}")
    if not verdict.passed:
        return _abort(deployment, stable, backend, log, None, verdict.summary)
    if number == len(deployment.canary_steps):
        return _promote(deployment, stable, backend, log, None, "every step passed its analysis")
    weight = deployment.canary_steps[number]
    try:
        backend.set_canary_weight(deployment, stable, weight, log)
    except DeployError as exc:
        return _abort(deployment, stable, backend, log, None, f"Could not set {weight} %: {exc}")
    with transaction.atomic():
        Deployment.objects.filter(pk=deployment.pk).update(canary_weight=weight)
        deployment.canary_weight = weight
        _record(
            deployment, None, DeploymentEventKind.CANARY,
            f"Step {number + 1} of {len(deployment.canary_steps)}: {weight} % of the traffic; "
            f"analysis in {deployment.canary_step_seconds} s.",
        )  # fmt: skip
        _schedule(deployment, number, stable, backend)
    return State.RUNNING


def _claim(deployment_id, step) -> Deployment | None:
    """Take the decision of `step` (a step index, or DECIDING for a hand's decision that
    is already taken); None when the canary is past it or over."""
    now = timezone.now()
    lease = now + timedelta(seconds=settings.DEPLOY_LEASE_SECONDS)
    rows = Deployment.objects.filter(
        pk=deployment_id, state=State.RUNNING, canary_weight__isnull=False
    )
    if step != DECIDING:
        claimed = rows.filter(canary_step=step).update(canary_step=DECIDING, lease_expires_at=lease)
    else:
        claimed = rows.filter(canary_step=DECIDING).update(lease_expires_at=lease)
    if not claimed:
        return None
    return Deployment.objects.for_list().get(pk=deployment_id)


def _analyse(deployment, stable, backend) -> analysis.Verdict:
    urls = backend.canary_metrics_urls(deployment, stable)
    if urls is None:
        return analysis.Verdict(
            True, f"Not judged: the {deployment.target.backend} backend gives no metrics "
            "per version; the step passes on time alone.", {},
        )  # fmt: skip
    windows = {}
    for side, url in zip(("stable", "canary"), urls, strict=True):
        try:
            now = analysis.scrape(url)
        except analysis.MetricsUnavailable as exc:
            return analysis.Verdict(False, f"The {side} version's metrics: {exc}.", {})
        windows[side] = analysis.window(deployment.canary_baseline.get(side) or {}, now)
    return analysis.judge(windows["stable"], windows["canary"], rules())


def rules() -> analysis.Rules:
    return analysis.Rules(
        min_requests=settings.CANARY_MIN_REQUESTS,
        max_error_rate_increase=settings.CANARY_MAX_ERROR_RATE_INCREASE,
        max_p95_ratio=settings.CANARY_MAX_P95_RATIO,
        p95_floor_seconds=settings.CANARY_P95_FLOOR_SECONDS,
    )


def _promote(deployment, stable, backend, log, actor, why) -> str:
    try:
        outcome = backend.promote_canary(deployment, stable, log)
    except DeployError as exc:
        return _abort(deployment, stable, backend, log, None, f"Promotion failed: {exc}")
    who = f"by {actor}" if actor else "automatically"
    with transaction.atomic():
        Deployment.objects.filter(pk=deployment.pk).update(canary_weight=None)
        deployment.canary_weight = None
        _record(deployment, actor, DeploymentEventKind.CANARY,
                f"Promoted {who}: {why}. {deployment.version} takes all the traffic.")  # fmt: skip
    return complete_deployment(deployment, outcome.endpoint, log)


def _abort(deployment, stable, backend, log, actor, reason) -> str:
    if stable is not None:
        try:
            backend.abort_canary(deployment, stable, log)
        except DeployError as exc:  # stopping the canary below still frees the traffic
            log(f"Giving the traffic back to #{stable.pk} failed: {exc}")
    who = f"by {actor}" if actor else "automatically"
    message = f"Canary aborted {who}: {reason}"
    with transaction.atomic():
        _record(deployment, actor, DeploymentEventKind.CANARY,
                f"{message} The stable version keeps all the traffic.")  # fmt: skip
        fail_deployment(deployment, message, actor)
    log(message)
    stop_server(deployment)
    return State.FAILED


# --- by hand --------------------------------------------------------------------------


def promote_canary(actor, deployment, *, comment=""):
    """An engineer promotes a running canary now, skipping its remaining steps."""
    return _decide_by_hand(actor, deployment, "promote", comment)


def abort_canary(actor, deployment, *, reason=""):
    """An engineer aborts a running canary: the stable version takes all the traffic."""
    return _decide_by_hand(actor, deployment, "abort", reason)


def _decide_by_hand(actor, deployment, decision, comment):
    from deployments.tasks import canary_decision_task

    require(actor, "deployment.canary", deployment)
    deployment.refresh_from_db()
    if deployment.state != State.RUNNING or deployment.canary_weight is None:
        raise Conflict(f"Deployment #{deployment.pk} is not a running canary.")
    seen = deployment.canary_step
    with transaction.atomic():
        taken = Deployment.objects.filter(
            pk=deployment.pk, state=State.RUNNING, canary_weight__isnull=False, canary_step=seen
        ).exclude(canary_step=DECIDING)
        if not taken.update(canary_step=DECIDING):
            raise Conflict(
                f"Deployment #{deployment.pk}'s canary is being decided right now; reload."
            )
        deployment.canary_step = DECIDING
        said = (comment or "").strip()
        _record(deployment, actor, DeploymentEventKind.CANARY,
                f"{decision.capitalize()} by hand" + (f": {said}" if said else "."))  # fmt: skip
        outbox.enqueue(canary_decision_task, deployment.pk, decision, actor.pk, said)
    return deployment


def run_decision(deployment_id: int, decision: str, actor_id: int, comment: str) -> str | None:
    """Carry out an engineer's promote or abort (the job `_decide_by_hand` sent)."""
    from django.contrib.auth import get_user_model

    deployment = _claim(deployment_id, DECIDING)
    if deployment is None:
        return None
    actor = get_user_model().objects.filter(pk=actor_id).first()
    backend = backend_for(deployment.target)
    log = JobLog(deployment)
    stable = live_on(deployment.target)
    said = comment or "no reason given"
    if decision == "promote" and stable is not None:
        return _promote(deployment, stable, backend, log, actor, said)
    return _abort(deployment, stable, backend, log, actor, said)
