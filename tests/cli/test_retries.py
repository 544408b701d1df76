"""Safe retries: the CLI sends one Idempotency-Key per create and reuses it when it tries
again, so an answer lost on the way back never makes a second version."""

import contextlib
import json
import socket
import threading
from urllib.parse import urlsplit

import pytest

from deployments.models import ModelVersion
from mlops_portal.models import IdempotencyKey
from tests.factories import iris_artifact

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


class DroppingProxy:
    """A TCP proxy in front of the portal that loses the answer of its first connection: the
    request reaches the portal, which handles it and answers, and the proxy then cuts the
    client's connection without passing the answer on, as a load balancer's timeout or a
    network cut would. Later connections go through untouched."""

    def __init__(self, upstream: str):
        split = urlsplit(upstream)
        self.upstream = (split.hostname, split.port)
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}"
        self.connections = 0
        self.dropped = []  # the first bytes of each answer that never reached the client
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            self.connections += 1
            upstream = socket.create_connection(self.upstream)
            drop = self.connections == 1
            threading.Thread(target=self.pipe, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self.pipe, args=(upstream, client, drop), daemon=True).start()

    def pipe(self, source, sink, drop):
        try:
            while data := source.recv(65536):
                if drop:
                    self.dropped.append(data[:40])
                    break
                sink.sendall(data)
        except OSError:
            pass
        for end in (source, sink):
            # shutdown, not only close: it wakes the other pipe's recv and sends the FIN.
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
            end.close()

    def close(self):
        self.server.close()


def test_a_lost_answer_is_retried_with_the_same_key_and_registers_one_version(
    mlops, portal_gunicorn, alice, iris, tmp_path
):
    artifact, metrics, _, sample = iris_artifact()
    (tmp_path / "model.joblib").write_bytes(artifact)
    (tmp_path / "sample.json").write_text(json.dumps(sample))
    proxy = DroppingProxy(portal_gunicorn.url)
    try:
        outcome = mlops(
            "versions", "register", "iris", "--artifact", "model.joblib",
            "--sample-input", "sample.json", "--metrics", json.dumps(metrics), "--json",
            url=proxy.url,
        )  # fmt: skip
    finally:
        proxy.close()
    # The portal answered the first upload with 201, and the client never saw it.
    assert proxy.dropped and proxy.dropped[0].startswith(b"HTTP/1.1 201")
    assert proxy.connections == 2
    assert outcome.code == 0, outcome.stderr
    assert outcome.json()["version"] == 1
    assert ModelVersion.objects.count() == 1
    assert IdempotencyKey.objects.count() == 1


def test_without_retries_left_a_dropped_connection_exits_1(mlops, alice, iris):
    outcome = mlops("models", "create", "churn", url="http://127.0.0.1:9")
    assert outcome.code == 1
    assert "No answer from http://127.0.0.1:9/api/v1/" in outcome.stderr


def test_concurrent_retries_with_one_key_make_one_version(portal_gunicorn, alice, iris, token_of):
    """Eight copies of one registration at the same moment: the first reserves the key in
    its transaction, the others wait on the key's unique index and then replay its answer."""
    import httpx

    headers = {"Authorization": f"Token {token_of(alice)}", "Idempotency-Key": "nightly-42"}
    body = {"artifact_uri": "http://127.0.0.1:9/model.joblib", "sample_input": [[1.0, 2.0]]}
    start = threading.Barrier(8)
    answers = []

    def register():
        start.wait()
        answers.append(
            httpx.post(
                f"{portal_gunicorn.url}/api/v1/models/iris/versions/",
                json=body,
                headers=headers,
                timeout=30,
            )
        )

    threads = [threading.Thread(target=register) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(answer.status_code for answer in answers) == [201] * 8
    assert {answer.json()["version"] for answer in answers} == {1}
    assert sum("Idempotent-Replayed" in answer.headers for answer in answers) == 7
    assert ModelVersion.objects.count() == 1


def test_a_canary_decision_whose_answer_is_lost_is_not_sent_again(
    mlops, portal_gunicorn, bob, token_of
):
    """The portal keeps no Idempotency-Key for promote/abort: a second copy of a decision
    that went through would be answered 409 and read as a failure, so the CLI says it got
    no answer instead (the portal's answer here: 404, for a deployment that is not there)."""
    proxy = DroppingProxy(portal_gunicorn.url)
    try:
        outcome = mlops("deployments", "promote", "424242", url=proxy.url, token=token_of(bob))
    finally:
        proxy.close()
    assert proxy.dropped and proxy.dropped[0].startswith(b"HTTP/1.1 404")
    assert proxy.connections == 1
    assert outcome.code == 1
    assert f"No answer from {proxy.url}/api/v1/" in outcome.stderr
