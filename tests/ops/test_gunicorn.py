"""Two web instances on one machine: each keeps its own control socket and its own metrics
folder, and `/metrics` sums the counts of every worker of its instance."""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ROOT, stop_process, subprocess_env, wait_until
from tests.test_outbox import free_port

TOKEN = "scrape-secret-for-gunicorn-tests"


def start_web(var_dir: Path, port: int) -> subprocess.Popen:
    env = {**subprocess_env(), "VAR_DIR": str(var_dir), "PORTAL_BIND": f"127.0.0.1:{port}"}
    env["METRICS_TOKEN"] = TOKEN
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    command = [
        *(sys.executable, "-m", "gunicorn", "mlops_portal.wsgi"),
        *("-c", "mlops_portal/gunicorn.conf.py", "--bind", f"127.0.0.1:{port}", "--workers", "2"),
    ]
    with open(var_dir / f"web-{port}.log", "w") as log:
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def healthz_requests(url) -> float:
    response = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200, response.text
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name == "portal_http_requests_total" and sample.labels["view"] == "healthz":
                return sample.value
    return 0.0


@pytest.mark.django_db(transaction=True)
def test_two_instances_keep_their_own_control_socket_and_sum_their_workers():
    var_dir = Path(tempfile.mkdtemp(prefix="gu-"))  # short: a socket path has 108 bytes
    ports = [free_port(), free_port()]
    webs = [start_web(var_dir, port) for port in ports]
    try:
        urls = [f"http://127.0.0.1:{port}" for port in ports]
        for url in urls:
            wait_until(lambda url=url: up(url), timeout=60)
        sockets = sorted(path.name for path in (var_dir / "run").iterdir())
        assert sockets == sorted(f"gunicorn-127.0.0.1-{port}.ctl" for port in ports)
        before = [healthz_requests(url) for url in urls]
        for _ in range(20):  # a new connection each: both workers answer some
            assert httpx.get(f"{urls[0]}/healthz").status_code == 200
        assert healthz_requests(urls[0]) == before[0] + 20
        assert healthz_requests(urls[1]) == before[1]
        folders = sorted(p.name for p in (var_dir / "prometheus").iterdir())
        assert folders == sorted(f"web-127.0.0.1-{port}" for port in ports)
    finally:
        for web in webs:
            stop_process(web)
        shutil.rmtree(var_dir, ignore_errors=True)
    assert not os.path.exists(var_dir)


def up(url) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
