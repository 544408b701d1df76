"""Canary releases from a pipeline: `mlops deploy --strategy canary` against the live portal
and its worker (real model servers and the weighted proxy of the local backend), `--wait`
following the steps, `mlops deployments promote|abort` deciding by hand, and the portal's
400 naming the field of a bad canary option."""

import json
import time

import pytest

from deployments import services
from deployments.choices import DeploymentState as State
from deployments.models import Deployment
from tests.conftest import wait_until
from tests.factories import register_iris_version, validated

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

CANARY = ["--strategy", "canary", "--canary-steps", "10,50"]


@pytest.fixture
def stable(celery_worker_process, alice, ready_version, staging):
    """iris v1 live on iris-staging (deployed all at once), and v2 ready beside it."""
    deployment = services.request_deployment(
        alice, version=ready_version, target=staging, reason="Stable"
    )
    live = wait_until(lambda: final(deployment.pk), timeout=60)
    assert live.state == State.SUCCEEDED, live.failure_reason
    validated(register_iris_version(alice, ready_version.model))
    return live


def final(pk):
    deployment = Deployment.objects.get(pk=pk)
    return deployment if deployment.is_final else None


def running_canary(pk):
    deployment = Deployment.objects.get(pk=pk)
    return deployment if deployment.canary_weight is not None else None


def deploy_canary_in_background(mlops, hold):
    """`mlops deploy … --strategy canary --wait` running as a pipeline step; return its Popen
    and the deployment once its canary takes its first share."""
    waiting = mlops(
        "deploy", "iris", "2", "--target", "iris-staging", "--reason", "v2 as a canary",
        *CANARY, "--canary-step-seconds", str(hold), "--wait", "--json", background=True,
    )  # fmt: skip
    deployment = wait_until(lambda: Deployment.objects.filter(version__number=2).first())
    return waiting, wait_until(lambda: running_canary(deployment.pk), timeout=60)


def test_wait_follows_each_step_until_the_canary_is_promoted(mlops, stable):
    outcome = mlops(
        "deploy", "iris", "2", "--target", "iris-staging", "--reason", "v2 as a canary",
        *CANARY, "--canary-step-seconds", "2", "--wait", "--timeout", "90", "--json",
    )  # fmt: skip

    assert outcome.code == 0, outcome.stderr
    deployment = outcome.json()
    assert (deployment["state"], deployment["strategy"]) == ("succeeded", "canary")
    assert (deployment["canary_steps"], deployment["canary_step_seconds"]) == ([10, 50], 2)
    assert deployment["canary_weight"] is None
    number = deployment["id"]
    assert f"#{number}: running as a canary: step 1 of 2, 10 % of the traffic" in outcome.stderr
    assert f"#{number}: running as a canary: step 2 of 2, 50 % of the traffic" in outcome.stderr
    assert "Canary step 2: Not judged: 0 canary requests" in outcome.stderr  # the job's log
    assert outcome.stderr.rstrip().endswith(f"Deployment #{number}: succeeded")
    stable.refresh_from_db()
    assert stable.state == State.SUPERSEDED


def test_an_engineer_promotes_by_hand_and_the_waiting_pipeline_succeeds(
    mlops, token_of, bob, carol, stable
):
    waiting, canary = deploy_canary_in_background(mlops, hold=600)
    try:
        refused = mlops("deployments", "promote", str(canary.pk), token=token_of(carol))
        assert refused.code == 2
        assert "403 Forbidden" in refused.stderr
        promoted = mlops(
            "deployments", "promote", str(canary.pk), "--comment", "Dashboards look fine.",
            "--wait", "--timeout", "60", "--json", token=token_of(bob),
        )  # fmt: skip
        stdout, stderr = waiting.communicate(timeout=60)
    finally:
        waiting.kill()

    assert promoted.code == 0, promoted.stderr
    assert promoted.json()["state"] == "succeeded"
    assert f"Promoting the canary #{canary.pk}." in promoted.stderr
    assert waiting.returncode == 0, stderr
    assert json.loads(stdout)["state"] == "succeeded"
    assert "running as a canary: step 1 of 2, 10 % of the traffic" in stderr
    events = Deployment.objects.get(pk=canary.pk).events
    assert events.filter(message__startswith="Promoted by bob: Dashboards look fine.").exists()
    again = mlops("deployments", "promote", str(canary.pk), token=token_of(bob))
    assert again.code == 1
    assert again.stderr == (
        f"mlops: 409 Conflict: Deployment #{canary.pk} is not a running canary.\n"
    )


def test_an_engineer_aborts_by_hand_and_the_waiting_pipeline_fails(mlops, token_of, bob, stable):
    waiting, canary = deploy_canary_in_background(mlops, hold=600)
    try:
        aborted = mlops(
            "deployments", "abort", str(canary.pk), "--reason", "p95 doubled.",
            "--wait", "--timeout", "60", "--json", token=token_of(bob),
        )  # fmt: skip
        stdout, stderr = waiting.communicate(timeout=60)
    finally:
        waiting.kill()

    assert aborted.code == 0, aborted.stderr  # the abort did what was asked
    assert aborted.json()["state"] == "failed"
    assert waiting.returncode == 1, stderr  # the pipeline's deploy did not go live
    assert json.loads(stdout)["failure_reason"] == "Canary aborted by bob: p95 doubled."
    assert "Failed: Canary aborted by bob: p95 doubled." in stderr
    assert Deployment.objects.live().get(target__name="iris-staging") == stable


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            [*CANARY[:-1], "10,50,100", "--canary-step-seconds", "60"],
            "canary_steps[2]: Ensure this value is less than or equal to 99.",
        ),
        (
            [*CANARY[:-1], "50,10", "--canary-step-seconds", "60"],
            "canary_steps: The steps must increase, e.g. [10, 50].",
        ),
        (
            CANARY,
            "canary_step_seconds: How long each step holds before its analysis: "
            "1 to 86400 seconds.",
        ),
        (["--strategy", "rolling"], 'strategy: "rolling" is not a valid choice.'),
    ],
)
def test_a_bad_canary_option_gets_the_portals_400_naming_the_field(
    mlops, ready_version, staging, options, message
):
    outcome = mlops("deploy", "iris", "1", "--target", "iris-staging", "--reason", "r", *options)

    assert outcome.code == 1
    assert outcome.stderr == f"mlops: 400 Bad Request: {message}\n"
    assert outcome.stdout == ""
    assert not Deployment.objects.exists()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--strategy", "canary", "--steps", "10,half"], "not whole numbers separated by commas"),
        (["--canary-steps", "10,50"], "need --strategy canary"),
        (["--step-seconds", "60"], "need --strategy canary"),
    ],
)
def test_canary_options_a_request_cannot_carry_are_usage_errors(mlops, options, message):
    started = time.monotonic()
    outcome = mlops(
        "deploy", "iris", "1", "--target", "t", "--reason", "r", *options,
        url="http://127.0.0.1:9",  # nothing listens: no request is made
    )  # fmt: skip
    assert outcome.code == 2
    assert message in outcome.stderr
    assert time.monotonic() - started < 30  # no retries against the closed port
