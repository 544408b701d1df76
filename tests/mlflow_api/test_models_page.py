"""The search of models in name order, unfiltered or with the stock client's "not prompts":
PostgreSQL writes its JSON (`models_page.written_by_database`); it must be byte for byte
what the general path (`built_in_python`, what SQLite and every other search run) gives
for the same rows."""

import base64
import json

import orjson
import pytest
from django.db import connection
from django.test import Client, RequestFactory
from django.test.utils import CaptureQueriesContext

from deployments.choices import Stage, VersionStatus
from deployments.mlflow_api import models_page
from deployments.mlflow_api import search as grammar
from deployments.mlflow_api.search import PROMPT_TAG
from deployments.models import ModelAlias, ModelVersion, RegisteredModel
from mlops_portal.core import tokens

# The suite runs on PostgreSQL (conftest.pytest_sessionstart stops without it), the
# database these tests are about; SQLite's search is tests/mlflow_api/test_search_sqlite.py.
pytestmark = pytest.mark.django_db

# What the stock MlflowClient's search_registered_models() sends (MLflow 3).
CLIENT_FILTER = "tag.`mlflow.prompt.is_prompt` != 'true'"
# Quotes, backslashes, control characters, non-ASCII and what looks like JSON or SQL.
AWKWARD = 'a "quoted" \\ back\tslash\n\x01\x1f\x7f é € 😀 \u2028 {"x": 1} \'; --'


def version(model, number, user, **fields):
    defaults = {"artifact_uri": f"s3://bucket/{model.name}/{number}/model.joblib"}
    return ModelVersion.objects.create(
        model=model, number=number, registered_by=user, **(defaults | fields)
    )


@pytest.fixture
def registry(alice, bob):
    """Models with every field MLflow shows present and absent: descriptions, tags, aliases,
    versions in each stage (several in one, one archived), a failed one with its message,
    an uploaded artifact, and a model without versions."""
    plain = RegisteredModel.objects.create(name="a-plain", owner=alice)
    full = RegisteredModel.objects.create(
        name="b-full", owner=bob, description=AWKWARD, mlflow_tags={"team": "risk", "z": AWKWARD}
    )
    RegisteredModel.objects.create(name="c-empty", owner=alice, description="no versions")
    version(plain, 1, alice)
    for number in (1, 2, 3):
        version(full, number, alice, stage=Stage.STAGING, run_id=f"run-{number}")
    version(full, 4, bob, stage=Stage.PRODUCTION, status=VersionStatus.READY, source_url="http://x")
    version(full, 5, bob, stage=Stage.STAGING, archived=True, description=AWKWARD)
    version(
        full, 6, alice, status=VersionStatus.INVALID, status_detail=AWKWARD,
        mlflow_tags={"k": "v", AWKWARD: AWKWARD},
    )  # fmt: skip
    version(full, 7, alice, stage=Stage.PRODUCTION, status=VersionStatus.VALIDATING)
    uploaded = version(
        RegisteredModel.objects.create(name="d-uploaded", owner=bob),
        1, bob, artifact_uri="", artifact="artifacts/2026/12/m \"1\".joblib",
    )  # fmt: skip
    for alias, model, number in (
        ("zeta", full, 2),
        ("champion", full, 4),
        ("a", uploaded.model, 1),
    ):
        ModelAlias.objects.create(
            model=model, alias=alias, version=model.versions.get(number=number), updated_by=alice
        )
    for index in range(3):
        RegisteredModel.objects.create(name=f"e-{index}", owner=alice, mlflow_tags={"n": "1"})
    for name, value in (("b-prompt", "true"), ("e-1-prompt", "true"), ("e-not-prompt", "false")):
        RegisteredModel.objects.create(name=name, owner=bob, mlflow_tags={PROMPT_TAG: value})


def both(offset, count, without_prompts=False):
    """The page written by the database, and as the general path builds it (the search
    grammar's filter for the stock client's "not prompts")."""
    request = RequestFactory().get("/api/2.0/mlflow/registered-models/search")
    written, found = models_page.written_by_database(request, offset, count, without_prompts)
    text = CLIENT_FILTER if without_prompts else ""
    condition = grammar.models_filter(grammar.parse_filter(text))
    models = RegisteredModel.objects.filter(condition).order_by("name")
    built, built_found = models_page.built_in_python(models, request, offset, count)
    return (orjson.dumps(written), found), (orjson.dumps(built), built_found)


@pytest.mark.parametrize("without_prompts", [False, True])
@pytest.mark.parametrize(
    "offset, count", [(0, 100), (0, 1), (0, 3), (1, 2), (3, 2), (6, 1), (7, 5), (50, 10)]
)
def test_the_database_writes_what_the_general_path_builds(registry, offset, count, without_prompts):
    written, built = both(offset, count, without_prompts)
    assert written == built


def test_the_stock_clients_filter_leaves_out_prompts_only(registry):
    (written, found), _ = both(0, 100, without_prompts=True)
    names = [model["name"] for model in orjson.loads(written)]
    assert found == 8 and "e-not-prompt" in names
    assert not {"b-prompt", "e-1-prompt"} & set(names)


def test_it_covers_every_optional_field(registry):
    (written, found), _ = both(0, 100)
    models = orjson.loads(written)
    assert found == 10
    names = [model["name"] for model in models]
    assert names[:5] == ["a-plain", "b-full", "b-prompt", "c-empty", "d-uploaded"]
    del models[2]  # the prompt
    full = models[1]
    assert full["description"] == AWKWARD and "description" not in models[0]
    assert [(v["version"], v["current_stage"]) for v in full["latest_versions"]] == [
        ("5", "Archived"), ("6", "None"), ("7", "Production"), ("3", "Staging")
    ]  # fmt: skip
    failed = full["latest_versions"][1]
    assert (failed["status"], failed["status_message"]) == ("FAILED_REGISTRATION", AWKWARD)
    assert failed["tags"] == [{"key": "k", "value": "v"}, {"key": AWKWARD, "value": AWKWARD}]
    assert full["aliases"] == [
        {"alias": "champion", "version": "4"}, {"alias": "zeta", "version": "2"}
    ]  # fmt: skip
    assert full["tags"] == [{"key": "z", "value": AWKWARD}, {"key": "team", "value": "risk"}]
    assert "latest_versions" not in models[2] and "aliases" not in models[2]
    source = models[3]["latest_versions"][0]["source"]
    assert source.startswith("http://testserver/") and source.endswith(".joblib")


@pytest.mark.parametrize("without_prompts", [False, True])
def test_the_endpoint_answers_it_with_the_next_page_token(registry, alice, without_prompts):
    _, secret = tokens.create_token(alice, "mlflow")
    client = Client(HTTP_AUTHORIZATION=f"Bearer {secret}")
    path = "/api/2.0/mlflow/registered-models/search"
    fields = {"max_results": 4, "filter": CLIENT_FILTER if without_prompts else ""}
    client.get(path)  # the token's last use is written once
    with CaptureQueriesContext(connection) as queries:
        first = client.get(path, fields)
    assert len(queries) == 2  # the token, the page
    token = base64.b64encode(json.dumps({"offset": 4}).encode()).decode()
    _, (built, _) = both(0, 4, without_prompts)
    assert first.content == b'{"registered_models":%s,"next_page_token":"%s"}' % (
        built,
        token.encode(),
    )
    last = client.get(path, {**fields, "max_results": 7, "page_token": token})
    _, (built, _) = both(4, 7, without_prompts)
    assert last.content == b'{"registered_models":%s}' % built
