"""The `ray` backend against a real local Ray cluster (tests/deploy/ray_cluster.py, one per
session): a real worker on Redis submits Serve applications through the dashboard's REST
API; requests, approvals and rollbacks go through the services as pages do."""

import json
import os
import signal
import subprocess
import sys
import threading
from datetime import timedelta

import httpx
import pytest
from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils import timezone

from deployments import services
from deployments.backends import backend_class
from deployments.backends.ray_serve import RayServeBackend
from deployments.choices import DeploymentState as State
from deployments.models import Deployment, ModelVersion
from deployments.tasks import run_deployment_task
from mlops_portal.celery import app
from mlops_portal.core import outbox
from tests.conftest import ROOT, start_celery_worker, wait_for_worker, wait_until
from tests.deploy.conftest import delete_applications
from tests.deploy.test_mlflow_e2e import check_v2_answers, register_churn_model

SAMPLE = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]


# --- without a cluster ------------------------------------------------------------------


def test_settings_are_checked_when_the_target_is_saved():
    clean = backend_class("ray").clean_settings
    assert clean({"dashboard_url": "http://head:8265"}) == {"dashboard_url": "http://head:8265"}
    with pytest.raises(ValidationError) as error:
        clean({
            "dashboard_url": "ftp://head", "num_replicas": 0, "num_cpus": "two",
            "route_prefix": "iris", "serve_url": "http://:8000",
        })  # fmt: skip
    messages = " ".join(error.value.message_dict["backend_settings"])
    for expected in ("dashboard_url must be", "num_replicas must be between 1 and 64",
                     "num_cpus must be a number", "route_prefix must start with /",
                     "serve_url must be"):  # fmt: skip
        assert expected in messages
    with pytest.raises(ValidationError, match="dashboard_url is required"):
        clean({})
    with pytest.raises(ValidationError, match="num_cpus must be more than 0"):
        clean({"dashboard_url": "http://head:8265", "num_cpus": 0})
    assert clean({"dashboard_url": "https://head", "num_cpus": 0.25})["num_cpus"] == 0.25


def test_the_portal_never_imports_ray():
    """The portal's processes (web, worker, the backend itself) load without Ray: only the
    replicas on the cluster import deployments.serving.ray_app."""
    code = (
        "import django, sys; django.setup();"
        "import mlops_portal.urls, mlops_portal.celery, deployments.tasks, monitoring.tasks;"
        "import deployments.backends.ray_serve;"
        "from deployments.backends import backend_class; backend_class('ray');"
        "bad = sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')"
        " or m.endswith('ray_app'));"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- on a real cluster --------------------------------------------------------------------


def settled(deployment_id):
    deployment = Deployment.objects.get(pk=deployment_id)
    return deployment if deployment.state not in (State.QUEUED, State.RUNNING) else None


def deploy(requester, version, target, reason="Ship it", expect=State.SUCCEEDED):
    deployment = services.request_deployment(
        requester, version=version, target=target, reason=reason
    )
    done = wait_until(lambda: settled(deployment.pk), timeout=180, interval=0.5)
    assert done.state == expect, done.failure_reason
    return done


def infer(endpoint, rows=SAMPLE):
    body = {"inputs": [{"name": "x", "shape": [len(rows), 4], "datatype": "FP64",
                        "data": [v for row in rows for v in row]}]}  # fmt: skip
    response = httpx.post(f"{endpoint}/v2/models/iris/infer", json=body, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def serve_app(cluster, target):
    details = httpx.get(f"{cluster.dashboard_url}/api/serve/applications/", timeout=10).json()
    return details["applications"].get(f"mlops-target-{target.pk}")


def replica_pids(cluster, target) -> list[int]:
    """The pids of the application's RUNNING replicas."""
    running = replicas(cluster, target).values()
    return [r["pid"] for r in running if r.get("state") == "RUNNING" and r.get("pid")]


class ClientLoop(threading.Thread):
    """Predicts in a loop until stopped; counts answers, errors and versions seen."""

    def __init__(self, endpoint):
        super().__init__(daemon=True)
        self.endpoint, self.running = endpoint, True
        self.answered, self.errors, self.versions = 0, [], set()

    def run(self):
        with httpx.Client(timeout=30) as client:
            while self.running:
                try:
                    response = client.post(f"{self.endpoint}/predict", json={"instances": SAMPLE})
                    if response.status_code == 200:
                        self.answered += 1
                        self.versions.add(response.json()["version"])
                    else:
                        self.errors.append(f"HTTP {response.status_code}: {response.text[:200]}")
                except httpx.HTTPError as exc:
                    self.errors.append(repr(exc))

    def stop(self):
        self.running = False
        self.join(timeout=40)


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_deploy_serve_switch_without_errors_scale_and_roll_back(
    celery_worker_process, ray_cluster, alice, bob, ready_version, second_version, ray_target
):
    first = deploy(alice, ready_version, ray_target)
    assert first.endpoint == f"http://127.0.0.1:{ray_cluster.serve_port}/iris-ray"
    answer = infer(first.endpoint)
    assert answer["model_name"] == "iris" and answer["model_version"] == "1"
    assert len(answer["outputs"][0]["data"]) == 2
    assert first.backend_state["previous_config"] is None
    assert "file://" not in json.dumps(first.backend_state)  # the signed URL is not stored

    # A second version replaces the first under the same endpoint, while a client predicts.
    loop = ClientLoop(first.endpoint)
    loop.start()
    second = deploy(alice, second_version, ray_target)
    wait_until(lambda: loop.answered > 20, timeout=10)
    loop.stop()
    assert loop.errors == []
    assert loop.versions == {1, 2}, loop.versions
    assert second.endpoint == first.endpoint
    assert second.backend_state["previous_config"]["args"]["deployment"] == first.pk
    first.refresh_from_db()
    assert first.state == State.SUPERSEDED
    # Its stop changes nothing on the cluster (the application serves v2) and is cleared.
    wait_until(lambda: not Deployment.objects.get(pk=first.pk).stop_pending, timeout=30)
    assert serve_app(ray_cluster, ray_target)["deployed_app_config"]["args"]["version"] == 2
    assert infer(second.endpoint)["model_version"] == "2"

    # Two replicas: the same version deployed again with num_replicas 2.
    services.update_target(
        bob, ray_target, backend_settings={**ray_target.backend_settings, "num_replicas": 2}
    )
    scaled = deploy(alice, second_version, ray_target, reason="More traffic")
    assert len(replica_pids(ray_cluster, ray_target)) == 2
    pids = {httpx.get(f"{scaled.endpoint}/health").json()["replica_pid"] for _ in range(30)}
    assert len(pids) == 2  # both replicas answer

    # Roll back to v1: the rollback deploys v1 again (a freshly signed URL).
    rollback = services.rollback_deployment(bob, scaled, reason="Accuracy dropped.")
    restored = wait_until(lambda: settled(rollback.pk), timeout=180, interval=0.5)
    assert restored.state == State.SUCCEEDED, restored.failure_reason
    scaled.refresh_from_db()
    assert scaled.state == State.ROLLED_BACK
    assert infer(restored.endpoint)["model_version"] == "1"
    assert httpx.get(f"{restored.endpoint}/health").json()["deployment"] == restored.pk
    assert RayServeBackend(ray_target).status(restored) == "serving"
    assert RayServeBackend(ray_target).status(scaled) == "stopped"


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_version_that_cannot_load_fails_and_the_previous_keeps_serving(
    celery_worker_process, ray_cluster, alice, ready_version, second_version, ray_target
):
    live = deploy(alice, ready_version, ray_target)
    # Its bytes no longer match what validation measured: every replica refuses to load.
    ModelVersion.objects.filter(pk=second_version.pk).update(artifact_sha256="0" * 64)
    loop = ClientLoop(live.endpoint)
    loop.start()
    failed = deploy(alice, second_version, ray_target, expect=State.FAILED)
    loop.stop()
    assert "SHA-256" in failed.failure_reason
    assert loop.errors == [] and loop.versions == {1}
    # The application's config is put back to the live deployment's.
    wait_until(lambda: not Deployment.objects.get(pk=failed.pk).stop_pending, timeout=30)
    app = serve_app(ray_cluster, ray_target)
    assert app["deployed_app_config"]["args"]["deployment"] == live.pk
    live.refresh_from_db()
    assert live.state == State.SUCCEEDED
    assert infer(live.endpoint)["model_version"] == "1"

    # Someone deletes the application on the cluster: the reconciler notes it, once.
    delete_applications(ray_cluster)
    assert services.reconcile_deployments()["dead_servers"] == 1
    assert services.reconcile_deployments()["dead_servers"] == 0
    notes = live.events.filter(kind="note").values_list("message", flat=True)
    assert f"The Serve application mlops-target-{ray_target.pk} no longer serves it." in notes


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_killed_replicas_recover_or_fail_never_stay_running(
    celery_worker_process, ray_cluster, alice, ready_version, second_version, ray_target
):
    live = deploy(alice, ready_version, ray_target)
    # The live replica's process killed: Serve starts another, the endpoint serves again.
    (pid,) = replica_pids(ray_cluster, ray_target)
    os.kill(pid, signal.SIGKILL)
    wait_until(
        lambda: (pids := replica_pids(ray_cluster, ray_target)) and pid not in pids, timeout=90
    )
    wait_until(lambda: infer_ok(live.endpoint), timeout=60)
    assert services.reconcile_deployments()["dead_servers"] == 0
    live.refresh_from_db()
    assert live.state == State.SUCCEEDED

    # A replica killed while a deploy waits for it: the deploy ends, one way or the other.
    known = set(replicas(ray_cluster, ray_target))
    deployment = services.request_deployment(
        alice, version=second_version, target=ray_target, reason="During a crash"
    )
    new_pid = wait_until(
        lambda: new_replica_pid(ray_cluster, ray_target, known), timeout=90, interval=0.1
    )
    os.kill(new_pid, signal.SIGKILL)
    done = wait_until(lambda: settled(deployment.pk), timeout=180, interval=0.5)
    assert done.state in (State.SUCCEEDED, State.FAILED)
    serving = Deployment.objects.live().get(target=ray_target)
    assert infer(serving.endpoint)["model_version"] == str(serving.version.number)


def infer_ok(endpoint) -> bool:
    try:
        infer(endpoint)
    except (AssertionError, httpx.HTTPError):
        return False
    return True


def replicas(cluster, target) -> dict[str, dict]:
    """The application's replicas by id (with state and pid)."""
    app = serve_app(cluster, target) or {}
    found = app.get("deployments", {}).get("ModelServer", {}).get("replicas", [])
    return {replica["replica_id"]: replica for replica in found}


def new_replica_pid(cluster, target, known: set) -> int | None:
    """The pid of a replica that is not one of `known`, once Serve has started its process."""
    for replica_id, replica in replicas(cluster, target).items():
        if replica_id not in known and replica.get("pid"):
            return replica["pid"]
    return None


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_deploy_ends_failed_and_the_previous_version_serves(
    ray_cluster, alice, ready_version, second_version, ray_target, tmp_path, monkeypatch
):
    """The deploy worker SIGKILLed right after submitting the new config, and right after
    the new version answered (before going live): a lease later the reconciler fails the
    deployment and puts the live one's config back; the endpoint serves the live version."""
    live = services.request_deployment(alice, version=ready_version, target=ray_target,
                                       reason="v1")  # fmt: skip
    assert services.run_deployment(live.pk) == State.SUCCEEDED  # in-process
    live.refresh_from_db()
    send = outbox.enqueue
    dying = {step: start_worker_dying_at(step, tmp_path) for step in ("server_started", "deployed")}
    try:
        for worker in dying.values():
            wait_for_worker(app, worker.node, worker, worker.log_path)
        for step, worker in dying.items():
            monkeypatch.setattr(outbox, "enqueue", enqueue_on(queue_for(step), send))
            new = services.request_deployment(
                alice, version=second_version, target=ray_target, reason=f"killed at {step}"
            )
            assert worker.wait(timeout=120) == -signal.SIGKILL, worker.log_path.read_text()
            services.reconcile_deployments(
                now=timezone.now() + timedelta(seconds=settings.DEPLOY_LEASE_SECONDS + 1)
            )
            new.refresh_from_db()
            assert new.state == State.FAILED and not new.stop_pending, step
            assert Deployment.objects.live().get(target=ray_target) == live
            app_config = serve_app(ray_cluster, ray_target)["deployed_app_config"]
            assert app_config["args"]["deployment"] == live.pk, step
            wait_until(lambda: httpx.get(f"{live.endpoint}/health").json()["deployment"] == live.pk,
                       timeout=60)  # fmt: skip
            assert infer(live.endpoint)["model_version"] == "1"
    finally:
        for worker in dying.values():
            if worker.poll() is None:
                os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
        with app.connection_for_write() as connection:
            for step in dying:
                connection.default_channel.queue_delete(queue_for(step))


def queue_for(step) -> str:
    return f"ray-dies-at-{step}-{os.getpid()}"


def start_worker_dying_at(step, tmp_path):
    return start_celery_worker(
        f"{queue_for(step)}@localhost", queue_for(step), tmp_path / f"worker-{step}.log",
        env={"DEPLOY_CRASH_AT": step}, own_group=True,
    )  # fmt: skip


def enqueue_on(queue, send):
    """outbox.enqueue (`send`) sending deploy jobs to `queue`, where one dying worker
    listens."""

    def enqueue(task, *args, **options):
        if task is run_deployment_task:
            options["queue"] = queue
        return send(task, *args, **options)

    return enqueue


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_an_mlflow_lightgbm_model_deploys_on_ray_and_answers_v2_infer(
    celery_worker_process, api_client_for, alice, ray_target
):
    """The portal's bundle of an MLflow model: the replica fetches it, unpacks it and
    loads it with mlflow.pyfunc, as the local model server does."""
    version = register_churn_model(api_client_for, alice)
    deployment = deploy(alice, version, ray_target, reason="Churn model on Ray")
    check_v2_answers(deployment.endpoint)
    assert httpx.get(f"{deployment.endpoint}/health").json()["model"] == "churn-lgbm"
