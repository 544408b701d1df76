"""The model server that the local deploy backend starts, run as a real process on 127.0.0.1.

No database: the server imports no Django, and these tests only talk HTTP to it."""

import io
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import joblib
import numpy
import pytest

from tests.conftest import wait_until
from tests.factories import iris_artifact

ROOT = Path(__file__).resolve().parents[2]
MODEL, VERSION = "iris-classifier", 3
BUCKET = re.compile(r'model_server_request_duration_seconds_bucket\{le="(.+)"\}')


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def server_command(artifact: Path, port: int, flavor: str = "sklearn", workers: int = 1):
    return [
        sys.executable,
        "-m",
        "deployments.serving.server",
        "--artifact",
        str(artifact),
        "--flavor",
        flavor,
        "--model",
        MODEL,
        "--version",
        str(VERSION),
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]


def write_iris(directory: Path) -> Path:
    path = directory / "model.joblib"
    path.write_bytes(iris_artifact()[0])
    return path


def start_server(
    artifact: Path, log_path: Path, flavor: str = "sklearn", workers: int = 1, module_as=None
) -> tuple[subprocess.Popen, str]:
    """Start the server and wait until /health answers; return the process and its URL.
    `module_as` replaces `-m deployments.serving.server` (e.g. `-c CODE` running it)."""
    port = free_port()
    command = server_command(artifact, port, flavor, workers)
    if module_as:
        command[1:3] = module_as
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, cwd=ROOT, stderr=log)
    url = f"http://127.0.0.1:{port}"

    def healthy():
        if process.poll() is not None:
            raise AssertionError(f"The server exited:\n{log_path.read_text()}")
        try:
            return httpx.get(f"{url}/health", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_until(healthy, timeout=30, interval=0.05)
    except BaseException:
        stop_server(process)
        raise
    return process, url


def stop_server(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def server_url(tmp_path_factory):
    directory = tmp_path_factory.mktemp("model-server")
    process, url = start_server(write_iris(directory), directory / "server.log")
    try:
        yield url
    finally:
        stop_server(process)


@pytest.fixture(scope="module")
def client(server_url):
    with httpx.Client(base_url=server_url, timeout=10) as client:
        yield client


def read_metrics(client: httpx.Client) -> dict[str, float]:
    """The samples of GET /metrics, keyed by series: {'name{labels}': value}."""
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = {}
    for line in response.text.splitlines():
        if line and not line.startswith("#"):
            series, value = line.rsplit(" ", 1)
            samples[series] = float(value)
    return samples


def test_health_reports_the_model_its_version_and_uptime(client):
    first = client.get("/health").json()
    second = client.get("/health").json()

    assert first["status"] == "ok"
    assert first["model"] == MODEL
    assert first["version"] == VERSION
    assert isinstance(first["pid"], int)
    assert 0 <= first["uptime_seconds"] <= second["uptime_seconds"]


def test_it_predicts_what_the_artifact_predicts_in_process(client):
    artifact, _, _, sample = iris_artifact()
    expected = joblib.load(io.BytesIO(artifact)).predict(numpy.asarray(sample)).tolist()

    response = client.post("/predict", json={"instances": sample})

    assert response.status_code == 200
    answer = response.json()
    prediction_id = answer.pop("prediction_id")
    assert answer == {"predictions": expected, "model": MODEL, "version": VERSION,
                      "logged": False}  # started without a deployment id: no log  # fmt: skip
    assert len(prediction_id) == 32 and response.headers["X-Prediction-ID"] == prediction_id


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"", "body is empty"),
        (b"[[5.1, 3.5, 1.4, 0.2]]", "must be a JSON object"),
        (b'{"rows": [[5.1, 3.5, 1.4, 0.2]]}', 'no "instances"'),
        (b'{"instances": []}', "non-empty list"),
        (b'{"instances": [[5.1, 3.5, 1.4, 0.2], [5.1, 3.5]]}', "instances[1] has 2 values"),
        (b'{"instances": [[5.1, 3.5, 1.4]]}', "expects 4 features"),
        (b'{"instances": [["5.1", 3.5, 1.4, 0.2]]}', "instances[0] must contain only finite"),
    ],
    ids=["not-json", "empty", "not-object", "no-instances", "no-rows", "ragged", "width", "str"],
)
def test_malformed_input_gets_400_naming_the_problem(client, body, message):
    response = client.post("/predict", content=body, headers={"Content-Type": "application/json"})

    assert response.status_code == 400
    assert message in response.json()["error"]


def test_unknown_paths_and_wrong_methods_get_json_errors(client):
    missing = client.get("/nope")
    wrong_method = client.get("/predict")

    assert missing.status_code == 404
    assert "/nope" in missing.json()["error"]
    assert wrong_method.status_code == 405
    assert wrong_method.headers["allow"] == "POST"
    assert "POST" in wrong_method.json()["error"]
    assert client.get("/health").status_code == 200  # the connection is still usable


def test_it_refuses_a_body_over_10_mb_without_reading_it(server_url):
    port = int(server_url.rsplit(":", 1)[1])
    request = (
        b"POST /predict HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        b"Content-Length: 20000000\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(request)
        reply = connection.makefile("rb").read()  # the server closes the connection

    assert reply.startswith(b"HTTP/1.1 413 ")
    assert b"\r\nconnection: close\r\n" in reply.lower()  # header names have no case
    assert b"limit" in reply


def test_metrics_count_predictions_errors_and_latency(client):
    ok = 'model_server_requests_total{path="/predict",status="200"}'
    bad = 'model_server_requests_total{path="/predict",status="400"}'
    count = "model_server_request_duration_seconds_count"
    before = read_metrics(client)

    sample = iris_artifact()[3]
    for _ in range(3):
        assert client.post("/predict", json={"instances": sample}).status_code == 200
    assert client.post("/predict", json={"rows": sample}).status_code == 400
    after = read_metrics(client)

    assert after.get(ok, 0) - before.get(ok, 0) == 3
    assert after.get(bad, 0) - before.get(bad, 0) == 1
    assert after[count] - before.get(count, 0) == 4
    assert after["model_server_errors_total"] - before["model_server_errors_total"] == 1
    assert after[f'model_server_info{{model="{MODEL}",version="{VERSION}"}}'] == 1
    assert after["model_server_uptime_seconds"] > 0


def test_latency_histogram_buckets_are_cumulative_up_to_the_count(client):
    client.post("/predict", json={"instances": iris_artifact()[3]})
    samples = read_metrics(client)

    buckets = [
        (match.group(1), value)
        for series, value in samples.items()
        if (match := BUCKET.fullmatch(series))
    ]
    counts = [value for _, value in buckets]
    assert buckets[-1] == ("+Inf", samples["model_server_request_duration_seconds_count"])
    assert counts == sorted(counts)
    assert samples["model_server_request_duration_seconds_sum"] > 0


def test_the_server_does_not_import_django(tmp_path):
    # The server must keep serving when the portal restarts, and start fast.
    artifact = write_iris(tmp_path)
    code = (
        "import sys\n"
        "from deployments.serving import loading, server\n"
        f"loading.load_model({str(artifact)!r}, 'sklearn')\n"
        "assert not [m for m in sys.modules if m.split('.')[0] == 'django'], 'django imported'\n"
    )
    env = {key: value for key, value in os.environ.items() if key != "DJANGO_SETTINGS_MODULE"}

    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )

    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("content", "flavor", "message"),
    [
        (b"this is not a pickle", "sklearn", "Could not load the artifact"),
        (None, "sklearn", "No such file"),
        (b"", "tensorflow", "Unknown flavor 'tensorflow'"),
    ],
    ids=["corrupt", "missing", "flavor"],
)
def test_an_unusable_artifact_exits_with_status_2_and_says_why(tmp_path, content, flavor, message):
    artifact = tmp_path / "model.joblib"
    if content is not None:
        artifact.write_bytes(content)

    result = subprocess.run(
        server_command(artifact, free_port(), flavor),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 2
    assert message in result.stderr


def test_a_port_in_use_exits_with_status_3_and_says_why(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            server_command(write_iris(tmp_path), port),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )

    assert result.returncode == 3
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr


def test_sigterm_stops_it_with_exit_code_0(tmp_path):
    process, url = start_server(write_iris(tmp_path), tmp_path / "server.log")
    try:
        with httpx.Client(base_url=url) as keep_alive:  # an open connection must not block exit
            assert keep_alive.get("/health").status_code == 200
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=10) == 0
    finally:
        stop_server(process)
    assert "stopped" in (tmp_path / "server.log").read_text()


def test_metrics_count_predictions_per_class_with_prometheus_text(client):
    from prometheus_client.parser import text_string_to_metric_families

    def per_class():
        text = client.get("/metrics").text
        families = {f.name: f for f in text_string_to_metric_families(text)}
        return {
            s.labels["label"]: s.value
            for s in families["model_server_predictions"].samples
            if s.name == "model_server_predictions_total"
        }

    artifact, _, _, sample = iris_artifact()
    predicted = joblib.load(io.BytesIO(artifact)).predict(numpy.asarray(sample)).tolist()
    before = per_class()

    client.post("/predict", json={"instances": sample})
    after = per_class()

    for label in {str(p) for p in predicted}:
        expected = sum(1 for p in predicted if str(p) == label)
        assert after[label] - before.get(label, 0) == expected


def worker_pids(supervisor: int) -> set[int]:
    children = Path(f"/proc/{supervisor}/task/{supervisor}/children").read_text().split()
    return {int(pid) for pid in children}


def test_two_workers_serve_one_port_and_metrics_count_every_request(tmp_path):
    process, url = start_server(write_iris(tmp_path), tmp_path / "server.log", workers=2)
    sample = iris_artifact()[3]
    sent, answered_by = 0, set()
    try:
        workers = worker_pids(process.pid)
        before = read_metrics(httpx.Client(base_url=url, timeout=10))  # start_server's /health
        # A new connection each time, until both workers answered (the kernel hands each
        # connection to whichever worker accepts it first).
        while answered_by != workers and sent < 200:
            with httpx.Client(base_url=url, timeout=10) as fresh:
                assert fresh.post("/predict", json={"instances": sample}).status_code == 200
                answered_by.add(fresh.get("/health").json()["pid"])
            sent += 1
        with httpx.Client(base_url=url, timeout=10) as fresh:
            assert fresh.post("/predict", json={"rows": sample}).status_code == 400
        scrapes = []
        for _ in range(6):  # whichever worker answers the scrape counts them all
            with httpx.Client(base_url=url, timeout=10) as fresh:
                scrapes.append(read_metrics(fresh))
        shared = {path.parent for worker in workers for path in metric_files(worker)}
    finally:
        stop_server(process)

    assert len(workers) == 2 and answered_by == workers
    for samples in scrapes:
        assert samples['model_server_requests_total{path="/predict",status="200"}'] == sent
        assert samples['model_server_requests_total{path="/predict",status="400"}'] == 1
        health = 'model_server_requests_total{path="/health",status="200"}'
        assert samples[health] - before[health] == sent
        assert samples["model_server_request_duration_seconds_count"] == sent + 1
        assert samples["model_server_errors_total"] == 1
        per_class = [v for k, v in samples.items() if k.startswith("model_server_predictions")]
        assert sum(per_class) == sent * len(sample)
    assert process.returncode == 0
    assert len(shared) == 1 and not shared.pop().exists()  # the private directory is gone


def metric_files(pid: int) -> list[Path]:
    """The multiprocess metrics files a worker writes (prometheus-client names them so)."""
    return list(Path(tempfile.gettempdir()).glob(f"model-server-metrics-*/*_{pid}.db"))


def test_a_worker_that_dies_is_replaced_and_its_counts_kept(tmp_path):
    process, url = start_server(write_iris(tmp_path), tmp_path / "server.log", workers=2)
    sample = iris_artifact()[3]
    try:
        for _ in range(10):
            with httpx.Client(base_url=url, timeout=10) as fresh:
                assert fresh.post("/predict", json={"instances": sample}).status_code == 200
        killed = min(worker_pids(process.pid))
        os.kill(killed, signal.SIGKILL)
        replaced = wait_until(
            lambda: len(pids := worker_pids(process.pid)) == 2 and killed not in pids and pids,
            timeout=10,
        )
        samples = read_metrics(httpx.Client(base_url=url, timeout=10))
    finally:
        stop_server(process)

    assert killed not in replaced
    assert samples['model_server_requests_total{path="/predict",status="200"}'] == 10
    assert process.returncode == 0


ML_SET = (  # the server as requirements/ml.txt installs it: no httptools, no uvloop
    "import runpy, sys; sys.modules['httptools'] = sys.modules['uvloop'] = None; "
    "runpy.run_module('deployments.serving.server', run_name='__main__')"
)


def test_h11_on_asyncio_answers_without_waiting_for_delayed_acks(tmp_path):
    # Without TCP_NODELAY, a response written in two parts waits ~40 ms for the client's
    # delayed ACK: every keep-alive request took 44 ms on h11 before the listener named TCP.
    process, url = start_server(write_iris(tmp_path), tmp_path / "server.log",
                                module_as=["-c", ML_SET])  # fmt: skip
    try:
        with httpx.Client(base_url=url, timeout=10) as keep_alive:
            timings = []
            for _ in range(21):
                started = time.perf_counter()
                assert keep_alive.post("/predict", json={"instances": [[5.1, 3.5, 1.4, 0.2]]})
                timings.append(time.perf_counter() - started)
    finally:
        stop_server(process)

    assert sorted(timings)[10] < 0.025
