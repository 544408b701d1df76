import http.server
import threading

import pytest

from deployments import services
from tests.factories import iris_artifact


@pytest.fixture
def churn(alice):
    """Alice's model, with no versions yet."""
    return services.create_model(alice, name="churn", team="growth", tags=["tabular"])


@pytest.fixture
def artifact_server():
    """A real HTTP server on 127.0.0.1 serving a joblib artifact at /model.joblib."""
    artifact = iris_artifact()[0]

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path != "/model.joblib":
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(artifact)))
            self.end_headers()
            self.wfile.write(artifact)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()
