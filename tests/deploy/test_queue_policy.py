"""A target's queue policy: under `supersede` (the default) a newer approved request
cancels the older ones still waiting, so a burst of requests deploys once, the newest;
under `queue` every one runs in turn. The backlog is counted in the API and on pages."""

from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext

from deployments import services
from deployments.choices import DeploymentState as State
from deployments.choices import QueuePolicy
from deployments.models import Deployment
from deployments.services.rollouts import next_waiting, run_deployment
from deployments.tasks import run_deployment_task
from tests.conftest import wait_until


class DeployJobs:
    """The deployment ids queued for the deploy job (outbox rows), since the last `clear()`."""

    def __init__(self, outbox_jobs):
        self.outbox_jobs = outbox_jobs
        self.seen = 0

    def __call__(self) -> list[int]:
        return [args[0] for _, args in self.outbox_jobs(run_deployment_task)][self.seen :]

    def clear(self) -> None:
        self.seen += len(self())


@pytest.fixture
def sent(outbox_jobs):
    return DeployJobs(outbox_jobs)


@pytest.fixture
def busy(alice, ready_version, staging):
    """A deployment running on staging: whatever is approved next waits in `queued`."""
    running = services.request_deployment(alice, version=ready_version, target=staging, reason="x")
    Deployment.objects.filter(pk=running.pk).update(state=State.RUNNING)
    return running


def burst(alice, version, target, count):
    return [
        services.request_deployment(alice, version=version, target=target, reason=f"#{n}")
        for n in range(count)
    ]


def states(deployments):
    return [Deployment.objects.get(pk=d.pk).state for d in deployments]


def test_a_newer_request_supersedes_the_older_queued_ones(
    alice, second_version, staging, busy, sent
):
    requests = burst(alice, second_version, staging, 4)
    assert states(requests) == [State.CANCELLED] * 3 + [State.QUEUED]
    newest = requests[-1]
    event = requests[0].events.get(to_state=State.CANCELLED)
    assert event.from_state == State.QUEUED
    assert event.message.startswith(f"Superseded by #{requests[1].pk}, a newer request")
    assert next_waiting(staging) == newest.pk
    assert Deployment.objects.get(pk=busy.pk).state == State.RUNNING  # running ones run on


def test_the_queue_policy_runs_every_request_in_order(
    alice, bob, second_version, staging, busy, sent
):
    services.update_target(bob, staging, queue_policy=QueuePolicy.QUEUE)
    requests = burst(alice, second_version, staging, 3)
    assert states(requests) == [State.QUEUED] * 3
    assert next_waiting(staging) == requests[0].pk


def test_an_older_job_delivered_after_a_newer_approval_cancels_itself(
    alice, bob, second_version, staging, busy, sent
):
    """Two approvals that raced: both stayed queued. The older one's job must not run it."""
    services.update_target(bob, staging, queue_policy=QueuePolicy.QUEUE)
    older, newer = burst(alice, second_version, staging, 2)
    services.update_target(bob, staging, queue_policy=QueuePolicy.SUPERSEDE)
    Deployment.objects.filter(pk=busy.pk).update(state=State.FAILED)

    assert run_deployment(older.pk) is None
    assert states([older, newer]) == [State.CANCELLED, State.QUEUED]
    assert f"Superseded by #{newer.pk}" in older.events.last().message


def test_a_superseded_request_is_not_a_rollback_candidate_nor_a_deploy(
    alice, second_version, staging, busy, sent
):
    old, _ = burst(alice, second_version, staging, 2)
    old.refresh_from_db()
    assert old.state == State.CANCELLED and old.started_at is None
    assert services.previous_good_deployment(old) is None


def test_the_requester_still_cannot_cancel_a_queued_deployment(
    alice, second_version, staging, busy, sent
):
    from mlops_portal.core.errors import Conflict

    (queued,) = burst(alice, second_version, staging, 1)
    with pytest.raises(Conflict):
        services.cancel_deployment(alice, queued)


# --- the backlog, counted ---------------------------------------------------------------


def test_the_targets_api_counts_the_backlog_without_a_query_per_target(
    api_client_for, alice, bob, second_version, staging, busy, sent
):
    services.update_target(bob, staging, queue_policy=QueuePolicy.QUEUE)
    burst(alice, second_version, staging, 2)
    api = api_client_for(bob)
    api.get("/api/v1/targets/")  # the token's first use writes its last-used time
    with CaptureQueriesContext(connection) as one_target:
        body = api.get("/api/v1/targets/").json()
    assert [(t["name"], t["queued_count"], t["queue_policy"]) for t in body["results"]] == [
        ("iris-staging", 2, "queue")
    ]
    for n in range(3):
        services.create_target(bob, name=f"extra-{n}", environment="staging")
    with CaptureQueriesContext(connection) as four_targets:
        body = api.get("/api/v1/targets/").json()
    assert len(body["results"]) == 4
    assert len(four_targets) == len(one_target)
    detail = api.get("/api/v1/targets/iris-staging/").json()
    assert detail["queued_count"] == 2


def test_the_queue_policy_is_set_through_the_api(api_client_for, bob):
    api = api_client_for(bob)
    created = api.post(
        "/api/v1/targets/", {"name": "cd", "environment": "staging"}, format="json"
    ).json()
    assert created["queue_policy"] == "supersede"
    changed = api.patch("/api/v1/targets/cd/", {"queue_policy": "queue"}, format="json")
    assert changed.json()["queue_policy"] == "queue"
    refused = api.patch("/api/v1/targets/cd/", {"queue_policy": "lifo"}, format="json")
    assert refused.status_code == 400 and "queue_policy" in refused.json()


def test_the_target_pages_show_the_backlog(client, alice, bob, second_version, staging, busy, sent):
    services.update_target(bob, staging, queue_policy=QueuePolicy.QUEUE)
    burst(alice, second_version, staging, 2)
    client.force_login(alice)
    listing = client.get("/targets/").content.decode()
    assert "2 queued" in listing
    page = client.get(staging.get_absolute_url()).content.decode()
    assert "2 approved deployments queued" in page
    assert "queue policy: queue" in page


def test_the_target_form_saves_the_queue_policy(client, bob, staging):
    client.force_login(bob)
    form = client.get(f"{staging.get_absolute_url()}edit/").context["form"]
    data = {key: value for key, value in form.initial.items() if value is not None}
    data.update(backend_settings="{}", queue_policy="queue")
    data = {k: v for k, v in data.items() if v is not False}
    response = client.post(f"{staging.get_absolute_url()}edit/", data)
    assert response.status_code == 302, response.context["form"].errors
    staging.refresh_from_db()
    assert staging.queue_policy == QueuePolicy.QUEUE


# --- with a real worker -----------------------------------------------------------------


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_burst_of_parallel_requests_deploys_once_the_newest_with_a_real_worker(
    celery_worker_process, alice, ready_version, second_version, webhook_target, cd_system
):
    cd_system.delay = 3  # the first deploy holds the target while the burst arrives
    first = services.request_deployment(
        alice, version=ready_version, target=webhook_target, reason="first"
    )
    wait_until(lambda: len(cd_system.requests) == 1)

    def request_one(n):
        try:
            return services.request_deployment(
                alice, version=second_version, target=webhook_target, reason=f"burst {n}"
            ).pk
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=8) as pool:
        burst_ids = list(pool.map(request_one, range(8)))

    def settled():
        rows = Deployment.objects.filter(pk__in=[first.pk, *burst_ids])
        return all(row.is_final for row in rows) and rows

    rows = wait_until(settled, timeout=60)
    burst_rows = sorted(
        (row for row in rows if row.pk != first.pk), key=lambda row: (row.queued_at, row.pk)
    )
    assert [row.state for row in burst_rows] == [State.CANCELLED] * 7 + [State.SUCCEEDED]
    assert Deployment.objects.get(pk=first.pk).state == State.SUPERSEDED
    assert len(cd_system.requests) == 2  # the first and the newest; nothing in between
    for row in burst_rows[:-1]:
        assert "a newer request" in row.events.get(to_state=State.CANCELLED).message


def test_the_reconciler_resends_the_newest_waiting_under_supersede(
    alice, bob, second_version, staging, busy, sent, settings
):
    settings.DEPLOY_RESEND_QUEUED_SECONDS = 0
    services.update_target(bob, staging, queue_policy=QueuePolicy.QUEUE)
    _, newer = burst(alice, second_version, staging, 2)  # as if two approvals raced
    services.update_target(bob, staging, queue_policy=QueuePolicy.SUPERSEDE)
    Deployment.objects.filter(pk=busy.pk).update(state=State.FAILED)
    sent.clear()
    assert services.reconcile_deployments()["resent"] == 1
    assert sent() == [newer.pk]
