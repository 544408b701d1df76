"""Deployment rules through the services every page, API call and task uses."""

import threading

import pytest
from django.core import mail
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, connection, transaction

from deployments import services
from deployments.backends import backend_class
from deployments.choices import DeploymentState as State
from deployments.models import Deployment
from mlops_portal.choices import NotificationEvent
from mlops_portal.core.errors import Conflict
from mlops_portal.models import Delivery
from mlops_portal.overview import notifications
from tests.factories import register_iris_version, validated

RUN = "deployments.tasks.run_deployment_task"


@pytest.fixture
def queued_jobs(sent_tasks):
    """The deployment ids sent to the deploy queue (the worker side is tested elsewhere)."""
    return lambda: [
        sent.args[0] for sent in sent_tasks if sent.task == RUN and sent.queue == "deploy"
    ]


def deploy_jobs(outbox_jobs) -> list[int]:
    """The deployment ids whose jobs were written to the outbox, sent or not yet."""
    return [args[0] for _, args in outbox_jobs(RUN)]


def request(user, version, target, reason="Better accuracy"):
    return services.request_deployment(user, version=version, target=target, reason=reason)


def states(deployment):
    return list(deployment.events.filter(kind="state").values_list("to_state", flat=True))


def test_a_target_without_approval_queues_the_request_at_once(
    alice, ready_version, staging, queued_jobs, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        deployment = request(alice, ready_version, staging)
    assert deployment.state == State.QUEUED
    assert states(deployment) == [State.REQUESTED, State.APPROVED, State.QUEUED]
    assert queued_jobs() == [deployment.pk]


def test_a_production_request_waits_for_an_engineer(
    alice, bob, ready_version, production, queued_jobs, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        deployment = request(alice, ready_version, production)
    assert deployment.state == State.REQUESTED
    assert queued_jobs() == []
    with django_capture_on_commit_callbacks(execute=True):
        services.approve_deployment(bob, deployment, comment="Metrics look good.")
    deployment.refresh_from_db()
    assert (deployment.state, deployment.approved_by) == (State.QUEUED, bob)
    assert deployment.decision_comment == "Metrics look good."
    assert queued_jobs() == [deployment.pk]


def test_nobody_approves_their_own_request(bob, ready_version, production):
    deployment = request(bob, ready_version, production)
    with pytest.raises(PermissionDenied, match="another engineer must approve"):
        services.approve_deployment(bob, deployment)
    deployment.refresh_from_db()
    assert deployment.state == State.REQUESTED


def test_data_scientists_cannot_approve(alice, dave, ready_version, production):
    deployment = request(alice, ready_version, production)
    with pytest.raises(PermissionDenied, match="Only MLOps engineers may approve"):
        services.approve_deployment(dave, deployment)


def test_viewers_cannot_request(carol, ready_version, staging):
    with pytest.raises(PermissionDenied):
        request(carol, ready_version, staging)
    assert not Deployment.objects.exists()


def test_only_ready_versions_deploy(alice, iris, staging):
    pending = register_iris_version(alice, iris)
    with pytest.raises(ValidationError) as excinfo:
        request(alice, pending, staging)
    assert "only ready versions deploy" in excinfo.value.message_dict["version"][0]


def test_a_request_needs_a_reason(alice, ready_version, staging):
    with pytest.raises(ValidationError) as excinfo:
        request(alice, ready_version, staging, reason="  ")
    assert "reason" in excinfo.value.message_dict


def test_approving_twice_is_a_conflict_not_a_second_job(
    alice, bob, erin, ready_version, production, outbox_jobs
):
    deployment = request(alice, ready_version, production)
    services.approve_deployment(bob, deployment)
    stale_copy = Deployment.objects.get(pk=deployment.pk)
    stale_copy.state = State.REQUESTED  # what Erin's page still shows
    with pytest.raises(Conflict, match=r"cannot become approved|changed meanwhile"):
        services.approve_deployment(erin, stale_copy)
    assert deploy_jobs(outbox_jobs) == [deployment.pk]


def test_rejecting_needs_a_comment_and_ends_the_request(alice, bob, ready_version, production):
    deployment = request(alice, ready_version, production)
    with pytest.raises(ValidationError):
        services.reject_deployment(bob, deployment, comment="")
    services.reject_deployment(bob, deployment, comment="Freeze week.")
    deployment.refresh_from_db()
    assert (deployment.state, deployment.decision_comment) == (State.REJECTED, "Freeze week.")
    with pytest.raises(Conflict):
        services.approve_deployment(bob, deployment)


def test_the_requester_cancels_while_it_waits(alice, dave, ready_version, production, outbox_jobs):
    deployment = request(alice, ready_version, production)
    with pytest.raises(PermissionDenied):
        services.cancel_deployment(dave, deployment)
    services.cancel_deployment(alice, deployment, reason="Wrong version.")
    deployment.refresh_from_db()
    assert deployment.state == State.CANCELLED
    assert deploy_jobs(outbox_jobs) == []


def test_the_database_refuses_two_running_rollouts_on_one_target(
    alice, ready_version, second_version, staging
):
    first = request(alice, ready_version, staging)
    second = request(alice, second_version, staging)
    Deployment.objects.filter(pk=first.pk).update(state=State.RUNNING)
    with pytest.raises(IntegrityError), transaction.atomic():
        Deployment.objects.filter(pk=second.pk).update(state=State.RUNNING)


def test_a_second_rollout_waits_while_the_first_runs(
    alice, ready_version, second_version, staging, outbox_jobs
):
    first = request(alice, ready_version, staging)
    second = request(alice, second_version, staging)
    Deployment.objects.filter(pk=first.pk).update(state=State.RUNNING)
    assert services.run_deployment(second.pk) is None  # the target is busy: it stays queued
    second.refresh_from_db()
    assert second.state == State.QUEUED
    first.refresh_from_db()
    services.fail_deployment(first, "Port in use.")  # the target is free: start the next
    assert deploy_jobs(outbox_jobs) == [first.pk, second.pk, second.pk]


@pytest.mark.django_db(transaction=True)
def test_two_engineers_approving_at_once_start_exactly_one_job(
    alice, bob, erin, ready_version, production, queued_jobs
):
    assert connection.vendor == "postgresql"
    deployment = request(alice, ready_version, production)
    start = threading.Barrier(2)
    outcomes = []

    def approve(engineer):
        copy = Deployment.objects.get(pk=deployment.pk)
        start.wait()
        try:
            services.approve_deployment(engineer, copy)
            outcomes.append("approved")
        except Conflict:
            outcomes.append("conflict")
        finally:
            connection.close()

    threads = [threading.Thread(target=approve, args=(user,)) for user in (bob, erin)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["approved", "conflict"]
    assert queued_jobs() == [deployment.pk]
    assert states(deployment).count(State.APPROVED) == 1


# --- targets ----------------------------------------------------------------------------


def test_production_targets_require_approval_by_default(production, staging):
    assert production.requires_approval is True
    assert staging.requires_approval is False


def test_a_wrong_backend_setting_is_a_field_error_when_saving(bob):
    with pytest.raises(ValidationError) as excinfo:
        services.create_target(
            bob, name="cd", environment="staging", backend="webhook",
            backend_settings={"url": "ftp://x", "secret": "short", "colour": "red"},
        )  # fmt: skip
    errors = " ".join(excinfo.value.message_dict["backend_settings"])
    assert "url must be an http:// or https:// URL." in errors
    assert "secret must be at least 16 characters." in errors
    assert "Unknown setting 'colour'." in errors


@pytest.mark.parametrize(
    ("backend", "name", "value", "bounds"),
    [
        ("local", "startup_timeout_seconds", 601, "between 1 and 600"),
        ("local", "prediction_sample_rate", -0.1, "between 0 and 1"),
        ("webhook", "timeout_seconds", 0, "between 1 and 86400"),
        ("kserve", "max_replicas", 101, "between 1 and 100"),
        ("kserve", "min_replicas", -1, "between 0 and 100"),
        ("ray", "num_cpus", 0, "more than 0 and at most 64"),
        ("ray", "num_gpus", 16.5, "between 0 and 16"),
        ("ray", "memory_mb", 1024 * 1024 + 1, "between 1 and 1048576"),
        ("ray", "http_port", 65536, "between 1 and 65535"),
    ],
)
def test_a_number_out_of_its_bounds_is_refused_by_name(backend, name, value, bounds):
    with pytest.raises(ValidationError) as refused:
        backend_class(backend).clean_settings({name: value})
    assert f"{name} must be {bounds}." in refused.value.message_dict["backend_settings"]


def test_a_number_on_its_bounds_is_kept():
    clean = backend_class("ray").clean_settings
    edges = {"num_replicas": 64, "num_cpus": 64, "num_gpus": 0, "memory_mb": 1, "http_port": 1}
    assert clean({"dashboard_url": "http://head:8265", **edges}) == {
        "dashboard_url": "http://head:8265",
        **edges,
    }
    assert backend_class("local").clean_settings({"prediction_sample_rate": 0}) == {
        "prediction_sample_rate": 0
    }


def test_a_blank_secret_keeps_the_current_one(webhook_target, bob, cd_system):
    services.update_target(
        bob, webhook_target, backend_settings={"url": cd_system.url, "secret": ""}
    )
    webhook_target.refresh_from_db()
    assert webhook_target.backend_settings["secret"] == "s3cret-signing-key-for-tests"


def test_only_engineers_manage_targets(alice):
    with pytest.raises(PermissionDenied):
        services.create_target(alice, name="mine", environment="staging")


# --- rollback ---------------------------------------------------------------------------


def test_rollback_redeploys_the_previous_version_and_tells_everyone(
    alice, bob, ready_version, second_version, production, django_capture_on_commit_callbacks,
    queued_jobs,
):  # fmt: skip
    first = request(alice, ready_version, production)
    services.approve_deployment(bob, first)
    Deployment.objects.filter(pk=first.pk).update(state=State.RUNNING)
    first.refresh_from_db()
    services.complete_deployment(first, "http://127.0.0.1:1")
    second = request(alice, second_version, production)
    services.approve_deployment(bob, second)
    Deployment.objects.filter(pk=second.pk).update(state=State.RUNNING)
    second.refresh_from_db()
    services.complete_deployment(second, "http://127.0.0.1:2")

    with pytest.raises(ValidationError):
        services.rollback_deployment(bob, second, reason="")
    with django_capture_on_commit_callbacks(execute=True):
        rollback = services.rollback_deployment(bob, second, reason="Latency doubled.")
    assert rollback.version == ready_version
    assert rollback.rollback_of == second
    assert rollback.state == State.REQUESTED  # production still requires approval
    assert rollback.pk not in queued_jobs()
    assert "Latency doubled." in rollback.reason
    told = Delivery.objects.filter(notification__event=NotificationEvent.DEPLOYMENT_ROLLED_BACK)
    assert sorted(told.values_list("address", flat=True)) == [
        "alice@example.com",
        "bob@example.com",
    ]
    for delivery in told:  # what the notification job does
        notifications.deliver(delivery.pk)
    assert sorted(message.to[0] for message in mail.outbox) == [
        "alice@example.com",
        "bob@example.com",
    ]
    assert "Latency doubled." in mail.outbox[0].body


def test_a_target_can_let_rollbacks_skip_approval(
    alice, bob, ready_version, second_version, production, outbox_jobs
):
    services.update_target(bob, production, rollback_skips_approval=True)
    for version in (ready_version, second_version):
        deployment = request(alice, version, production)
        services.approve_deployment(bob, deployment)
        Deployment.objects.filter(pk=deployment.pk).update(state=State.RUNNING)
        deployment.refresh_from_db()
        services.complete_deployment(deployment, "http://127.0.0.1:9")
    rollback = services.rollback_deployment(bob, deployment, reason="Errors spiked.")
    assert rollback.state == State.QUEUED
    assert deploy_jobs(outbox_jobs)[-1] == rollback.pk


def test_an_open_sev2_on_a_production_target_blocks_approval_without_an_override(
    alice, bob, ready_version, production, outbox_jobs
):
    from monitoring.services import incidents

    incident = incidents.open_incident(bob, title="5xx", severity="sev2", target=production)
    deployment = request(alice, ready_version, production)
    with pytest.raises(ValidationError) as excinfo:
        services.approve_deployment(bob, deployment)
    assert f"#{incident.pk}" in excinfo.value.message_dict["override_reason"][0]
    assert deploy_jobs(outbox_jobs) == []
    services.approve_deployment(bob, deployment, override_reason="The fix is this version.")
    override = deployment.events.get(kind="override")
    assert "The fix is this version." in override.message and override.actor == bob
    assert deploy_jobs(outbox_jobs) == [deployment.pk]


def go_live(deployment):
    """What the deploy job does once the backend serves: mark it running, then live."""
    Deployment.objects.filter(pk=deployment.pk).update(state=State.RUNNING)
    deployment.refresh_from_db()
    services.complete_deployment(deployment, f"http://127.0.0.1:{deployment.pk}")
    deployment.refresh_from_db()
    return deployment


def test_a_rollback_never_offers_to_roll_back_to_the_version_it_replaced(
    alice, bob, iris, ready_version, second_version, staging
):
    third = validated(register_iris_version(alice, iris, metrics={"accuracy": 0.97}))
    for version in (ready_version, second_version, third):
        live = go_live(request(alice, version, staging))
    rollback = go_live(services.rollback_deployment(bob, live, reason="Errors spiked."))
    assert rollback.version == second_version

    # v3 was just rolled back: the rollback's own "previous good" is v1, not v3 again.
    assert services.previous_good_deployment(rollback).version == ready_version
    again = go_live(services.rollback_deployment(bob, rollback, reason="Still bad."))
    assert again.version == ready_version
