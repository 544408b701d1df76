"""`make run` serves the MLflow API on SQLite: the stock client's search filters must run
there too (PostgreSQL runs them in the rest of the suite)."""

import subprocess
import sys

from tests.conftest import ROOT, subprocess_env

SCRIPT = """
import django
django.setup()
from django.contrib.auth import get_user_model
from django.core.management import call_command
from deployments.mlflow_api.search import models_filter, parse_filter
from deployments.models import RegisteredModel

call_command("migrate", verbosity=0)
owner = get_user_model().objects.create(username="alice")
for name, tags in [
    ("plain", {}),
    ("prompt", {"mlflow.prompt.is_prompt": "true"}),
    ("not-prompt", {"mlflow.prompt.is_prompt": "false", "team": "risk"}),
]:
    RegisteredModel.objects.create(name=name, owner=owner, mlflow_tags=tags)

for text in [
    "tag.`mlflow.prompt.is_prompt` != 'true'",
    "tags.`mlflow.prompt.is_prompt` = 'true'",
    "tags.team = 'risk' AND tag.`mlflow.prompt.is_prompt` != 'true'",
]:
    chosen = RegisteredModel.objects.filter(models_filter(parse_filter(text))).order_by("name")
    print(",".join(chosen.values_list("name", flat=True)))
"""


def test_the_stock_clients_filters_run_on_sqlite(tmp_path):
    env = {**subprocess_env(), "DATABASE_URL": f"sqlite:///{tmp_path / 'portal.sqlite3'}"}
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["not-prompt,plain", "prompt", "not-prompt"]
