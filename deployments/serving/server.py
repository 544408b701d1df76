"""The model server that the "local" deploy backend starts, one per deployment.

    python -m deployments.serving.server --artifact PATH --flavor sklearn|mlflow \\
        --model NAME --version N --port PORT [--host 127.0.0.1] [--access-log] \\
        [--deployment-id ID --version-id ID] [--workers N]

It loads the artifact once (a joblib pickle, or an MLflow model folder with mlflow.pyfunc),
listens, then answers over HTTP with uvicorn running the Starlette application of app.py
(/health, /predict, /metrics, /v2/...; see there).

With --workers N above 1, this first process forks N worker processes after loading the
model and opening the port: each runs its own uvicorn on the shared listening socket (the
kernel spreads the connections), and the model's memory is shared until written. Their
metrics are summed through files in a private temporary directory (metrics.py), removed on
exit. This process only supervises: it restarts a worker that dies and, on SIGTERM or
SIGINT, stops them all. A worker whose supervisor is gone (SIGKILL) stops within 0.1 s.

It deliberately imports neither Django nor anything of the portal but deployments.serving,
so it starts fast and keeps serving while the portal and the worker restart.

Exit status: 0 after SIGTERM or SIGINT, 2 when the artifact cannot be loaded (or the arguments
are wrong), 3 when it cannot listen on the address; the reason is printed on stderr.
"""

import argparse
import os
import shutil
import signal
import socket
import sys
import tempfile
import time

import uvicorn

from deployments.serving import app, logs, metrics, prediction_log
from deployments.serving.loading import ArtifactError, load_model

log = logs.configure()

EXIT_ARTIFACT = 2
EXIT_LISTEN = 3
# Idle keep-alive connections are closed after this long (clients' pools reuse them).
IDLE_TIMEOUT_SECONDS = 60
# On SIGTERM: requests in flight get this long, then the prediction log FLUSH_SECONDS; the
# local backend kills a server still running 5 s after its SIGTERM.
GRACE_SECONDS = 2
FLUSH_SECONDS = 2.0
# A worker that died is replaced, but not more often than this (a crash loop stays slow).
RESTART_INTERVAL_SECONDS = 1.0
BACKLOG = 2048


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m deployments.serving.server",
        description="Serve one model artifact over HTTP (/health, /predict, /metrics, /v2).",
    )
    parser.add_argument("--artifact", required=True, help="path of the model artifact")
    parser.add_argument("--flavor", required=True, help="how to load it: sklearn or mlflow")
    parser.add_argument("--model", required=True, help="registered model name, for reports")
    parser.add_argument("--version", required=True, type=int, help="model version number")
    parser.add_argument("--port", required=True, type=int, help="TCP port; 0 picks a free one")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--access-log", action="store_true", help="log every request")
    parser.add_argument("--deployment-id", type=int, help="the portal's deployment, for the log")
    parser.add_argument("--version-id", type=int, help="the portal's model version, for the log")
    parser.add_argument("--workers", type=worker_count, default=1,
                        help="processes serving the port (default 1)")  # fmt: skip
    return parser.parse_args(argv)


def worker_count(text: str) -> int:
    try:
        count = int(text)
    except ValueError:
        count = 0
    if not 1 <= count <= 64:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of workers from 1 to 64")
    return count


def listen(host: str, port: int) -> socket.socket:
    """The listening socket, opened here (not by uvicorn) so that a refusal has its own exit
    status, and so that forked workers share it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named (socket.create_server leaves 0): asyncio sets TCP_NODELAY only on
    # connections of such a socket, and without it each response written in two parts (as
    # h11 does) waits ~40 ms for the client's delayed ACK (Nagle's algorithm).
    listener = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        listener.bind((host, port))
        listener.listen(BACKLOG)
    except OSError:
        listener.close()
        raise
    return listener


def main(argv=None) -> int:
    """Load the model, serve until SIGTERM/SIGINT; return the process exit status."""
    args = parse_args(argv)
    try:
        model = load_model(args.artifact, args.flavor)
    except ArtifactError as exc:
        log.error(f"model server: cannot load {args.artifact}: {exc}")
        return EXIT_ARTIFACT
    try:
        listener = listen(args.host, args.port)
    except OSError as exc:
        log.error(f"model server: cannot listen on {args.host}:{args.port}: {exc}")
        return EXIT_LISTEN
    port = listener.getsockname()[1]
    log.info(
        f"model server: serving {args.model} v{args.version} on http://{args.host}:{port} "
        f"(pid {os.getpid()}, {args.workers} worker{'s' if args.workers > 1 else ''})",
        model=args.model,
        version=args.version,
        port=port,
    )
    started = time.monotonic()
    if args.workers == 1:
        serve(listener, model, args, started)
    else:
        supervise(listener, model, args, started)
    log.info("model server: stopped")
    return 0


def serve(listener: socket.socket, model, args, started: float, parent: int | None = None):
    """Serve on `listener` in this process until SIGTERM/SIGINT (or until `parent`, the
    supervisor's pid, is gone); then flush the prediction log."""
    served = app.Served(model, args.model, args.version,
                        metrics.Metrics(args.model, args.version, started=started),
                        access_log=args.access_log, started=started)  # fmt: skip
    served.prediction_log = prediction_log.from_environment(
        os.environ, args.deployment_id, args.version_id, served.metrics.count_logged
    )
    config = uvicorn.Config(
        app.build(served),
        # httptools and uvloop (requirements/ml.in names them); h11 and asyncio if missing.
        http="auto",
        loop="auto",
        interface="asgi3",
        lifespan="off",
        ws="none",
        log_config=None,  # our own log lines (logs.py); uvicorn's warnings forwarded there
        access_log=False,  # app.Observed writes it, with the caller's X-Request-ID
        server_header=False,
        timeout_keep_alive=IDLE_TIMEOUT_SECONDS,
        timeout_graceful_shutdown=GRACE_SECONDS,
    )
    logs.forward("uvicorn.error", log)
    server = Server(config, parent)
    # uvicorn handles SIGTERM/SIGINT while it serves, then restores the previous handlers and
    # raises the signal again: with the default ones, that would kill this process.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: None)
    try:
        server.run(sockets=[listener])
    finally:
        served.prediction_log.flush(timeout=FLUSH_SECONDS)  # what was sampled before the stop


class Server(uvicorn.Server):
    """uvicorn's server, which in a worker also stops when its supervisor is gone."""

    def __init__(self, config: uvicorn.Config, parent: int | None = None):
        super().__init__(config)
        self.parent = parent

    def handle_exit(self, sig, frame) -> None:
        if not self.should_exit:
            log.info(f"model server: stopping on signal {sig}")
        super().handle_exit(sig, frame)

    async def on_tick(self, counter: int) -> bool:  # every 0.1 s
        if self.parent is not None and os.getppid() != self.parent:
            self.should_exit = True
        return await super().on_tick(counter)


def supervise(listener: socket.socket, model, args, started: float) -> None:
    """Fork args.workers workers serving `listener`, keep that many until SIGTERM/SIGINT,
    then stop them; their shared metrics live in a temporary directory removed at the end."""
    directory = tempfile.mkdtemp(prefix="model-server-metrics-")
    metrics.share_between_processes(directory)
    supervisor_pid = os.getpid()
    supervisor = Supervisor(lambda: serve(listener, model, args, started, supervisor_pid))
    try:
        supervisor.run(args.workers)
    finally:
        listener.close()
        shutil.rmtree(directory, ignore_errors=True)


class Supervisor:
    """Keeps `count` forked workers running `work()` until told to stop."""

    def __init__(self, work):
        self.work = work
        self.workers: dict[int, float] = {}  # pid -> when it was started
        self.stopping = False

    def run(self, count: int) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self.stop)
        for _ in range(count):
            self.start_worker()
        restarts: list[float] = []  # when to start a replacement
        while not self.stopping:
            time.sleep(0.1)
            for pid, status, since in self.reap():
                log.error(f"model server: worker {pid} exited ({describe(status)}); restarting")
                restarts.append(since + RESTART_INTERVAL_SECONDS)
            due = [when for when in restarts if when <= time.monotonic()]
            for when in due:
                restarts.remove(when)
                self.start_worker()
        self.stop_workers()

    def stop(self, signum, frame) -> None:
        self.stopping = True

    def start_worker(self) -> None:
        pid = os.fork()
        if pid:
            self.workers[pid] = time.monotonic()
            return
        status = 1
        try:
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, signal.SIG_DFL)
            self.work()
            status = 0
        except BaseException:
            log.exception("model server: worker failed")
        finally:
            sys.stderr.flush()
            os._exit(status)  # never return into the supervisor's loop

    def reap(self) -> list[tuple[int, int, float]]:
        """The workers that exited: (pid, wait status, when it had started)."""
        exited = []
        while self.workers:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if not pid:
                break
            exited.append((pid, status, self.workers.pop(pid, time.monotonic())))
        return exited

    def stop_workers(self) -> None:
        for pid in self.workers:
            signal_quietly(pid, signal.SIGTERM)
        deadline = time.monotonic() + GRACE_SECONDS + FLUSH_SECONDS + 0.5
        while self.workers and time.monotonic() < deadline:
            self.reap()
            time.sleep(0.05)
        for pid in self.workers:  # still there: stuck
            signal_quietly(pid, signal.SIGKILL)
            os.waitpid(pid, 0)


def signal_quietly(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"signal {os.WTERMSIG(status)}"
    return f"status {os.waitstatus_to_exitcode(status)}"


if __name__ == "__main__":
    status = main()
    # Everything is written (the prediction log flushed, stderr below): skip the
    # interpreter's teardown of numpy, scikit-learn and the rest, ~0.3 s that the local
    # backend, and a redeploy behind it, would spend waiting for this pid to be gone.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
