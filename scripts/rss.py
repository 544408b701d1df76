#!/usr/bin/env python
"""Resident memory (RSS) of each process type of the portal, started as the Procfile starts
them, after a warm-up; prints a Markdown table.

    .venv/bin/python scripts/rss.py                          # every process from .venv
    .venv/bin/python scripts/rss.py --web-python /tmp/web/bin/python
        # web, beat, notifier and relay from a virtualenv with only requirements/web.txt

Runs on a fresh SQLite database in a temporary VAR_DIR and the Redis of REDIS_URL
(default redis://127.0.0.1:6379/0; its DB is flushed), every server on a free port of
127.0.0.1; stops every process it started by pid. Warm-up: the web serves the login page,
/healthz and an API list 30 times each (both workers), beat sends its 5-second jobs for
15 s, which the worker runs; the model server loads an iris model and answers 20 predictions.
"""

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
VENV_PYTHON = str(ROOT / ".venv" / "bin" / "python")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found += [int(child) for child in text]
    return found


def wait_for(condition, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if condition():
                return
        time.sleep(0.3)
    raise SystemExit(f"timed out waiting for {condition}")


class Stack:
    """The portal's processes, each started from the Python of its requirement set."""

    def __init__(self, web_python: str, ml_python: str, var_dir: Path):
        self.web_python, self.ml_python, self.var_dir = web_python, ml_python, var_dir
        self.port = free_port()
        self.env = {
            **os.environ,
            "VAR_DIR": str(var_dir),
            "DATABASE_URL": f"sqlite:///{var_dir}/portal.sqlite3",
            "CELERY_BROKER_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
            "SECRET_KEY": "rss-measurement-only",
            "SECURE_SSL_REDIRECT": "false",
            "PORTAL_BIND": f"127.0.0.1:{self.port}",
            "PYTHONPATH": str(ROOT),
        }
        self.env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        self.env.pop("DJANGO_SETTINGS_MODULE", None)
        self.processes: dict[str, subprocess.Popen] = {}

    def run(self, python, *args):
        subprocess.run([python, *args], cwd=ROOT, env=self.env, check=True, capture_output=True)

    def start(self, name: str, python: str, *args: str) -> subprocess.Popen:
        with open(self.var_dir / f"{name}.log", "w") as log:  # the child keeps its own copy
            process = subprocess.Popen(
                [python, *args], cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        self.processes[name] = process
        return process

    def stop(self):
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


def measure(web_python: str, ml_python: str) -> list[tuple[str, float]]:
    var_dir = Path(tempfile.mkdtemp(prefix="rss-"))
    stack = Stack(web_python, ml_python, var_dir)
    celery = ("-m", "celery", "-A", "mlops_portal")
    try:
        stack.run(web_python, "manage.py", "migrate", "--noinput", "-v", "0")
        stack.run(web_python, "manage.py", "collectstatic", "--noinput", "-v", "0")
        stack.run(web_python, "manage.py", "shell", "-c", TOKEN_FOR_BOB)
        secret = (var_dir / "token").read_text()
        subprocess.run(
            ["redis-cli", "-u", stack.env["CELERY_BROKER_URL"], "flushdb"], capture_output=True
        )
        web = stack.start(
            "web", web_python, "-m", "gunicorn", "mlops_portal.wsgi",
            "-c", "mlops_portal/gunicorn.conf.py", "--bind", f"127.0.0.1:{stack.port}",
            "--workers", "2",
        )  # fmt: skip
        stack.start("worker", ml_python, *celery, "worker", "--queues", "default,deploy,probes",
                    "--concurrency", "2", "--hostname", "rss-worker@%h")  # fmt: skip
        stack.start("notifier", web_python, *celery, "worker", "--queues", "notifications",
                    "--concurrency", "2", "--hostname", "rss-notifier@%h")  # fmt: skip
        stack.start("beat", web_python, *celery, "beat", "--scheduler",
                    "django_celery_beat.schedulers:DatabaseScheduler", "--pidfile=",
                    "-s", str(var_dir / "beat-schedule"))  # fmt: skip
        stack.start("relay", web_python, "manage.py", "relay_outbox")
        model_port = free_port()
        artifact = var_dir / "iris.joblib"
        stack.run(ml_python, "-c", TRAIN_IRIS, str(artifact))
        server = stack.start("model server", ml_python, "-m", "deployments.serving.server",
                             "--artifact", str(artifact), "--flavor", "sklearn", "--model",
                             "iris", "--version", "1", "--port", str(model_port))  # fmt: skip
        url = f"http://127.0.0.1:{stack.port}"
        wait_for(lambda: httpx.get(f"{url}/healthz").status_code == 200)
        headers = {"Authorization": f"Token {secret}"}
        for _ in range(30):  # a new connection each time: both workers serve some
            httpx.get(f"{url}/login/")
            httpx.get(f"{url}/healthz")
            assert httpx.get(f"{url}/api/v1/models/", headers=headers).status_code == 200
        model_url = f"http://127.0.0.1:{model_port}"
        wait_for(lambda: httpx.get(f"{model_url}/healthz").status_code < 500)
        for _ in range(20):
            httpx.post(f"{model_url}/predict", json={"instances": [[5.1, 3.5, 1.4, 0.2]]})
        time.sleep(15)  # beat sends its 5-second jobs; the worker and notifier run theirs
        for name, process in stack.processes.items():
            if process.poll() is not None:
                raise SystemExit(f"{name} exited:\n{(var_dir / f'{name}.log').read_text()}")
        rows = [("web: gunicorn master", rss_mb(web.pid))]
        rows += [("web: each worker (max)", max(rss_mb(pid) for pid in children(web.pid)))]
        for name in ("worker", "notifier"):
            pid = stack.processes[name].pid
            rows.append((f"{name}: main", rss_mb(pid)))
            rows.append((f"{name}: each pool process (max)", max(map(rss_mb, children(pid)))))
        rows += [(name, rss_mb(stack.processes[name].pid)) for name in ("beat", "relay")]
        rows.append(("model server (iris, sklearn)", rss_mb(server.pid)))
        return rows
    finally:
        stack.stop()


TOKEN_FOR_BOB = """
from django.contrib.auth.models import Group, User
from mlops_portal.core.roles import Role
from mlops_portal.core import tokens
import os
bob = User.objects.create_user("bob", password="rss-only")
bob.groups.add(Group.objects.get_or_create(name=Role.MLOPS_ENGINEER)[0])
_, secret = tokens.create_token(bob, "rss")
open(os.path.join(os.environ["VAR_DIR"], "token"), "w").write(secret)
"""

TRAIN_IRIS = """
import sys, joblib
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
x, y = load_iris(return_X_y=True)
joblib.dump(LogisticRegression(max_iter=500).fit(x, y), sys.argv[1])
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--web-python", default=VENV_PYTHON,
                        help="Python of web, beat, notifier and relay")  # fmt: skip
    parser.add_argument("--ml-python", default=VENV_PYTHON,
                        help="Python of the worker and the model server")  # fmt: skip
    args = parser.parse_args()
    rows = measure(args.web_python, args.ml_python)
    print(f"web set from {args.web_python}, ML set from {args.ml_python}\n")
    print("| process | RSS (MB) |\n| --- | ---: |")
    for name, mb in rows:
        print(f"| {name} | {mb:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
