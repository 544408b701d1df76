"""Celery entry points: thin wrappers that take IDs and call services."""

from celery import shared_task
from django.db import OperationalError

from deployments import services
from deployments.services import canary
from mlops_portal.core import outbox


@shared_task(
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    retry_jitter=True,
    max_retries=5,
    soft_time_limit=300,
)
def validate_version_task(version_id: int) -> str | None:
    """Validate one model version; a version already final or gone is skipped quietly."""
    version = services.validate_version(version_id)
    return version.status if version else None


@shared_task
def requeue_stale_validations() -> int:
    """Queue again the versions no worker picked up or whose worker died; return how many."""
    stale = services.stale_validation_ids()
    for version_id in stale:
        outbox.enqueue(validate_version_task, version_id)
    return len(stale)


@shared_task(
    acks_late=True,
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    retry_jitter=True,
    max_retries=5,
)
def run_deployment_task(deployment_id: int) -> str | None:
    """Run one deploy job (queue `deploy`); delivered twice, it runs once."""
    return services.run_deployment(deployment_id)


@shared_task(acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def canary_step_task(deployment_id: int, step: int) -> str | None:
    """The end of a canary step's hold (queue `deploy`): analyse, then advance, promote or
    abort; a step another decider took is skipped."""
    return canary.run_step(deployment_id, step)


@shared_task(acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def canary_decision_task(deployment_id: int, decision: str, actor_id: int, comment: str):
    """An engineer's promote or abort of a canary (queue `deploy`)."""
    return canary.run_decision(deployment_id, decision, actor_id, comment)


@shared_task
def reconcile_deployments_task() -> dict:
    """Beat: end stuck deployments, resend lost ones, note dead model servers."""
    return services.reconcile_deployments()
