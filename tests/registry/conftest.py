import http.server
import socket
import threading

import pytest

from deployments import services
from tests.factories import iris_artifact, lightgbm_zip


@pytest.fixture
def churn(alice):
    """Alice's model, with no versions yet."""
    return services.create_model(alice, name="churn", team="growth", tags=["tabular"])


@pytest.fixture
def artifact_server():
    """A real HTTP server on 127.0.0.1 serving a joblib artifact at /model.joblib and the
    LightGBM MLflow model as a zip at /churn.zip."""
    files = {"/model.joblib": iris_artifact()[0], "/churn.zip": lightgbm_zip()}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path not in files:
                self.send_error(404)
                return
            artifact = files[self.path]
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


@pytest.fixture
def dns(monkeypatch):
    """A stubbed resolver: names in the dict answer their address, others resolve as usual.
    Returns the dict and the list of addresses a socket tried to connect to."""
    answers: dict[str, str] = {}
    connected: list = []
    real_getaddrinfo = socket.getaddrinfo
    real_connect = socket.socket.connect

    def getaddrinfo(host, port, *args, **kwargs):
        if host in answers:
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answers[host], port or 80))]
        return real_getaddrinfo(host, port, *args, **kwargs)

    def connect(sock, address):
        connected.append(address[0])
        if address[0] not in ("127.0.0.1", "::1"):
            raise AssertionError(f"a connection to {address[0]} was attempted")
        return real_connect(sock, address)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", connect)
    return answers, connected
