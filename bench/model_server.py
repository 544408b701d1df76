"""The model server on uvicorn + Starlette against the http.server one it replaced (part of
`make bench`).

Real servers on 127.0.0.1 serving one iris LogisticRegression (deployments.demo.train_iris),
one worker process each:

    old           bench/baseline_model_server.py: http.server, a thread per connection
    new           deployments/serving/server.py as every set installs it (httptools, uvloop)
    new-h11       the same with httptools and uvloop hidden: h11 on asyncio, uvicorn's
                  pure-Python fallback: what the C parts are worth
    new-threads   the dev-set server predicting in Starlette's threadpool instead of
                  inline (INLINE_BODY_BYTES = -1): why app.answer predicts inline

A load generator in its own process (asyncio + aiohttp, keep-alive, one connection per
client) sends one-row POST /predict requests for --seconds with 8 and then 64 concurrent
clients, to each server in turn, in alternating rounds so the machine's noise falls on all
alike. Reported per server and concurrency: requests/s, p95 latency, and the server's CPU
seconds (utime + stime from /proc, its threads and child processes included) per request,
turned into requests per CPU-second ("per core"): the fair figure on a shared, noisy
machine, where wall-clock throughput mostly measures the neighbours. PASS when the new
server (both parsers) serves at least as many requests per CPU-second as the old one at each
concurrency. Results in bench-results/model_server.json.

    .venv/bin/python bench/model_server.py [--rounds 3] [--seconds 4]
"""

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench-results"
BODY = json.dumps({"instances": [[5.9, 3.0, 4.2, 1.5]]}).encode()
CONCURRENCY = (8, 64)
SERVER_ARGS = ["--flavor", "sklearn", "--model", "iris", "--version", "1"]
HIDE_FAST_PARSERS = (
    "import runpy, sys; sys.modules['httptools'] = sys.modules['uvloop'] = None; "
    "sys.argv[0] = 'server'; runpy.run_module('deployments.serving.server', run_name='__main__')"
)
THREADPOOL = (
    "import runpy, sys; import deployments.serving.app as app; app.INLINE_BODY_BYTES = -1; "
    "sys.argv[0] = 'server'; runpy.run_module('deployments.serving.server', run_name='__main__')"
)
SERVERS = {
    "old": ["-m", "bench.baseline_model_server"],
    "new": ["-m", "deployments.serving.server"],
    "new-h11": ["-c", HIDE_FAST_PARSERS],
    "new-threads": ["-c", THREADPOOL],
}
TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start(name: str, artifact: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [sys.executable, *SERVERS[name], "--artifact", str(artifact), *SERVER_ARGS,
               "--port", str(port)]  # fmt: skip
    env = {**os.environ, "PREDICTION_SAMPLE_RATE": "0"}
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return process, url
        except OSError:
            if process.poll() is not None:
                status = process.returncode
                raise SystemExit(f"the {name} server exited with status {status}") from None
            time.sleep(0.1)
    process.kill()
    raise SystemExit(f"the {name} server did not start")


def cpu_seconds(pid: int) -> float:
    """utime + stime of `pid` (all its threads) and of its live children."""
    total = 0.0
    for each in [pid, *children(pid)]:
        try:
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / TICKS
    return total


def children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def drive(url: str, clients: int, seconds: float) -> dict:
    """Run the load generator in its own process; its requests and latencies."""
    result = subprocess.run(
        [sys.executable, __file__, "--drive", url, str(clients), str(seconds)],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    if result.returncode:
        raise SystemExit(f"the load generator failed on {url}:\n{result.stderr}")
    return json.loads(result.stdout)


def one_round(process: subprocess.Popen, url: str, clients: int, seconds: float) -> dict:
    cpu = cpu_seconds(process.pid)
    load = drive(url, clients, seconds)
    load["cpu"] = cpu_seconds(process.pid) - cpu
    return load


def summary(rounds: list[dict]) -> dict:
    requests = sum(r["requests"] for r in rounds)
    latencies = [ms for r in rounds for ms in r["latencies_ms"]]
    cpu = sum(r["cpu"] for r in rounds)
    return {
        "requests": requests,
        "errors": sum(r["errors"] for r in rounds),
        "requests_per_second": round(requests / sum(r["wall"] for r in rounds), 1),
        "p50_ms": round(statistics.median(latencies), 2),
        "p95_ms": round(statistics.quantiles(latencies, n=100)[94], 2),
        "cpu_ms_per_request": round(cpu / requests * 1000, 4),
        "requests_per_cpu_second": round(requests / cpu, 1),
    }


def run(rounds: int, seconds: float, names: list[str]) -> dict:
    from deployments.demo import train_iris

    with tempfile.TemporaryDirectory(prefix="bench-model-server-") as folder:
        artifact = Path(folder) / "model.joblib"
        artifact.write_bytes(train_iris()[0])
        return measure(rounds, seconds, names, artifact)


def measure(rounds: int, seconds: float, names: list[str], artifact: Path) -> dict:
    servers = {name: start(name, artifact) for name in names}
    results: dict = {"rounds": rounds, "seconds_per_round": seconds, "servers": {}}
    try:
        for process, url in servers.values():  # warm up: imports, first predictions
            one_round(process, url, 8, 1.0)
        for clients in CONCURRENCY:
            measured = {name: [] for name in names}
            for round_number in range(rounds):
                order = names if round_number % 2 == 0 else list(reversed(names))
                for name in order:
                    measured[name].append(one_round(*servers[name], clients, seconds))
            for name in names:
                results["servers"].setdefault(name, {})[str(clients)] = summary(measured[name])
    finally:
        for process, _ in servers.values():
            process.terminate()
            process.wait(timeout=15)
    old = results["servers"]["old"]
    results["new_to_old_per_core"] = {
        name: {c: round(s[c]["requests_per_cpu_second"] / old[c]["requests_per_cpu_second"], 3)
               for c in s}
        for name, s in results["servers"].items() if name in ("new", "new-h11")
    }  # fmt: skip
    per_core = results["new_to_old_per_core"].values()
    ratios = [ratio for by_clients in per_core for ratio in by_clients.values()]
    results["passed"] = all(ratio >= 1 for ratio in ratios)
    return results


def print_result(result: dict) -> None:
    print(f"Model server, one-row POST /predict (iris), {result['rounds']} alternating rounds "
          f"of {result['seconds_per_round']} s per server and concurrency:")  # fmt: skip
    for clients in map(str, CONCURRENCY):
        print(f"  {clients} keep-alive clients:")
        for name, by_clients in result["servers"].items():
            s = by_clients[clients]
            print(f"    {name:<13} {s['requests_per_second']:>7.0f} req/s  p95 {s['p95_ms']:>7.2f}"
                  f" ms  {s['cpu_ms_per_request']:.3f} ms CPU/request  "
                  f"{s['requests_per_cpu_second']:>6.0f} req per CPU-second"
                  + (f"  ({s['errors']} errors)" if s["errors"] else ""))  # fmt: skip
    for name, ratios in result["new_to_old_per_core"].items():
        shown = ", ".join(f"{ratio:.2f} x at {c}" for c, ratio in ratios.items())
        print(f"  {name} / old, requests per CPU-second: {shown}")
    print(f"  target: new >= old per core: {'PASS' if result['passed'] else 'FAIL'}")


# --- the load generator (its own process) -----------------------------------------------


async def generate(url: str, clients: int, seconds: float) -> dict:
    import aiohttp

    latencies: list[float] = []
    errors = 0
    connector = aiohttp.TCPConnector(limit=clients, force_close=False)
    headers = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession(connector=connector) as session:

        async def client(stop: float):
            nonlocal errors
            while time.perf_counter() < stop:
                started = time.perf_counter()
                try:
                    async with session.post(f"{url}/predict", data=BODY,
                                            headers=headers) as answer:  # fmt: skip
                        await answer.read()
                        ok = answer.status == 200
                except (aiohttp.ClientError, OSError):
                    # A dropped connection is the server's failure to report, not the end
                    # of the measurement.
                    ok = False
                errors += not ok
                latencies.append((time.perf_counter() - started) * 1000)

        began = time.perf_counter()
        await asyncio.gather(*(client(began + seconds) for _ in range(clients)))
        wall = time.perf_counter() - began
    return {"requests": len(latencies), "errors": errors, "wall": wall,
            "latencies_ms": latencies}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--servers", default=",".join(SERVERS),
                        help="which of: " + ", ".join(SERVERS))  # fmt: skip
    parser.add_argument("--drive", nargs=3, metavar=("URL", "CLIENTS", "SECONDS"),
                        help=argparse.SUPPRESS)  # fmt: skip
    args = parser.parse_args()
    if args.drive:
        url, clients, seconds = args.drive
        print(json.dumps(asyncio.run(generate(url, int(clients), float(seconds)))))
        return 0
    sys.path.insert(0, str(ROOT))
    names = [name.strip() for name in args.servers.split(",")]
    result = run(args.rounds, args.seconds, ["old", *[n for n in names if n != "old"]])
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / "model_server.json").write_text(json.dumps(result, indent=2))
    print_result(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
