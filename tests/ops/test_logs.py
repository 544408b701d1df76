"""Structured logs: JSON lines with LOG_FORMAT=json, a request id that follows a deployment
from the web process to the worker to the model server, and no secret in any line."""

import io
import json
import logging
import subprocess
import sys

import httpx
import pytest
from django.conf import settings

from deployments.choices import DeploymentState as State
from deployments.models import Deployment
from mlops_portal.core import logs
from mlops_portal.core import tokens as api_tokens
from tests.conftest import ROOT, celery_worker, stop_process, subprocess_env, wait_until
from tests.test_outbox import PrivateRedis, free_port

# --- request ids --------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_request_echoes_the_callers_id_or_gets_a_new_one(client):
    given = client.get("/healthz", HTTP_X_REQUEST_ID="deploy-from-ci-42")
    assert given["X-Request-ID"] == "deploy-from-ci-42"
    made = client.get("/healthz")
    assert len(made["X-Request-ID"]) == 32
    forged = client.get("/healthz", HTTP_X_REQUEST_ID="a b\nfake line")
    assert forged["X-Request-ID"] != "a b\nfake line" and len(forged["X-Request-ID"]) == 32


@pytest.mark.django_db
def test_a_job_enqueued_by_a_request_carries_its_id_in_the_outbox(
    api_client_for, alice, ready_version, staging
):
    from mlops_portal.models import OutboxMessage

    response = api_client_for(alice).post(
        "/api/v1/deployments/",
        {"model": "iris", "version": 1, "target": "iris-staging", "reason": "Try"},
        format="json",
        HTTP_X_REQUEST_ID="form-123",
    )
    assert response.status_code == 201
    job = OutboxMessage.objects.get(task="deployments.tasks.run_deployment_task")
    assert job.request_id == "form-123"


# --- no secrets -------------------------------------------------------------------------


class logs_captured:
    """Send the root logger's lines through the portal's formatter into a string."""

    def __init__(self, fmt):
        config = logs.logging_config(fmt, "DEBUG")
        factory = config["formatters"]["structured"]
        options = {key: value for key, value in factory.items() if key != "()"}
        self.handler = logging.StreamHandler(io.StringIO())
        self.handler.setFormatter(factory["()"](**options))

    def __enter__(self):
        root = logging.getLogger()
        self.level = root.level
        root.addHandler(self.handler)
        root.setLevel(logging.DEBUG)
        return self

    def __exit__(self, *exc):
        root = logging.getLogger()
        root.removeHandler(self.handler)
        root.setLevel(self.level)

    @property
    def text(self) -> str:
        return self.handler.stream.getvalue()


@pytest.mark.django_db
@pytest.mark.parametrize("fmt", ["json", "console"])
def test_no_secret_or_token_reaches_a_log_line(fmt, bob, api_client_for):
    _, secret = api_tokens.create_token(bob, "ci")
    log = logging.getLogger("tests.secrets")
    with logs_captured(fmt) as captured:
        log.info("calling with Authorization: Token %s", secret)
        log.info("headers %s", {"Authorization": "Bearer abcdef123456", "Accept": "json"})
        log.warning("connect to postgres://portal:hunter2-db@db:5432/portal failed")
        log.info("form posted", extra={"password": "correct horse", "user": "bob"})
        log.info("callback ?token=s3cr3t-value&x=1 and secret: 'sig-777'")
        try:
            api_key = secret  # a local variable: no traceback may show it
            raise ValueError(f"bad token {api_key}, password=hunter3")
        except ValueError:
            log.exception("crash")
        # And a real request with a wrong token: the security line names no credential.
        client = api_client_for(bob)
        client.credentials(HTTP_AUTHORIZATION=f"Token {secret[:-4]}zzzz")
        assert client.get("/api/v1/models/").status_code == 401
    text = captured.text
    for leaked in (secret, secret[4:20], "abcdef123456", "hunter2-db", "correct horse",
                   "s3cr3t-value", "sig-777", f"{secret[:-4]}zzzz", "hunter3"):  # fmt: skip
        assert leaked not in text, f"{leaked!r} leaked:\n{text}"
    assert "[redacted]" in text and "ValueError: bad token [redacted]" in text
    assert "postgres://portal:[redacted]@db:5432/portal" in text
    assert '"user":"bob"' in text if fmt == "json" else "user=bob" in text


# --- one deployment, three processes, one request id --------------------------------------


def json_lines(path) -> list[dict]:
    lines = []
    for raw in path.read_text(errors="replace").splitlines():
        if raw.startswith("{"):
            lines.append(json.loads(raw))
    return lines


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_one_deployments_lines_share_a_request_id_in_web_worker_and_model_server(
    monkeypatch, tmp_path, alice, ready_version, staging
):
    monkeypatch.setenv("LOG_FORMAT", "json")  # for the processes started below
    broker = PrivateRedis()
    broker.start()
    port = free_port()
    env = {**subprocess_env(), "CELERY_BROKER_URL": broker.url, "LOG_LEVEL": "INFO"}
    with open(tmp_path / "web.log", "w") as out:
        web = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "mlops_portal.wsgi", "-c",
             "mlops_portal/gunicorn.conf.py", "--bind", f"127.0.0.1:{port}", "--workers", "1"],
            cwd=ROOT, env={**env, "VAR_DIR": str(tmp_path), "PORTAL_BIND": f"127.0.0.1:{port}"},
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    _, secret = api_tokens.create_token(alice, "ci")
    try:
        with celery_worker(broker.url, tmp_path / "worker.log", node=f"logs-{port}@localhost"):
            url = f"http://127.0.0.1:{port}"
            wait_until(lambda: up(url), timeout=60)
            response = httpx.post(
                f"{url}/api/v1/deployments/",
                json={"model": "iris", "version": 1, "target": "iris-staging", "reason": "Try"},
                headers={"Authorization": f"Token {secret}", "X-Request-ID": "trace-me-1"},
            )
            assert response.status_code == 201, response.text
            assert response.headers["X-Request-ID"] == "trace-me-1"
            pk = response.json()["id"]
            wait_until(
                lambda: Deployment.objects.filter(pk=pk, state=State.SUCCEEDED).exists(),
                timeout=60,
            )
    finally:
        stop_process(web)
        broker.stop()

    server_log = settings.SERVING_DIR / f"deployment-{pk}.log"
    traced = {
        name: [line for line in json_lines(path) if line.get("request_id") == "trace-me-1"]
        for name, path in (
            ("web", tmp_path / "web.log"),
            ("worker", tmp_path / "worker.log"),
            ("model server", server_log),
        )
    }
    web_events = [line["event"] for line in traced["web"]]
    assert "POST /api/v1/deployments/ 201" in web_events, web_events
    worker_events = [line["event"] for line in traced["worker"]]
    assert any(event.startswith("Deploying iris v1") for event in worker_events), worker_events
    assert any("answers /health" in event for event in worker_events), worker_events
    server_events = [line["event"] for line in traced["model server"]]
    assert any(event.startswith("model server: serving iris v1") for event in server_events)
    for lines in traced.values():
        assert all({"timestamp", "level", "event"} <= set(line) for line in lines)
    everything = "".join(p.read_text() for p in (tmp_path / "web.log", tmp_path / "worker.log"))
    assert secret not in everything


def up(url) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
