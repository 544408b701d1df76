"""Validation through a real Celery worker process on the real Redis."""

import pytest
from django.core.files.base import ContentFile

from deployments import services
from deployments.choices import VersionStatus
from deployments.models import ModelVersion
from deployments.tasks import requeue_stale_validations
from tests.conftest import wait_until
from tests.factories import register_iris_version

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def final_status(version_id):
    version = ModelVersion.objects.get(pk=version_id)
    return version if version.is_final else None


def test_the_worker_validates_a_registered_version(celery_worker_process, alice):
    model = services.create_model(alice, name="churn")
    version = register_iris_version(alice, model)
    validated = wait_until(lambda: final_status(version.pk))
    assert validated.status == VersionStatus.READY
    assert validated.validation_attempts == 1
    assert "predicted 3 sample rows" in validated.status_detail


def test_the_worker_records_why_a_version_is_invalid(celery_worker_process, alice):
    model = services.create_model(alice, name="churn")
    version = register_iris_version(
        alice, model, artifact=ContentFile(b"\x80\x04garbage", name="model.joblib")
    )
    validated = wait_until(lambda: final_status(version.pk))
    assert validated.status == VersionStatus.INVALID
    assert validated.status_detail.startswith("Could not load the artifact with joblib")


def test_the_reconciler_revalidates_a_version_whose_worker_died(celery_worker_process, alice):
    model = services.create_model(alice, name="churn")
    version = register_iris_version(alice, model)
    wait_until(lambda: final_status(version.pk))
    # Pretend a worker claimed it long ago and was killed before it finished.
    ModelVersion.objects.filter(pk=version.pk).update(
        status=VersionStatus.VALIDATING,
        validated_at=None,
        validation_started_at="2020-01-01T00:00Z",
    )
    # The reconciler runs here and queues the validation for the worker.
    assert requeue_stale_validations() == 1
    revalidated = wait_until(lambda: final_status(version.pk), timeout=60)
    assert revalidated.status == VersionStatus.READY
    assert revalidated.validation_attempts == 2
