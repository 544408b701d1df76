"""Canary releases end to end on the local backend: a real worker runs the deploy job and
the step jobs, real model servers serve both versions, the real weighted proxy splits the
traffic a client loop in the test sends, and the analysis reads the servers' /metrics."""

import threading
import time

import httpx
import pytest

from deployments import services
from deployments.backends.local import is_model_server, is_proxy
from deployments.choices import DeploymentEventKind
from deployments.choices import DeploymentState as State
from deployments.models import Deployment
from deployments.services import canary
from tests.conftest import wait_until

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

GOOD, BAD = [[5.1, 3.5, 1.4, 0.2]], [[-1.0, 3.5, 1.4, 0.2]]
HOLD_SECONDS = 5


class Traffic:
    """Client loops (`clients` threads) posting predictions to `url` until stopped; they
    record which side served each answer (the proxy's X-Served-By) and its status. With
    `bad_every`, every n-th request carries a row the flaky model raises on (the iris model
    answers it)."""

    def __init__(self, url, bad_every=0, clients=4):
        self.url, self.bad_every = url, bad_every
        self.answers: list[tuple[str, int]] = []  # list.append is atomic: threads share it
        self.stopped = threading.Event()
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(clients)]

    def start(self):
        for thread in self.threads:
            thread.start()

    def run(self):
        with httpx.Client(timeout=5) as client:
            n = 0
            while not self.stopped.is_set():
                n += 1
                rows = BAD if self.bad_every and n % self.bad_every == 0 else GOOD
                try:
                    response = client.post(f"{self.url}/predict", json={"instances": rows})
                except httpx.HTTPError:
                    self.answers.append(("unreachable", 0))
                    time.sleep(0.02)
                    continue
                self.answers.append((response.headers.get("X-Served-By", ""), response.status_code))

    def stop(self):
        self.stopped.set()
        for thread in self.threads:
            thread.join(timeout=10)

    def canary_share(self, start, end) -> float:
        served = [side for side, _ in self.answers[start:end] if side in ("stable", "canary")]
        return served.count("canary") / len(served)


def go_live(requester, version, target):
    deployment = services.request_deployment(
        requester, version=version, target=target, reason="Stable"
    )
    done = wait_until(lambda: _ended(deployment.pk), timeout=60)
    assert done.state == State.SUCCEEDED, done.failure_reason
    return done


def request_canary(requester, version, target, steps=(10, 50), hold=HOLD_SECONDS):
    return services.request_deployment(
        requester, version=version, target=target, reason="Canary",
        strategy="canary", canary_steps=list(steps), canary_step_seconds=hold,
    )  # fmt: skip


def stopped(deployment) -> None:
    """Both processes of an aborted canary stop: its proxy, then its model server. The job
    stops them after it commits the failure the test waited for, so wait (a few tenths of a
    second) rather than race it."""
    state = deployment.backend_state
    wait_until(lambda: not is_proxy(state["proxy_pid"]), timeout=10, interval=0.05)
    wait_until(lambda: not is_model_server(state["pid"]), timeout=10, interval=0.05)


def _ended(pk):
    deployment = Deployment.objects.get(pk=pk)
    return deployment if deployment.state in (State.SUCCEEDED, State.FAILED) else None


def _at_weight(pk, weight):
    deployment = Deployment.objects.get(pk=pk)
    return deployment if deployment.canary_weight == weight else None


def canary_messages(deployment):
    return list(
        deployment.events.filter(kind=DeploymentEventKind.CANARY)
        .order_by("pk")
        .values_list("message", flat=True)
    )


def test_a_healthy_canary_is_promoted_through_every_step_with_real_traffic(
    celery_worker_process, alice, ready_version, second_version, staging
):
    stable = go_live(alice, ready_version, staging)
    deployment = request_canary(alice, second_version, staging)
    running = wait_until(lambda: _at_weight(deployment.pk, 10), timeout=60)
    assert running.state == State.RUNNING and running.endpoint != stable.endpoint

    traffic = Traffic(running.endpoint)
    traffic.start()
    try:
        wait_until(lambda: _at_weight(deployment.pk, 50), timeout=30)
        first_step_ends = len(traffic.answers)
        done = wait_until(lambda: _ended(deployment.pk), timeout=30)
        second_step_ends = len(traffic.answers)
    finally:
        traffic.stop()

    assert done.state == State.SUCCEEDED, done.failure_reason
    assert all(status == 200 for side, status in traffic.answers if side != "unreachable")
    # The proxy's split is exact: 1 in 10, then 1 in 2. The test notices a new step a poll
    # late, so each share is read away from the step's edges.
    step_two = second_step_ends - first_step_ends
    assert 0.07 <= traffic.canary_share(0, first_step_ends // 2) <= 0.13
    middle = (first_step_ends + step_two // 4, second_step_ends - step_two // 4)
    assert 0.45 <= traffic.canary_share(*middle) <= 0.55
    assert httpx.get(f"{done.endpoint}/health").json()["version"] == 2
    assert not is_proxy(done.backend_state.get("proxy_pid") or running.backend_state["proxy_pid"])
    stable.refresh_from_db()
    assert stable.state == State.SUPERSEDED
    wait_until(lambda: not is_model_server(stable.backend_state["pid"]), timeout=10)

    messages = canary_messages(done)
    assert messages[0].startswith("Step 1 of 2: 10 % of the traffic")
    assert messages[1].startswith("Step 1 (10 %): Analysis passed (canary:")
    assert messages[2].startswith("Step 2 of 2: 50 %")
    assert messages[3].startswith("Step 2 (50 %): Analysis passed")
    assert messages[4].startswith("Promoted automatically: every step passed")


def test_a_canary_that_returns_errors_is_aborted_and_the_stable_keeps_all_traffic(
    celery_worker_process, alice, ready_version, flaky_version, staging
):
    stable = go_live(alice, ready_version, staging)
    deployment = request_canary(alice, flaky_version, staging)
    running = wait_until(lambda: _at_weight(deployment.pk, 10), timeout=60)

    traffic = Traffic(running.endpoint, bad_every=2)  # half the rows make v2 raise
    traffic.start()
    try:
        done = wait_until(lambda: _ended(deployment.pk), timeout=30)
    finally:
        traffic.stop()

    assert done.state == State.FAILED
    assert "Canary aborted automatically: Analysis failed: error rate" in done.failure_reason
    assert done.canary_weight is None
    canary_errors = [s for side, s in traffic.answers if side == "canary" and s == 500]
    assert canary_errors, "the canary served some of the bad rows before the abort"
    assert not any(side == "stable" and s != 200 for side, s in traffic.answers)
    # The stable deployment is still the live one and answers every row itself.
    stable.refresh_from_db()
    assert stable.state == State.SUCCEEDED
    assert Deployment.objects.live().get(target=staging) == stable
    with httpx.Client(base_url=stable.endpoint, timeout=5) as client:
        for rows in (GOOD, BAD) * 20:
            assert client.post("/predict", json={"instances": rows}).status_code == 200
        assert client.get("/health").json()["version"] == 1
    stopped(running)
    messages = canary_messages(done)
    assert messages[1].startswith("Step 1 (10 %): Analysis failed: error rate")
    assert messages[2].startswith("Canary aborted automatically")


def test_an_engineer_promotes_by_hand_before_the_steps_end(
    celery_worker_process, alice, bob, ready_version, second_version, staging
):
    go_live(alice, ready_version, staging)
    deployment = request_canary(alice, second_version, staging, hold=600)
    running = wait_until(lambda: _at_weight(deployment.pk, 10), timeout=60)

    canary.promote_canary(bob, running, comment="Looks good on the dashboards.")
    done = wait_until(lambda: _ended(deployment.pk), timeout=30)

    assert done.state == State.SUCCEEDED, done.failure_reason
    assert httpx.get(f"{done.endpoint}/health").json()["version"] == 2
    messages = canary_messages(done)
    assert "Promote by hand: Looks good on the dashboards." in messages
    assert messages[-1].startswith("Promoted by bob: Looks good")
    # The step job of step 1 comes later and finds the decision taken: nothing happens.
    assert canary.run_step(done.pk, 0) is None


def test_an_engineer_aborts_through_the_api_and_a_viewer_may_not(
    celery_worker_process, api_client_for, alice, bob, carol, ready_version, second_version,
    staging,
):  # fmt: skip
    stable = go_live(alice, ready_version, staging)
    deployment = request_canary(alice, second_version, staging, hold=600)
    running = wait_until(lambda: _at_weight(deployment.pk, 10), timeout=60)
    url = f"/api/v1/deployments/{running.pk}/abort/"

    refused = api_client_for(carol).post(url, {"reason": "no"}, format="json")
    assert refused.status_code == 403
    answer = api_client_for(bob).post(url, {"reason": "Latency on the dashboard."}, format="json")
    assert answer.status_code == 200, answer.content
    assert answer.json()["canary_weight"] == 10  # the abort runs as a job
    again = api_client_for(bob).post(url, {"reason": "twice"}, format="json")
    assert again.status_code == 409

    done = wait_until(lambda: _ended(deployment.pk), timeout=30)
    assert done.state == State.FAILED
    assert done.failure_reason == "Canary aborted by bob: Latency on the dashboard."
    assert Deployment.objects.live().get(target=staging) == stable
    stopped(running)
