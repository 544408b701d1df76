"""The `mlops` CLI run as a subprocess, as a pipeline runs it, against a live portal: the
portal's gunicorn (`portal_gunicorn`), the real Celery worker on Redis, PostgreSQL and the
local backend. Every test using `mlops` is `worker` and `django_db(transaction=True)`."""

import itertools
import json
import os
import subprocess
import sys
from typing import NamedTuple

import pytest

from deployments import services
from mlops_portal.core import tokens
from tests.conftest import ROOT, stop_model_servers
from tests.factories import register_iris_version, validated


class Outcome(NamedTuple):
    code: int
    stdout: str
    stderr: str

    def json(self):
        return json.loads(self.stdout)


def cli_environment(url: str, token: str, **extra) -> dict:
    """What a pipeline gives the CLI: its URL and token, and nothing of the portal's."""
    return {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": str(ROOT),  # what the `mlops` launcher sets (Makefile)
        "MLOPS_URL": url,
        "MLOPS_TOKEN": token,
        "MLOPS_POLL_SECONDS": "0.2",
        **extra,
    }


MLOPS = [sys.executable, "-P", "-m", "mlops_cli"]


@pytest.fixture(autouse=True)
def stop_model_servers_after_each_test():
    yield
    stop_model_servers()


@pytest.fixture
def token_of():
    made = itertools.count(1)

    def make(user, **options) -> str:
        return tokens.create_token(user, f"cli-{user.username}-{next(made)}", **options)[1]

    return make


@pytest.fixture
def mlops(portal_gunicorn, tmp_path, token_of, alice):
    """Run `mlops ARGS…` as Alice (or `token=`), in a temporary folder; return its Outcome.
    With `background=True`, return the running Popen instead."""

    def run(*args, token=None, url=None, background=False, timeout=120, **env):
        url = portal_gunicorn.url if url is None else url
        environment = cli_environment(url, token_of(alice) if token is None else token, **env)
        if background:
            return subprocess.Popen(
                [*MLOPS, *args], cwd=tmp_path, env=environment, text=True,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            )  # fmt: skip
        done = subprocess.run(
            [*MLOPS, *args], cwd=tmp_path, env=environment, capture_output=True, text=True,
            timeout=timeout,
        )  # fmt: skip
        return Outcome(done.returncode, done.stdout, done.stderr)

    return run


@pytest.fixture
def iris(alice):
    return services.create_model(alice, name="iris", team="botany")


@pytest.fixture
def ready_version(alice, iris):
    return validated(register_iris_version(alice, iris))


@pytest.fixture
def staging(bob):
    return services.create_target(bob, name="iris-staging", environment="staging")


@pytest.fixture
def production(bob):
    return services.create_target(bob, name="iris-production", environment="production")
