"""Retention: job logs, notifications (with their deliveries) and change records older than
their setting are deleted by the hourly job; recent ones and unfinished work stay."""

from datetime import timedelta

import pytest
from auditlog.models import LogEntry
from django.utils import timezone

from deployments import services
from deployments.choices import DeploymentState as State
from deployments.models import Deployment, DeploymentLogLine
from mlops_portal.choices import DeliveryStatus, Medium, NotificationEvent
from mlops_portal.models import Delivery, Notification
from mlops_portal.overview import retention
from mlops_portal.overview.tasks import prune_old_records_task
from monitoring.models import DriftScore

pytestmark = pytest.mark.django_db
NOW = timezone.now()


def days_ago(days):
    return NOW - timedelta(days=days)


def log_lines(deployment, *ages):
    for age in ages:
        line = DeploymentLogLine.objects.create(deployment=deployment, message=f"{age} days old")
        DeploymentLogLine.objects.filter(pk=line.pk).update(created_at=days_ago(age))


def notification(key, age, *statuses, user):
    note = Notification.objects.create(
        event=NotificationEvent.DEPLOYMENT_SUCCEEDED, key=key, title=key
    )
    Notification.objects.filter(pk=note.pk).update(created_at=days_ago(age))
    for status in statuses:
        Delivery.objects.create(
            notification=note, user=user, medium=Medium.EMAIL, address="a@x", status=status
        )
    return note


def test_old_rows_go_recent_rows_and_unfinished_work_stay(settings, alice, bob, ready_version,
                                                          staging):  # fmt: skip
    settings.JOB_LOG_RETENTION_DAYS = 30
    settings.NOTIFICATION_RETENTION_DAYS = 30
    settings.CHANGE_RECORD_RETENTION_DAYS = 365
    settings.DRIFT_SCORE_RETENTION_DAYS = 90
    ended = services.request_deployment(alice, version=ready_version, target=staging, reason="a")
    Deployment.objects.filter(pk=ended.pk).update(state=State.FAILED)
    running = services.request_deployment(alice, version=ready_version, target=staging, reason="b")
    Deployment.objects.filter(pk=running.pk).update(state=State.RUNNING)
    log_lines(ended, 40, 10)
    log_lines(running, 40)
    notification("old-sent", 40, DeliveryStatus.SENT, user=alice)
    notification("old-retrying", 40, DeliveryStatus.RETRYING, user=alice)
    notification("old-no-delivery", 40, user=alice)
    notification("recent", 10, DeliveryStatus.FAILED, user=alice)
    LogEntry.objects.update(timestamp=days_ago(10))
    old_record = LogEntry.objects.order_by("pk").first()
    LogEntry.objects.filter(pk=old_record.pk).update(timestamp=days_ago(400))
    records_before = LogEntry.objects.count()
    drift_scores(ready_version, 100, 10)

    pruned = prune_old_records_task()

    assert pruned == {"job_log_lines": 1, "notifications": 2, "change_records": 1,
                      "logged_predictions": 0, "drift_scores": 1}  # fmt: skip
    assert list(DriftScore.objects.values_list("feature", flat=True)) == ["10 days old"]
    assert sorted(DeploymentLogLine.objects.values_list("deployment_id", "message")) == [
        (ended.pk, "10 days old"), (running.pk, "40 days old"),
    ]  # fmt: skip
    assert set(Notification.objects.values_list("key", flat=True)) == {"old-retrying", "recent"}
    assert Delivery.objects.count() == 2  # the deleted notifications' went with them
    assert LogEntry.objects.count() == records_before - 1
    assert not LogEntry.objects.filter(pk=old_record.pk).exists()


def drift_scores(version, *ages):
    for age in ages:
        DriftScore.objects.create(
            version=version, window_start=days_ago(age) - timedelta(hours=1),
            window_end=days_ago(age), subject="feature", feature=f"{age} days old",
            method="psi", score=0.01, status="ok", rows=100,
        )  # fmt: skip


def test_zero_keeps_everything(settings, alice):
    settings.JOB_LOG_RETENTION_DAYS = 0
    settings.NOTIFICATION_RETENTION_DAYS = 0
    settings.CHANGE_RECORD_RETENTION_DAYS = 0
    settings.PREDICTION_LOG_RETENTION_DAYS = 0
    settings.DRIFT_SCORE_RETENTION_DAYS = 0
    notification("ancient", 5000, DeliveryStatus.SENT, user=alice)
    assert retention.prune_old_records() == {}
    assert Notification.objects.filter(key="ancient").exists()


def test_a_large_backlog_goes_in_batches(settings, monkeypatch, alice):
    settings.NOTIFICATION_RETENTION_DAYS = 30
    monkeypatch.setattr(retention, "BATCH", 2)
    for n in range(5):
        notification(f"old-{n}", 40, DeliveryStatus.SENT, user=alice)
    assert retention.prune_old_records()["notifications"] == 5
    assert not Notification.objects.exists()


def test_every_retention_setting_is_documented():
    from tests.conftest import ROOT

    readme = (ROOT / "README.md").read_text()
    for name in (
        "JOB_LOG_RETENTION_DAYS", "NOTIFICATION_RETENTION_DAYS", "CHANGE_RECORD_RETENTION_DAYS",
        "HEALTHCHECK_RESULT_RETENTION_DAYS", "DRIFT_SCORE_RETENTION_DAYS",
    ):  # fmt: skip
        assert f"`{name}`" in readme, name
