"""Canary releases on the `ray` backend: the router's split and counters without Ray, then
end to end on the session's real Ray cluster, where a real worker runs the deploy and step
jobs, the router deployment splits the traffic a client loop sends to the application's
route, and the analysis reads the router's /-/metrics of each side."""

from collections import Counter

import httpx
import pytest

from deployments import canary_analysis as analysis
from deployments.backends.ray_serve import REDACTED
from deployments.choices import DeploymentState as State
from deployments.models import Deployment
from deployments.services.canary import DECIDING
from deployments.serving.canary_split import CANARY, STABLE, Router, weight_from
from tests.conftest import wait_until
from tests.deploy.test_canary_e2e import (
    BAD,
    GOOD,
    Traffic,
    _at_weight,
    _ended,
    canary_messages,
    request_canary,
)
from tests.deploy.test_ray_backend import deploy, serve_app

STEPS = (25, 50)
HOLD_SECONDS = 6  # at 25 %, enough predictions for a judged step on a loaded machine

# --- the router without Ray ------------------------------------------------------------


def make_router(weight: int) -> Router:
    router = Router({STABLE: ("iris", 1, 11), CANARY: ("iris", 2, 12)})
    router.reconfigure({"weight": weight})
    return router


def test_the_router_sends_exactly_its_weight_and_takes_a_new_one_in_place():
    router = make_router(25)
    sides = [router.next_side() for _ in range(200)]
    assert sides.count(CANARY) == 50
    assert CANARY in sides[:4]  # spread out, not 25 in a row
    router.reconfigure({"weight": 0})
    assert {router.next_side() for _ in range(100)} == {STABLE}
    router.reconfigure({"weight": 100})
    assert {router.next_side() for _ in range(100)} == {CANARY}
    assert router.own_answer("/-/canary") == (
        200,
        {"weight": 100, "served": {STABLE: 150 + 100, CANARY: 50 + 100},
         "deployments": {STABLE: 11, CANARY: 12}},
    )  # fmt: skip
    assert router.own_answer("/predict") is None  # goes to a side


@pytest.mark.parametrize("config", [{}, {"weight": 101}, {"weight": -1}, {"weight": "50"},
                                    {"weight": True}, None])  # fmt: skip
def test_the_router_refuses_a_weight_that_is_not_a_percentage(config):
    with pytest.raises(ValueError, match="weight"):
        weight_from(config)


def test_the_router_counts_each_side_as_the_analysis_reads_a_model_server():
    router = make_router(50)
    for side, path, status in [
        (STABLE, "/predict", 200), (STABLE, "/v2/models/iris/infer", 200),
        (CANARY, "/predict", 500), (CANARY, "/predict", 200), (CANARY, "/health", 200),
        (CANARY, "/v2/models/anything/infer", 502),
    ]:  # fmt: skip
        router.observe(side, path, status, started=0.0)
    counters = {}
    for side in (STABLE, CANARY):
        status, text = router.own_answer(f"/-/metrics/{side}")
        assert status == 200
        counters[side] = analysis.read_counters(text.decode())
    assert counters[STABLE]["requests"] == 2 and counters[STABLE]["errors"] == 0
    assert counters[CANARY]["requests"] == 3 and counters[CANARY]["errors"] == 2  # not /health
    assert router.own_answer("/-/metrics/other")[0] == 404


def test_a_router_restart_counts_the_window_from_zero():
    before = {"requests": 500.0, "errors": 5.0, "buckets": {"0.1": 500.0, "+Inf": 500.0}}
    after = {"requests": 40.0, "errors": 2.0, "buckets": {"0.1": 40.0, "+Inf": 40.0}}
    window = analysis.window(before, after)
    assert (window.requests, window.errors) == (40.0, 2.0)


# --- on the real cluster ----------------------------------------------------------------


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_healthy_canary_is_promoted_and_an_erroring_one_aborted_on_ray(
    celery_worker_process, ray_cluster, alice, ready_version, second_version, flaky_version,
    ray_target,
):  # fmt: skip
    first = deploy(alice, ready_version, ray_target)
    endpoint = first.endpoint

    # v2, healthy: 25 % then 50 % of real traffic through the router, then promoted.
    promoted, traffic, spans = run_canary(alice, second_version, ray_target, bad_every=0)
    assert promoted.state == State.SUCCEEDED, promoted.failure_reason
    assert promoted.endpoint == endpoint  # the route stays the application's
    # Every request answered, through the steps and the switch to v2 alone (no router).
    assert {status for _, status in traffic.answers} == {200}, Counter(traffic.answers)
    assert {side for side, _ in traffic.answers} == {STABLE, CANARY, ""}
    for weight, span in zip(STEPS, spans, strict=True):
        share = traffic.canary_share(*middle_half(span))
        assert abs(share - weight / 100) <= 0.05, (weight, share, span)
    messages = canary_messages(promoted)
    assert messages[1].startswith("Step 1 (25 %): Analysis passed (canary:"), messages
    assert messages[3].startswith("Step 2 (50 %): Analysis passed"), messages
    assert messages[4].startswith("Promoted automatically: every step passed")
    # The application is v2's alone: no router, no second model deployment.
    app = serve_app(ray_cluster, ray_target)
    assert set(app["deployments"]) == {"ModelServer"}
    assert app["deployed_app_config"]["args"]["deployment"] == promoted.pk
    assert "canary" not in promoted.backend_state["config"]["args"]
    assert promoted.backend_state["previous_config"]["args"]["deployment"] == first.pk
    for kept in (promoted.backend_state["config"], promoted.backend_state["previous_config"]):
        assert kept["args"]["artifact_url"] == REDACTED  # no signed URL is stored
    assert {httpx.get(f"{endpoint}/health").json()["version"] for _ in range(10)} == {2}
    first.refresh_from_db()
    assert first.state == State.SUPERSEDED

    # v3 raises on half the rows: step 1's analysis aborts it, v2 takes all the traffic.
    aborted, traffic, spans = run_canary(alice, flaky_version, ray_target, bad_every=2)
    assert aborted.state == State.FAILED
    assert "Canary aborted automatically: Analysis failed: error rate" in aborted.failure_reason
    assert len(spans) == 1  # decided at the first step
    assert [s for side, s in traffic.answers if side == CANARY and s == 500]
    # Only the canary failed: the stable through the router, then v2 alone, answered all.
    assert {s for side, s in traffic.answers if side != CANARY} == {200}
    assert Deployment.objects.live().get(target=ray_target) == promoted
    app = serve_app(ray_cluster, ray_target)
    assert set(app["deployments"]) == {"ModelServer"}
    assert app["deployed_app_config"]["args"]["deployment"] == promoted.pk
    with httpx.Client(base_url=endpoint, timeout=10) as client:
        for rows in (GOOD, BAD) * 10:  # v3 would answer the bad rows with 500
            answer = client.post("/predict", json={"instances": rows})
            assert answer.status_code == 200 and answer.json()["version"] == 2, answer.text
    assert canary_messages(aborted)[1].startswith("Step 1 (25 %): Analysis failed: error rate")


def run_canary(requester, version, target, bad_every):
    """Request a canary of `version` and send traffic from its first step to its end;
    return the ended deployment, the traffic, and each step's span of answers: from when
    the router had its weight to when the step's decision began."""
    deployment = request_canary(requester, version, target, steps=STEPS, hold=HOLD_SECONDS)
    running = wait_until(lambda: _at_weight(deployment.pk, STEPS[0]), timeout=180, interval=0.2)
    traffic = Traffic(running.endpoint, bad_every=bad_every)
    traffic.start()
    spans = []
    try:
        for weight in STEPS:
            wait_until(lambda w=weight: _at_weight(deployment.pk, w) or _ended(deployment.pk),
                       timeout=90, interval=0.1)  # fmt: skip
            if _ended(deployment.pk):
                break
            start = len(traffic.answers)
            wait_until(lambda: deciding(deployment.pk) or _ended(deployment.pk), timeout=90,
                       interval=0.1)  # fmt: skip
            spans.append((start, len(traffic.answers)))
        done = wait_until(lambda: _ended(deployment.pk), timeout=180, interval=0.2)
    except AssertionError as exc:  # a canary stuck somewhere: say where
        raise AssertionError(f"{exc}; the job's log:\n{job_log(deployment.pk)}") from exc
    finally:
        traffic.stop()
    return done, traffic, spans


def middle_half(span: tuple[int, int]) -> tuple[int, int]:
    """The middle of a step's answers: the test sees a step's edges a poll late."""
    start, end = span
    return start + (end - start) // 4, end - (end - start) // 4


def deciding(pk) -> bool:
    return Deployment.objects.get(pk=pk).canary_step == DECIDING


def job_log(pk) -> str:
    return "\n".join(line.message for line in Deployment.objects.get(pk=pk).log_lines.all())
