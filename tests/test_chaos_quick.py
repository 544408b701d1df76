"""The short version of `make chaos`: every check of scripts/chaos.py, a few runs each,
against a live stack the script starts itself (private Redis, its own database on the
PostgreSQL server of DATABASE_URL, gunicorn, workers, beat, the outbox relay)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHECKS = {
    "kill -9 worker mid-deploy",
    "Redis restart during registrations",
    "parallel requests + approvals",
    "malformed-input corpus",
    "schemathesis",
}
ROW = re.compile(r"^\| (.+?) +\| +(\d+) \| +(\d+) \| +(\d+) \| +(\d+) \| +(\d+) \|$", re.M)


@pytest.mark.chaos
def test_it_survives_every_chaos_check_in_quick_mode():
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST")}
    run = subprocess.run(
        [sys.executable, "scripts/chaos.py", "--quick"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,  # minutes on a busy machine
    )
    output = run.stdout + run.stderr
    rows = {match[0]: [int(n) for n in match[1:]] for match in ROW.findall(run.stdout)}
    assert set(rows) == CHECKS, output[-6000:]
    for check, (runs, failures, lost, duplicated, server_errors) in rows.items():
        assert runs > 0, f"{check} ran nothing\n{output[-6000:]}"
        assert (failures, lost, duplicated, server_errors) == (0, 0, 0, 0), (
            f"{check}: {failures} failures, {lost} lost, {duplicated} duplicated, "
            f"{server_errors} 5xx\n{output[-6000:]}"
        )
    assert run.returncode == 0, output[-6000:]
