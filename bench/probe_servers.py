"""Local model-server stand-ins for measuring the prober, and the prober's throughput.

`start_probe_servers(count)` runs `count` aiohttp servers on 127.0.0.1 (one port each) in a
*subprocess*, so the process that probes keeps a core to itself and the figure is the
prober's, not the servers'. Every server answers GET/HEAD /health (any query string) with a
small 200 over keep-alive, like a model server's health route, and GET /metrics with a
model server's metrics text (fixed, as after 1,000 predictions).

Run from the repository root: `.venv/bin/python bench/probe_servers.py [--servers 4]
[--sizes 1000 5000]` prints probes/s of `probe_all` alone (no database) for each size.
"""

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from deployments.serving.metrics import CONTENT_TYPE, Metrics  # noqa: E402
from monitoring.netpolicy import DEFAULT_ALLOWED, NetPolicy  # noqa: E402
from monitoring.probing import ProbeSpec, probe_all  # noqa: E402

START_TIMEOUT_S = 20.0


def start_probe_servers(count: int = 4) -> tuple[list[str], Callable[[], None]]:
    """Start `count` servers in a subprocess; return their base URLs
    ("http://127.0.0.1:<port>") and a function that stops them."""
    process = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--serve", str(count)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    # The child prints one JSON line with its ports once every server listens.
    line = read_line(process, START_TIMEOUT_S)
    ports = json.loads(line)["ports"]

    def stop() -> None:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stdout:
            process.stdout.close()

    return [f"http://127.0.0.1:{port}" for port in ports], stop


def read_line(process: subprocess.Popen, timeout: float) -> str:
    import selectors

    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            process.kill()
            raise RuntimeError(f"The probe servers did not start within {timeout} s.")
    line = process.stdout.readline()
    if not line:
        raise RuntimeError(f"The probe servers exited (code {process.wait()}).")
    return line


def serve(count: int) -> None:
    """The subprocess: `count` servers on one event loop, until terminated."""
    from aiohttp import web

    body = b'{"status": "ok"}'
    metrics = metrics_text()

    async def health(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    async def scrape(request: web.Request) -> web.Response:
        return web.Response(body=metrics, headers={"Content-Type": CONTENT_TYPE})

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/health", health)  # also answers HEAD
        app.router.add_get("/metrics", scrape)
        runner = web.AppRunner(app, access_log=None, handle_signals=True)
        await runner.setup()
        for _ in range(count):
            await web.TCPSite(runner, "127.0.0.1", 0, backlog=1024).start()
        ports = [address[1] for address in runner.addresses]
        print(json.dumps({"ports": ports}), flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass


def metrics_text() -> bytes:
    """What a busy model server's /metrics says: the real server's metrics after 1,000
    predictions (2 % failing) over three classes."""
    metrics = Metrics("bench", 1)
    for i in range(1000):
        metrics.observe("/predict", 500 if i % 50 == 0 else 200, 0.001 + (i % 40) / 1000)
        metrics.observe("/health", 200, 0.0002)
    metrics.count_predictions([i % 3 for i in range(1000)])
    return metrics.render()


def specs_for(base_urls: list[str], n: int) -> list[ProbeSpec]:
    """n probes with unique paths, spread round-robin over the servers."""
    return [
        ProbeSpec(check_id=i, url=f"{base_urls[i % len(base_urls)]}/health?i={i}", timeout=5.0)
        for i in range(n)
    ]


def measure(base_urls: list[str], n: int, concurrency: int = 200) -> dict:
    """Run probe_all over n probes once; return the count, failures, seconds and probes/s."""
    policy = NetPolicy.from_setting(DEFAULT_ALLOWED)
    specs = specs_for(base_urls, n)
    started = time.perf_counter()
    cpu_started = time.process_time()
    outcomes = asyncio.run(probe_all(specs, policy, concurrency))
    seconds = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    failed = [o for o in outcomes if not o.ok]
    return {
        "probes": n,
        "failed": len(failed),
        "first_error": failed[0].error if failed else "",
        "seconds": round(seconds, 3),
        "probes_per_s": round(n / seconds),
        "client_cpu_ms_per_probe": round(cpu * 1000 / n, 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)  # the subprocess
    parser.add_argument("--servers", type=int, default=4)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3, help="runs per size; the best counts")
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return 0

    base_urls, stop = start_probe_servers(args.servers)
    try:
        measure(base_urls, 200, args.concurrency)  # warm-up: imports, first connections
        print(f"{args.servers} servers in a subprocess; probe_all alone, {os.cpu_count()} cores")
        for n in args.sizes:
            runs = [measure(base_urls, n, args.concurrency) for _ in range(args.repeat)]
            best = max(runs, key=lambda r: r["probes_per_s"])
            print(
                f"{n:>6} probes: {best['probes_per_s']:>6} probes/s (best of {args.repeat}:"
                f" {', '.join(str(r['probes_per_s']) for r in runs)}),"
                f" {best['seconds']} s, client CPU {best['client_cpu_ms_per_probe']} ms/probe,"
                f" {best['failed']} failed {best['first_error']}"
            )
    finally:
        stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
