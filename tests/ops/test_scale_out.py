"""Scale-out, shown: `make scale-check` (scripts/scale_check.py) against a live stack it
starts itself: two gunicorn instances with their own control sockets, two Celery workers,
the notifier, one beat and the relay, on PostgreSQL (a fresh database on the server of
DATABASE_URL) and a private Redis."""

import os
import re
import subprocess
import sys

import pytest
from django.core.cache import cache

from mlops_portal.celery import BEAT_LOCK_KEY, beat_owner, release_beat_lock, take_beat_lock
from tests.conftest import ROOT

CHECKS = {
    "control sockets",
    "registrations, exactly once",
    "deploys, exactly once",
    "one approval wins",
    "web instance killed (-9) and restarted",
    "one beat",
}
LINE = re.compile(r"^  (PASS|FAIL)  (.+?): ", re.M)


@pytest.mark.scale
def test_two_web_instances_two_workers_and_one_beat_lose_and_repeat_nothing():
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST")}
    run = subprocess.run(
        [sys.executable, "scripts/scale_check.py"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    output = run.stdout + run.stderr
    verdicts = {check: verdict for verdict, check in LINE.findall(run.stdout)}
    assert set(verdicts) == CHECKS, output[-6000:]
    assert set(verdicts.values()) == {"PASS"}, output[-6000:]
    assert run.returncode == 0 and "Result: PASS" in run.stdout, output[-6000:]


def test_a_second_beat_refuses_to_start_while_one_holds_the_lock():
    """What the scale check shows across processes, on the cache itself: the lock names the
    beat holding it, and is free again once that beat let it go."""
    cache.set(BEAT_LOCK_KEY, "web-2:4242", 30)
    with pytest.raises(SystemExit, match=r"Another beat is running \(web-2:4242\)"):
        take_beat_lock()
    cache.delete(BEAT_LOCK_KEY)
    take_beat_lock()
    assert cache.get(BEAT_LOCK_KEY) == beat_owner()
    release_beat_lock()
    assert cache.get(BEAT_LOCK_KEY) is None
