"""The example pipelines of docs/ci/ run against a live portal: the steps are read from the
YAML files themselves (every script but the one installing the CLI, which the test puts on
the PATH instead), so the documentation cannot drift from what works."""

import json
import os
import shutil
import subprocess
import sys

import httpx
import pytest
import yaml

from deployments import services
from deployments.choices import DeploymentState, VersionStatus
from deployments.models import Deployment, ModelVersion
from tests.cli.conftest import cli_environment
from tests.conftest import ROOT

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

CI = ROOT / "docs" / "ci"


def github_steps() -> tuple[dict, list[str]]:
    """The workflow's literal env and its `run` steps, in order, but the install."""
    workflow = yaml.safe_load((CI / "github-actions.yml").read_text())
    (job,) = workflow["jobs"].values()
    steps = [
        step["run"] for step in job["steps"] if "run" in step and "pip install" not in step["run"]
    ]
    return workflow["env"], steps


def gitlab_steps() -> tuple[dict, list[str]]:
    """The variables and each job's script, in stage order (before_script installs)."""
    pipeline = yaml.safe_load((CI / "gitlab-ci.yml").read_text())
    jobs = [
        (pipeline["stages"].index(job["stage"]), "\n".join(job["script"]))
        for job in pipeline.values()
        if isinstance(job, dict) and "script" in job
    ]
    return pipeline["variables"], [script for _, script in sorted(jobs, key=lambda j: j[0])]


def tools(folder) -> str:
    """A PATH folder with `python` (this interpreter) and `mlops` (the Makefile's launcher,
    pointing at this checkout)."""
    folder.mkdir()
    (folder / "python").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    (folder / "mlops").write_text(
        f'#!/bin/sh\nPYTHONPATH="{ROOT}" exec "{sys.executable}" -P -m mlops_cli "$@"\n'
    )
    for tool in folder.iterdir():
        tool.chmod(0o755)
    return str(folder)


@pytest.mark.parametrize("pipeline", [github_steps, gitlab_steps], ids=["github", "gitlab"])
def test_the_pipeline_trains_registers_deploys_to_staging_and_requests_production(
    pipeline, portal_gunicorn, alice, bob, token_of, tmp_path
):
    services.create_model(alice, name="churn", team="growth")
    services.create_target(bob, name="churn-staging", environment="staging")
    services.create_target(bob, name="churn-production", environment="production")
    checkout = tmp_path / "checkout"
    (checkout / "docs" / "ci").mkdir(parents=True)
    shutil.copy(CI / "train.py", checkout / "docs" / "ci" / "train.py")

    variables, steps = pipeline()
    given = {name: value for name, value in variables.items() if "$" not in str(value)}
    env = {
        **given,
        **cli_environment(portal_gunicorn.url, token_of(alice)),
        "PATH": f"{tools(tmp_path / 'bin')}:{os.environ['PATH']}",
        "SOURCE_URL": "https://git.internal/ml/churn/commit/abc123",
    }
    for script in steps:
        done = subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
            cwd=checkout, env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, f"{script}\n--- stdout\n{done.stdout}\n--- {done.stderr}"

    version = ModelVersion.objects.get(model__name="churn")
    assert (version.number, version.status) == (1, VersionStatus.READY)
    assert version.source_url == "https://git.internal/ml/churn/commit/abc123"
    assert version.tags == ["ci"]
    staging = Deployment.objects.get(target__name="churn-staging")
    assert staging.state == DeploymentState.SUCCEEDED
    sample = json.loads((checkout / "build" / "sample_input.json").read_text())
    predicted = httpx.post(f"{staging.endpoint}/predict", json={"instances": sample}, timeout=10)
    assert predicted.status_code == 200
    production = Deployment.objects.get(target__name="churn-production")
    assert production.state == DeploymentState.REQUESTED  # an engineer approves it
    written = json.loads((checkout / "build" / "production.json").read_text())
    assert written["id"] == production.pk
