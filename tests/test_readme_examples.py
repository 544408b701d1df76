"""The README's curl examples, run as written with bash and curl against a live portal.

Only the host changes (the live gunicorn's port for `http://127.0.0.1:8000`). `curl` gets
`--fail-with-body`, so a 4xx or 5xx fails the block (as `set -e` and `pipefail` fail any other
step): an example that stops working fails this test instead of a reader's pipeline."""

import re
import subprocess

import pytest

from deployments import services as registry
from deployments.choices import VersionStatus
from deployments.models import Deployment, ModelVersion
from mlops_portal.core import tokens
from tests.conftest import ROOT
from tests.factories import iris_artifact, validated

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

README_HOST = "http://127.0.0.1:8000"
PRELUDE = 'set -euo pipefail\ncurl() { command curl --fail-with-body -sS "$@"; echo; }\n'


def readme_api_examples() -> list[str]:
    """The bash blocks of the README's REST API section, in order."""
    readme = (ROOT / "README.md").read_text()
    section = readme[
        readme.index("## REST API") : readme.index("\n## ", readme.index("## REST API") + 1)
    ]
    return re.findall(r"```bash\n(.*?)```", section, re.S)


def run_example(block: str, portal, secret: str, cwd) -> str:
    script = PRELUDE + block.replace(README_HOST, portal.url)
    done = subprocess.run(
        ["bash", "-c", script],
        cwd=cwd,
        env={"PATH": "/usr/bin:/bin", "PORTAL_TOKEN": secret},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, f"{block}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
    return done.stdout


def test_the_readme_curl_examples_work_as_written(portal_gunicorn, alice, bob, tmp_path):
    register, deploy = readme_api_examples()
    _, secret = tokens.create_token(alice, "readme")
    (tmp_path / "model.joblib").write_bytes(iris_artifact()[0])

    output = run_example(register, portal_gunicorn, secret, tmp_path)
    versions = ModelVersion.objects.filter(model__name="churn").order_by("number")
    assert [(v.number, bool(v.artifact), v.artifact_uri) for v in versions] == [
        (1, True, ""),
        (2, False, "https://artifacts.internal/churn/42/model.joblib"),
    ]
    assert '"version":1' in output.replace(" ", "")

    # What the README's reader waits for: the worker validates version 1, and an engineer
    # made the staging target.
    assert validated(versions[0]).status == VersionStatus.READY
    registry.create_target(bob, name="churn-staging", environment="staging")

    output = run_example(deploy, portal_gunicorn, secret, tmp_path)
    deployment = Deployment.objects.get()
    assert (deployment.version.number, deployment.target.name) == (1, "churn-staging")
    assert f'"id":{deployment.pk}' in output.replace(" ", "")
