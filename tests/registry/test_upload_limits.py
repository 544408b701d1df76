"""An upload over ARTIFACT_MAX_BYTES is refused while it arrives: the bytes written to the
temporary upload folder stay within the limit plus one chunk, whether the Content-Length
told the truth or not, through the API and the page form alike."""

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.files.uploadhandler import FileUploadHandler, TemporaryFileUploadHandler
from django.test.client import BOUNDARY, MULTIPART_CONTENT, encode_multipart

from deployments.models import ModelVersion

LIMIT = 256 * 1024
CHUNK = FileUploadHandler.chunk_size
REFUSAL = f"The upload is larger than the limit of {LIMIT} bytes (ARTIFACT_MAX_BYTES)."


@pytest.fixture
def disk(settings, tmp_path, monkeypatch):
    """Every upload goes to a temporary file in tmp_path; returns the list of byte counts
    written to such files, chunk by chunk."""
    settings.ARTIFACT_MAX_BYTES = LIMIT
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 0
    settings.FILE_UPLOAD_TEMP_DIR = str(tmp_path)
    written: list[int] = []
    original = TemporaryFileUploadHandler.receive_data_chunk

    def receive_data_chunk(handler, raw_data, start):
        written.append(len(raw_data))
        return original(handler, raw_data, start)

    monkeypatch.setattr(TemporaryFileUploadHandler, "receive_data_chunk", receive_data_chunk)
    return written


def multipart(size: int) -> bytes:
    """A version registration whose artifact is `size` bytes, the file after the fields."""
    return encode_multipart(
        BOUNDARY,
        {
            "sample_input": "[[5.1, 3.5, 1.4, 0.2]]",
            "flavor": "sklearn",
            "artifact": SimpleUploadedFile("model.joblib", b"x" * size),
        },
    )


# What the client says the length is: the truth, an understatement that still passes the
# header check (the bytes received must stop it), or nothing at all.
LENGTHS = {
    "truthful": lambda body: str(len(body)),
    "understated": lambda body: str(LIMIT + 512 * 1024),
    "missing": lambda body: "",
}


@pytest.mark.parametrize("length", LENGTHS)
def test_the_api_refuses_an_oversized_upload_before_storing_it(
    api_client_for, alice, churn, disk, length
):
    body = multipart(8 * LIMIT)
    response = api_client_for(alice).generic(
        "POST",
        "/api/v1/models/churn/versions/",
        body,
        content_type=MULTIPART_CONTENT,
        CONTENT_LENGTH=LENGTHS[length](body),
    )
    assert sum(disk) <= LIMIT + CHUNK
    assert not ModelVersion.objects.exists()
    if length == "missing":  # Django reads no body without a length: no file at all
        assert response.status_code == 400
        assert sum(disk) == 0
    else:
        assert response.status_code == 413
        assert response.json() == {"artifact": [REFUSAL]}
    if length == "truthful":
        assert sum(disk) == 0  # refused on the header, before the file's first byte


@pytest.mark.parametrize("length", ["truthful", "understated"])
def test_the_page_form_refuses_an_oversized_upload_before_storing_it(
    client, alice, churn, disk, length
):
    client.force_login(alice)
    body = multipart(8 * LIMIT)
    response = client.generic(
        "POST",
        "/models/churn/versions/new/",
        body,
        content_type=MULTIPART_CONTENT,
        CONTENT_LENGTH=LENGTHS[length](body),
    )
    assert response.status_code == 413
    assert response.context["form"].errors["artifact"] == [REFUSAL]
    assert sum(disk) <= (0 if length == "truthful" else LIMIT + CHUNK)
    assert not ModelVersion.objects.exists()


def test_an_upload_within_the_limit_is_registered(api_client_for, alice, churn, disk):
    body = multipart(LIMIT - 1024)
    response = api_client_for(alice).generic(
        "POST", "/api/v1/models/churn/versions/", body, content_type=MULTIPART_CONTENT
    )
    # Not a real model (validation will say so), but stored and registered.
    assert response.status_code == 201, response.content
    assert sum(disk) == LIMIT - 1024
    assert ModelVersion.objects.get().artifact_size == LIMIT - 1024


def test_a_json_body_over_the_data_limit_is_a_413(api_client_for, alice, churn, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = api_client_for(alice).post(
        "/api/v1/models/churn/versions/",
        {"artifact_uri": "http://127.0.0.1:9/m.joblib", "description": "x" * 2000},
        format="json",
    )
    assert response.status_code == 413
    assert "DATA_UPLOAD_MAX_MEMORY_SIZE" in response.json()["detail"]


def test_the_procfile_web_server_ends_a_stalled_upload():
    """gunicorn as the Procfile starts it, with WEB_TIMEOUT=2: a client that declares a body
    and stops sending loses its connection within seconds instead of holding the worker."""
    root = Path(__file__).resolve().parents[2]
    web = next(line for line in (root / "Procfile").read_text().splitlines() if line[:4] == "web:")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {
        **os.environ,
        "WEB_TIMEOUT": "2",
        "WEB_CONCURRENCY": "1",
        "PORTAL_BIND": f"127.0.0.1:{port}",
        "DJANGO_SETTINGS_MODULE": "tests.settings",
    }
    server = subprocess.Popen(
        ["bash", "-c", web.split(":", 1)[1]],
        cwd=root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        connection = connect_when_up(port)
        # A CSRF cookie, so that the CSRF check reads the body (the token is in the form).
        connection.sendall(
            b"POST /login/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Cookie: csrftoken=" + b"a" * 32 + b"\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: 100000\r\n\r\nusername=a"
        )
        connection.settimeout(20)
        started = time.monotonic()
        try:
            while connection.recv(4096):
                pass  # an error page, if any, then the close
        except ConnectionResetError:
            pass
        assert time.monotonic() - started < 10
        connection.close()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:  # a worker still stuck in the stalled request
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def connect_when_up(port: int, timeout: float = 30.0) -> socket.socket:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=1)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
