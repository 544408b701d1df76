"""`mlops` against a live portal: each outcome has its exit code (0 success, 1 failed or
invalid, 2 usage or auth, 3 rejected or cancelled, 4 timed out), and `--json` prints only
JSON on stdout while progress goes to stderr."""

import json
import time

import httpx
import pytest

from deployments import services
from deployments.choices import DeploymentState, VersionStatus
from deployments.models import Deployment, ModelVersion
from monitoring.services.incidents import open_incident
from tests.conftest import wait_until
from tests.deploy.conftest import WEBHOOK_SECRET, CDStandIn
from tests.factories import iris_artifact

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def files(tmp_path):
    """The training job's output: the artifact and its sample input."""
    artifact, metrics, params, sample = iris_artifact()
    (tmp_path / "model.joblib").write_bytes(artifact)
    (tmp_path / "sample.json").write_text(json.dumps(sample))
    return {"metrics": metrics, "params": params, "sample": sample}


def test_register_deploy_and_read_back_with_json_output(
    mlops, celery_worker_process, files, alice, bob, staging, token_of
):
    created = mlops("models", "create", "iris", "--team", "botany", "--json")
    assert (created.code, created.json()["owner"]) == (0, "alice")

    registered = mlops(
        "versions", "register", "iris", "--artifact", "model.joblib",
        "--sample-input", "sample.json", "--metrics", json.dumps(files["metrics"]),
        "--params", json.dumps(files["params"]), "--source-url", "https://git.internal/c/1",
        "--tag", "ci", "--wait", "--timeout", "120", "--json",
    )  # fmt: skip
    assert registered.code == 0, registered.stderr
    version = registered.json()  # stdout is the JSON document and nothing else
    assert (version["version"], version["status"], version["tags"]) == (1, "ready", ["ci"])
    assert version["metrics"] == files["metrics"]
    assert "Registered iris v1" in registered.stderr and "iris v1: ready" in registered.stderr

    deployed = mlops(
        "deploy", "iris", "1", "--target", "iris-staging", "--reason", "nightly",
        "--wait", "--timeout", "120", "--json",
    )  # fmt: skip
    assert deployed.code == 0, deployed.stderr
    deployment = deployed.json()
    assert deployment["state"] == "succeeded"
    predicted = httpx.post(
        f"{deployment['endpoint']}/predict", json={"instances": files["sample"]}, timeout=10
    )
    assert predicted.status_code == 200
    # Progress went to stderr: the states and the job's log lines.
    assert f"Deployment #{deployment['id']}: succeeded" in deployed.stderr
    assert "answers /health" in deployed.stderr

    shown = mlops("deployments", "show", str(deployment["id"]), "--json")
    assert shown.json()["endpoint"] == deployment["endpoint"]
    logs = mlops("deployments", "logs", str(deployment["id"]), "--json").json()
    assert any("answers /health" in line["message"] for line in logs)
    followed = mlops("deployments", "logs", str(deployment["id"]), "--follow", "--json")
    assert followed.code == 0
    assert [json.loads(line)["id"] for line in followed.stdout.splitlines()] == [
        line["id"] for line in logs
    ]

    table = mlops("deployments", "show", str(deployment["id"]))
    assert "state" in table.stdout and "succeeded" in table.stdout

    checks = mlops("checks", "list", "--json").json()  # the live endpoint's check
    assert [check["target"] for check in checks] == ["iris-staging"]
    open_incident(bob, title="Latency up", severity="sev3", target=staging)
    incidents = mlops("incidents", "list", "--state", "open")
    assert incidents.code == 0
    assert "Latency up" in incidents.stdout and "sev3" in incidents.stdout
    assert json.loads(mlops("incidents", "list", "--json").stdout)[0]["title"] == "Latency up"


def test_a_failed_deployment_exits_1_with_its_reason(
    mlops, celery_worker_process, bob, ready_version
):
    cd_system = CDStandIn()
    cd_system.answer = (200, {"status": "failed", "reason": "canary error rate 12%"})
    import threading

    threading.Thread(target=cd_system.serve_forever, daemon=True).start()
    try:
        services.create_target(
            bob, name="iris-cd", environment="staging", backend="webhook",
            backend_settings={"url": cd_system.url, "secret": WEBHOOK_SECRET},
        )  # fmt: skip
        outcome = mlops(
            "deploy", "iris", "1", "--target", "iris-cd", "--reason", "r",
            "--wait", "--timeout", "60", "--json",
        )  # fmt: skip
    finally:
        cd_system.shutdown()
        cd_system.server_close()
    assert outcome.code == 1, outcome.stderr
    assert outcome.json()["state"] == "failed"
    assert "canary error rate 12%" in outcome.stderr


def test_a_rejected_deployment_exits_3(mlops, bob, ready_version, production):
    waiting = mlops(
        "deploy", "iris", "1", "--target", "iris-production", "--reason", "r",
        "--wait", "--timeout", "60", "--json", background=True,
    )  # fmt: skip
    try:
        requested = wait_until(lambda: Deployment.objects.first(), timeout=30)
        time.sleep(0.5)  # the CLI is polling now
        services.reject_deployment(bob, requested, comment="Not before the freeze ends.")
        stdout, stderr = waiting.communicate(timeout=30)
    finally:
        waiting.kill()
    assert waiting.returncode == 3, stderr
    assert json.loads(stdout)["state"] == "rejected"
    assert "waiting for an MLOps engineer's approval" in stderr


def test_a_wait_past_its_timeout_exits_4(mlops, ready_version, production):
    started = time.monotonic()
    outcome = mlops(
        "deploy", "iris", "1", "--target", "iris-production", "--reason", "r",
        "--wait", "--timeout", "1", "--json",
    )  # fmt: skip
    assert outcome.code == 4, outcome.stderr
    assert time.monotonic() - started < 15
    assert outcome.json()["state"] == "requested"
    assert "Timed out: deployment #" in outcome.stderr


def test_an_invalid_version_exits_1_after_waiting(mlops, celery_worker_process, iris, files):
    outcome = mlops(
        "versions", "register", "iris", "--uri", "http://127.0.0.1:9/model.joblib",
        "--sample-input", "sample.json", "--wait", "--timeout", "60", "--json",
    )  # fmt: skip
    assert outcome.code == 1, outcome.stderr
    assert outcome.json()["status"] == VersionStatus.INVALID
    assert "Invalid:" in outcome.stderr


def test_a_rollback_waits_until_the_previous_version_serves(
    mlops, celery_worker_process, alice, bob, ready_version, staging, token_of
):
    from tests.factories import register_iris_version, validated

    validated(register_iris_version(alice, ready_version.model))
    for number in ("1", "2"):
        deployed = mlops("deploy", "iris", number, "--target", "iris-staging", "--reason", "r",
                         "--wait", "--json")  # fmt: skip
        assert deployed.code == 0, deployed.stderr
    live = deployed.json()["id"]
    rolled = mlops("rollback", str(live), "--reason", "p99 up", "--wait", "--json",
                   token=token_of(bob))  # fmt: skip
    assert rolled.code == 0, rolled.stderr
    assert (rolled.json()["version"], rolled.json()["rollback_of"]) == (1, live)
    assert Deployment.objects.get(pk=live).state == DeploymentState.ROLLED_BACK


def test_auth_errors_exit_2(mlops, alice, token_of, iris, files):
    bad = mlops("checks", "list", token="mlp_not-a-token")
    assert bad.code == 2
    assert "401" in bad.stderr and "Invalid or revoked token." in bad.stderr
    read_only = mlops(
        "versions", "register", "iris", "--uri", "http://127.0.0.1:9/m.joblib",
        "--sample-input", "sample.json", token=token_of(alice, scope="read"),
    )  # fmt: skip
    assert read_only.code == 2
    assert "403" in read_only.stderr and "read-only" in read_only.stderr
    assert not ModelVersion.objects.exists()


def test_refused_input_exits_1_with_the_portals_message(mlops, iris, files):
    outcome = mlops("deploy", "iris", "7", "--target", "nowhere", "--reason", "r")
    assert outcome.code == 1
    assert outcome.stderr == "mlops: 400 Bad Request: version: Model iris has no version 7.\n"
    assert outcome.stdout == ""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["deploy", "iris", "1", "--reason", "r"], "Missing option '--target'"),
        (["versions", "register", "iris", "--sample-input", "sample.json"], "exactly one of"),
        (
            [
                "versions",
                "register",
                "iris",
                "--uri",
                "u",
                "--sample-input",
                "sample.json",
                "--metrics",
                "{not json",
            ],
            "not JSON",
        ),
        (["deploy", "iris", "one", "--target", "t", "--reason", "r"], "not a valid integer"),
        (["nonsense"], "No such command"),
    ],
)
def test_usage_errors_exit_2_before_any_request(mlops, files, args, message):
    outcome = mlops(*args, url="http://127.0.0.1:9")  # nothing listens: no request is made
    assert outcome.code == 2
    assert message in outcome.stderr


def test_no_url_or_token_is_a_usage_error(mlops):
    outcome = mlops("checks", "list", url="", token="x")
    assert (outcome.code, "MLOPS_URL" in outcome.stderr) == (2, True)
