import http.server
import json
import threading

import pytest

# The deployment tests' people, model, ready version and production target.
from tests.deploy.conftest import erin, iris, production, ready_version  # noqa: F401


class ChatStandIn(http.server.ThreadingHTTPServer):
    """A chat webhook (or any JSON receiver) on 127.0.0.1: records every request and
    answers with the next status of `statuses` (200 once they run out)."""

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), ChatHandler)
        self.requests = []
        self.statuses = []
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server_port}/hooks/portal"

    def payloads(self):
        return [json.loads(body) for _, body in self.requests]


class ChatHandler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.requests.append((dict(self.headers), body))
        status = self.server.statuses.pop(0) if self.server.statuses else 200
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


@pytest.fixture
def chat_server():
    server = ChatStandIn()
    yield server
    server.shutdown()
    server.server_close()
