"""`make run` serves the MLflow API on SQLite: the stock client's search filters must run
there too (PostgreSQL runs them in the rest of the suite)."""

from tests.conftest import run_on_sqlite

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
    found = run_on_sqlite(SCRIPT, tmp_path).split()
    assert found == ["not-prompt,plain", "prompt", "not-prompt"]
