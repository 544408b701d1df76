"""The requirement sets (requirements/*.in) and their hashed locks (*.txt, `make lock`).

web.txt is what a production web image installs: the web process, beat, the notifications
worker and the outbox relay must run without the ML stack, which only the Celery worker and
the model server need (ml.txt)."""

import re
import subprocess
import sys
import textwrap

import httpx
import pytest
from celery import Celery

from deployments.models import ModelVersion
from mlops_portal.core import tokens
from mlops_portal.models import Heartbeat
from tests.conftest import ROOT, stop_process, subprocess_env, wait_until
from tests.factories import iris_artifact
from tests.test_outbox import free_port

REQUIREMENTS = ROOT / "requirements"
# Import names of the ML stack (ml.in) and of what only it brings in.
ML_STACK = ("numpy", "pandas", "sklearn", "scipy", "mlflow", "lightgbm", "joblib", "pyarrow",
            "threadpoolctl")  # fmt: skip
ML_DISTRIBUTIONS = {"numpy", "pandas", "scikit-learn", "scipy", "mlflow-skinny", "lightgbm",
                    "joblib", "threadpoolctl"}  # fmt: skip


def pins(lock: str) -> dict[str, tuple[str, frozenset[str]]]:
    """{normalized name: (version, hashes)} of a lock file."""
    found = {}
    text = (REQUIREMENTS / lock).read_text()
    for block in re.split(r"\n(?=[A-Za-z0-9])", text):
        first = block.split(" ", 1)[0].strip()
        if "==" not in first:
            continue
        name, version = first.split("==")
        found[re.sub(r"[-_.]+", "-", name).lower()] = (
            version,
            frozenset(re.findall(r"--hash=sha256:([0-9a-f]{64})", block)),
        )
    return found


def direct_pins(requirement_set: str) -> dict[str, str]:
    """{normalized name: version} pinned in a .in file and the sets it includes (-r)."""
    found = {}
    for line in (REQUIREMENTS / requirement_set).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("-r "):
            found |= direct_pins(line[3:].strip())
        elif "==" in line:
            name, version = line.split("==")
            found[re.sub(r"[-_.]+", "-", name.split("[")[0]).lower()] = version.strip()
    return found


@pytest.mark.parametrize("requirement_set", ["web", "ml", "run", "dev", "pip", "mlflow-peer"])
def test_every_lock_pins_its_set_with_hashes(requirement_set):
    """Each .in's pins are in its lock at that version (`make lock` was run after the last
    edit), and every locked package carries at least one hash."""
    locked = pins(f"{requirement_set}.txt")
    for name, version in direct_pins(f"{requirement_set}.in").items():
        assert locked.get(name, ("missing",))[0] == version, f"{name}: run `make lock`"
    assert all(hashes for _, hashes in locked.values())


def test_the_sets_nest_and_agree_on_every_version_and_hash():
    web, ml, run, dev = (pins(f"{s}.txt") for s in ("web", "ml", "run", "dev"))
    for smaller, larger in ((web, ml), (ml, run), (run, dev)):
        assert {name: smaller[name] for name in smaller} == {name: larger[name] for name in smaller}
    assert not ML_DISTRIBUTIONS & web.keys()
    assert ML_DISTRIBUTIONS <= ml.keys()
    assert "honcho" not in ml and "honcho" in run  # only `make run` starts processes with it
    assert dev["python-dateutil"][0].startswith("2.")  # kubernetes needs dateutil 2


BLOCKER = """
import os, sys

BLOCKED = set(os.environ["ML_STACK"].split(","))


class NotInTheWebSet:
    \"\"\"Any import of the ML stack fails here, as it would where only web.txt is installed,
    and is written down, even if the code caught the ImportError.\"\"\"

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            with open(os.environ["ML_IMPORT_LOG"], "a") as log:
                log.write(f"{os.getpid()} {' '.join(sys.argv[:3])}: import {name}\\n")
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, NotInTheWebSet())
"""


@pytest.mark.django_db(transaction=True)
def test_web_beat_notifier_and_relay_run_without_the_ml_stack(tmp_path, alice):
    """The four processes started as in the Procfile, where the ML stack cannot be imported
    (a sitecustomize refuses it): the web answers pages and registers a version, beat sends
    its jobs, the notifier answers, the relay runs; none of them even tried an ML import."""
    (tmp_path / "sitecustomize.py").write_text(textwrap.dedent(BLOCKER))
    log = tmp_path / "ml-imports.log"
    port = free_port()
    env = {**subprocess_env(), "PYTHONPATH": f"{tmp_path}:{ROOT}", "ML_IMPORT_LOG": str(log),
           "ML_STACK": ",".join(ML_STACK), "VAR_DIR": str(tmp_path / "var"),
           "PORTAL_BIND": f"127.0.0.1:{port}"}  # fmt: skip
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    blocked = subprocess.run([sys.executable, "-c", "import numpy"], env=env, capture_output=True)
    assert blocked.returncode != 0 and log.read_text().strip()  # the blocker is in force
    log.write_text("")
    celery = (sys.executable, "-m", "celery", "-A", "mlops_portal")
    commands = {
        "web": [sys.executable, "-m", "gunicorn", "mlops_portal.wsgi", "-c",
                "mlops_portal/gunicorn.conf.py", "--bind", f"127.0.0.1:{port}", "--workers", "1"],
        "beat": [*celery, "beat", "--scheduler", "django_celery_beat.schedulers:DatabaseScheduler",
                 "--pidfile=", "-s", str(tmp_path / "beat-schedule")],
        "notifier": [*celery, "worker", "--queues", "notifications", "--concurrency", "1",
                     "--hostname", f"notifier-{port}@localhost", "--without-gossip",
                     "--without-mingle"],
        "relay": [sys.executable, "manage.py", "relay_outbox"],
    }  # fmt: skip
    processes = {}
    try:
        for name, command in commands.items():
            with open(tmp_path / f"{name}.log", "w") as out:
                processes[name] = subprocess.Popen(
                    command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
                )
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: _answers(f"{url}/healthz"), timeout=60)
        _, secret = tokens.create_token(alice, "web-set")
        api = httpx.Client(base_url=url, headers={"Authorization": f"Token {secret}"}, timeout=30)
        assert (
            api.post("/api/v1/models/", json={"name": "iris", "team": "botany"}).status_code == 201
        )
        artifact, _, _, sample = iris_artifact()
        registered = api.post(
            "/api/v1/models/iris/versions/",
            files={"artifact": ("model.joblib", artifact)},
            data={"sample_input": str(sample), "metrics": '{"accuracy": 0.9}'},
        )
        assert registered.status_code == 201, registered.text
        for path in (
            "/api/v1/models/",
            "/api/v1/models/iris/versions/1/",
            "/api/v1/deployments/",
            "/api/v1/incidents/",
            "/api/v1/search/?q=iris",
            "/api/v1/metrics/deployments/",
            "/api/v1/alert-rules/",  # the rules read drift figures: pandas must stay out
        ):
            assert api.get(path).status_code == 200, path
        assert ModelVersion.objects.filter(model__name="iris").count() == 1
        wait_until(lambda: Heartbeat.objects.filter(name="beat").exists(), timeout=60)
        control = Celery(broker=env["CELERY_BROKER_URL"])
        wait_until(lambda: control.control.ping([f"notifier-{port}@localhost"], timeout=1), 60)
        for name, process in processes.items():
            assert process.poll() is None, (
                f"{name} exited: {(tmp_path / f'{name}.log').read_text()}"
            )
    finally:
        for process in processes.values():
            stop_process(process)
    assert log.read_text() == ""


def _answers(url) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
