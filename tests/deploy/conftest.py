import http.server
import io
import json
import threading
import time

import httpx
import joblib
import pytest
from django.core.files.base import ContentFile

from deployments import services
from mlops_portal.core.roles import Role
from tests.conftest import stop_model_servers, wait_until
from tests.factories import UserFactory, register_iris_version, validated
from tests.monitoring.flaky_model import RaisesOnNegativeInput

WEBHOOK_SECRET = "s3cret-signing-key-for-tests"


@pytest.fixture(autouse=True)
def stop_model_servers_after_each_test():
    yield
    stop_model_servers()


@pytest.fixture
def erin(db):
    """Erin, a second MLOps engineer (for concurrent approvals)."""
    return UserFactory(username="erin", role=Role.MLOPS_ENGINEER)


@pytest.fixture
def iris(alice):
    return services.create_model(alice, name="iris", team="botany")


@pytest.fixture
def ready_version(alice, iris):
    """A validated, ready iris version (v1) registered by Alice."""
    version = register_iris_version(alice, iris, metrics={"accuracy": 0.9})
    return validated(version)


@pytest.fixture
def second_version(alice, iris, ready_version):
    version = register_iris_version(alice, iris, metrics={"accuracy": 0.95})
    return validated(version)


@pytest.fixture
def staging(bob):
    """A local target that needs no approval."""
    return services.create_target(bob, name="iris-staging", environment="staging")


@pytest.fixture
def production(bob):
    """A local production target: approval required by default."""
    return services.create_target(bob, name="iris-production", environment="production")


class CDStandIn(http.server.ThreadingHTTPServer):
    """A local stand-in for an external CD system: records each request and answers with
    `self.answer` (status, JSON body), after `self.delay` seconds."""

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), CDHandler)
        self.requests = []
        self.answer = (200, {"status": "succeeded", "endpoint": "https://cd.example/iris"})
        self.delay = 0.0

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server_port}/deploy"


class CDHandler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.requests.append((dict(self.headers), body))
        time.sleep(self.server.delay)
        status, answer = self.server.answer
        payload = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture
def cd_system():
    server = CDStandIn()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def webhook_target(bob, cd_system):
    return services.create_target(
        bob,
        name="iris-cd",
        environment="staging",
        backend="webhook",
        backend_settings={"url": cd_system.url, "secret": WEBHOOK_SECRET, "timeout_seconds": 30},
    )


@pytest.fixture(scope="session")
def ray_cluster():
    """ONE real local Ray cluster (`ray start --head --block`, 2 CPUs, ports and temp folder
    of its own) for the session: starting one takes the most time of the Ray tests."""
    from tests.deploy import ray_cluster as cluster

    head = cluster.start(num_cpus=2)
    try:
        yield head
    finally:
        cluster.stop(head)


@pytest.fixture
def ray_cluster_emptied(ray_cluster):
    """The session's cluster, its Serve applications deleted after the test."""
    yield ray_cluster
    delete_applications(ray_cluster)


def delete_applications(cluster):
    url = f"{cluster.dashboard_url}/api/serve/applications/"
    details = httpx.get(url, timeout=10).json()
    options = {key: details["http_options"][key] for key in ("host", "port")}
    httpx.put(url, json={"http_options": options, "applications": []}, timeout=60)
    wait_until(lambda: not httpx.get(url, timeout=10).json().get("applications"), timeout=60)


@pytest.fixture
def ray_target(bob, ray_cluster_emptied, portal_gunicorn):
    # The replicas download the version from a signed link to the session's gunicorn.
    ray_cluster = ray_cluster_emptied
    return services.create_target(
        bob,
        name="iris-ray",
        environment="staging",
        backend="ray",
        backend_settings={
            "dashboard_url": ray_cluster.dashboard_url,
            "num_cpus": 0.25,
            "http_host": "127.0.0.1",
            "http_port": ray_cluster.serve_port,
            "timeout_seconds": 120,
        },
    )


@pytest.fixture
def flaky_version(alice, iris, ready_version):
    """The next version of iris: a model that answers 500 for rows with a negative value."""
    buffer = io.BytesIO()
    joblib.dump(RaisesOnNegativeInput(), buffer)
    version = register_iris_version(
        alice, iris, artifact=ContentFile(buffer.getvalue(), name="flaky.joblib"),
        sample_input=[[5.1, 3.5, 1.4, 0.2]],
    )  # fmt: skip
    return validated(version)
