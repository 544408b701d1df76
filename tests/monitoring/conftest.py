import http.server
import threading
import time

import pytest
import redis
from django.conf import settings

from monitoring.services import checks


class Endpoint(http.server.ThreadingHTTPServer):
    """A model endpoint stand-in on 127.0.0.1 whose /health answers `status` after `delay`
    seconds; `stop()` closes the port so connections are refused."""

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), EndpointHandler)
        self.status = 200
        self.delay = 0.0
        self.hits = 0
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server_port}/health"

    def stop(self):
        self.shutdown()
        self.server_close()


class EndpointHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.server.hits += 1
        time.sleep(self.server.delay)
        body = b'{"status": "ok"}'
        self.send_response(self.server.status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def endpoint():
    server = Endpoint()
    yield server
    try:
        server.stop()
    except OSError:
        pass


@pytest.fixture
def stream():
    """A Redis client on the test Redis, and an empty prediction-log stream of our own."""
    client = redis.Redis.from_url(settings.PREDICTION_LOG_URL)
    client.delete(settings.PREDICTION_LOG_STREAM)
    yield client
    client.delete(settings.PREDICTION_LOG_STREAM)


@pytest.fixture
def make_check(bob):
    """Create a check through the service (as Bob, an engineer)."""

    def make(url, **options):
        options.setdefault("interval_seconds", 30)
        options.setdefault("timeout_seconds", 2)
        options.setdefault("failures_before_down", 2)
        return checks.create_check(bob, name=options.pop("name", "model endpoint"), url=url,
                                   **options)  # fmt: skip

    return make


@pytest.fixture
def iris(alice):
    from deployments import services

    return services.create_model(alice, name="iris", team="botany")


def go_live(alice, version, target, endpoint_url):
    """Make `version` live on `target` at `endpoint_url`, as a finished deploy job does."""
    from deployments import services
    from deployments.choices import DeploymentState
    from deployments.models import Deployment

    deployment = services.request_deployment(alice, version=version, target=target, reason="x")
    Deployment.objects.filter(pk=deployment.pk).update(state=DeploymentState.RUNNING)
    deployment.refresh_from_db()
    services.complete_deployment(deployment, endpoint_url)
    return deployment
