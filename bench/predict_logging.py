"""`/predict` latency with the prediction log on and off (`bench/monitoring.py --only
predict-logging`, and part of `make bench`).

Three real model servers of the same iris artifact on 127.0.0.1: logging off
(PREDICTION_SAMPLE_RATE=0), at the default 10 %, and every request (100 %, the worst case)
to a Redis stream. Keep-alive clients send one-row /predict requests to each in turn, in
alternating rounds so the machine's noise falls on all alike; the p95 of each is compared
with the one without logging. Target: at most 5 % apart at the p95 (the issue's bound).
Results in bench-results/predict-logging.json."""

import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
REDIS_URL = os.environ.get("BENCH_PREDICTION_LOG_URL", "redis://127.0.0.1:6379/12")
STREAM = "bench:predictions"
RATES = {"off": "0", "10 %": "0.1", "100 %": "1"}
TARGET_RATIO = 1.05
ROW = [5.9, 3.0, 4.2, 1.5]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start(artifact: Path, rate: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "PREDICTION_SAMPLE_RATE": rate, "PREDICTION_LOG_URL": REDIS_URL,
           "PREDICTION_LOG_STREAM": STREAM, "PREDICTION_LOG_MAXLEN": "100000"}  # fmt: skip
    process = subprocess.Popen(
        [sys.executable, "-m", "deployments.serving.server", "--artifact", str(artifact),
         "--flavor", "sklearn", "--model", "iris", "--version", "1", "--port", str(port),
         "--deployment-id", "1", "--version-id", "1"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return process, url
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit(f"the model server with rate {rate} did not start")


def one_round(url: str, clients: int, requests: int) -> list[float]:
    """`clients` keep-alive clients, `requests` each; every request's latency in ms."""
    timings: list[float] = []
    lock = threading.Lock()

    def client():
        mine = []
        with httpx.Client(timeout=10) as http:
            for _ in range(requests):
                started = time.perf_counter()
                response = http.post(f"{url}/predict", json={"instances": [ROW]})
                mine.append((time.perf_counter() - started) * 1000)
                assert response.status_code == 200, response.text
        with lock:
            timings.extend(mine)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return timings


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[94]


def run(rounds: int = 6, clients: int = 4, requests: int = 300) -> dict:
    import redis

    from deployments.demo import train_iris

    folder = Path(tempfile.mkdtemp(prefix="bench-predict-logging-"))
    artifact = folder / "model.joblib"
    artifact.write_bytes(train_iris()[0])
    stream = redis.Redis.from_url(REDIS_URL)
    stream.delete(STREAM)
    servers = {name: start(artifact, rate) for name, rate in RATES.items()}
    try:
        for _, url in servers.values():  # warm up: imports, first predictions, connections
            one_round(url, clients, 50)
        timings = {name: [] for name in servers}
        for round_number in range(rounds):
            order = list(servers) if round_number % 2 == 0 else list(reversed(servers))
            for name in order:
                timings[name] += one_round(servers[name][1], clients, requests)
        logged = stream.xlen(STREAM)
    finally:
        for process, _ in servers.values():
            process.terminate()
            process.wait(timeout=10)
        stream.delete(STREAM)
    base = p95(timings["off"])
    result = {
        "requests_each": len(timings["off"]), "clients": clients, "rounds": rounds,
        "stream_entries": logged,
        "servers": {name: {"p50_ms": round(statistics.median(t), 3), "p95_ms": round(p95(t), 3),
                           "p95_ratio_to_off": round(p95(t) / base, 3)}
                    for name, t in timings.items()},
    }  # fmt: skip
    result["passed"] = all(
        s["p95_ratio_to_off"] <= TARGET_RATIO for s in result["servers"].values()
    )
    return result


def print_result(result: dict) -> None:
    print(f"/predict with the prediction log on and off ({result['requests_each']} requests "
          f"each, {result['clients']} keep-alive clients, {result['rounds']} alternating "
          f"rounds; {result['stream_entries']} entries logged):")  # fmt: skip
    for name, s in result["servers"].items():
        print(f"  logging {name:>5}: p50 {s['p50_ms']:.3f} ms, p95 {s['p95_ms']:.3f} ms "
              f"(p95 = {s['p95_ratio_to_off']:.3f} x off)")  # fmt: skip
    verdict = "PASS" if result["passed"] else "FAIL"
    print(f"  target: p95 within {round((TARGET_RATIO - 1) * 100)} % of off: {verdict}")
