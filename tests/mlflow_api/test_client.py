"""The stock MlflowClient against the live portal: every registry call, and MLflow's
errors for each misuse. Validation does not run here (no worker); test_parity.py runs it."""

import pytest
from mlflow.exceptions import MlflowException

from deployments.choices import VersionEventKind
from deployments.models import ModelAlias, ModelVersion, RegisteredModel, VersionEvent
from tests.factories import register_iris_version

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.filterwarnings("ignore::FutureWarning"),  # stages: deprecated, still answered
]


def register(client, name, source, **fields):
    return client.create_model_version(name, source, await_creation_for=0, **fields)


def refused(call, *args, **kwargs) -> MlflowException:
    with pytest.raises(MlflowException) as caught:
        call(*args, **kwargs)
    return caught.value


def test_it_creates_gets_updates_renames_and_deletes_a_model(alice, mlflow_for):
    client = mlflow_for(alice)
    created = client.create_registered_model("churn", tags={"team": "growth"}, description="d")
    assert (created.name, created.description, created.tags) == ("churn", "d", {"team": "growth"})
    client.update_registered_model("churn", description="Predicts churn.")
    client.set_registered_model_tag("churn", "domain", "retail")
    client.delete_registered_model_tag("churn", "team")
    client.rename_registered_model("churn", "churn-v2")
    fetched = client.get_registered_model("churn-v2")
    assert fetched.description == "Predicts churn."
    assert fetched.tags == {"domain": "retail"}
    assert RegisteredModel.objects.get(name="churn-v2").owner == alice
    client.delete_registered_model("churn-v2")
    assert not RegisteredModel.objects.exists()


def test_it_registers_versions_that_the_portal_shows(alice, mlflow_for, artifact_server):
    client = mlflow_for(alice)
    client.create_registered_model("churn")
    version = register(
        client,
        "churn",
        f"{artifact_server}/model.joblib",
        run_id="run-1",
        tags={"stage": "candidate"},
        run_link="http://127.0.0.1/runs/1",
        description="First.",
    )
    assert (version.version, version.status, version.current_stage) == (
        "1",
        "PENDING_REGISTRATION",
        "None",
    )
    row = ModelVersion.objects.get(model__name="churn", number=1)
    assert (row.artifact_uri, row.run_id, row.mlflow_tags, row.registered_by) == (
        f"{artifact_server}/model.joblib",
        "run-1",
        {"stage": "candidate"},
        alice,
    )
    assert VersionEvent.objects.filter(version=row, kind=VersionEventKind.REGISTERED).exists()
    client.update_model_version("churn", "1", description="Edited.")
    client.set_model_version_tag("churn", "1", "reviewed", "yes")
    client.delete_model_version_tag("churn", "1", "stage")
    fetched = client.get_model_version("churn", "1")
    assert (fetched.description, fetched.tags) == ("Edited.", {"reviewed": "yes"})
    uri = client.get_model_version_download_uri("churn", "1")
    assert uri == f"{artifact_server}/model.joblib"
    client.delete_model_version("churn", "1")
    assert not ModelVersion.objects.exists()


def test_a_logged_model_version_downloads_from_where_its_source_resolved(
    alice, mlflow_for, settings
):
    """The worker fills `storage_location` (tests/registry/test_artifact_sources.py, against
    a real tracking server); until then the source is answered, MLflow's own fallback."""
    settings.ARTIFACT_MLFLOW_TRACKING_URI = "http://127.0.0.1:9"
    client = mlflow_for(alice)
    client.create_registered_model("churn")
    register(client, "churn", "models:/m-0123abcd")
    assert client.get_model_version_download_uri("churn", "1") == "models:/m-0123abcd"
    resolved = "mlflow-artifacts:/1/models/m-0123abcd/artifacts"
    ModelVersion.objects.filter(number=1).update(storage_location=resolved)
    assert client.get_model_version_download_uri("churn", "1") == resolved
    assert client.get_model_version("churn", "1").source == "models:/m-0123abcd"


def test_a_version_registered_in_the_portal_is_visible_to_mlflow(alice, mlflow_for):
    model = RegisteredModel.objects.create(name="iris", owner=alice)
    register_iris_version(alice, model)
    found = mlflow_for(alice).get_model_version("iris", "1")
    assert (found.user_id, found.status) == ("alice", "PENDING_REGISTRATION")
    assert found.source.endswith(".joblib")


def test_aliases_point_at_versions_and_move(alice, mlflow_for, artifact_server):
    client = mlflow_for(alice)
    client.create_registered_model("churn")
    for _ in range(2):
        register(client, "churn", f"{artifact_server}/model.joblib")
    client.set_registered_model_alias("churn", "champion", "1")
    client.set_registered_model_alias("churn", "champion", "2")
    assert client.get_model_version_by_alias("churn", "champion").version == "2"
    assert client.get_model_version_by_alias("churn", "latest").version == "2"
    assert client.get_registered_model("churn").aliases == {"champion": "2"}
    assert client.get_model_version("churn", "2").aliases == ["champion"]
    assert ModelAlias.objects.get().version.number == 2
    client.delete_registered_model_alias("churn", "champion")
    client.delete_registered_model_alias("churn", "champion")  # twice: nothing to do
    error = refused(client.get_model_version_by_alias, "churn", "champion")
    assert error.error_code == "INVALID_PARAMETER_VALUE"


def test_stages_and_latest_versions(alice, mlflow_for, artifact_server):
    client = mlflow_for(alice)
    client.create_registered_model("churn")
    for _ in range(3):
        register(client, "churn", f"{artifact_server}/model.joblib")
    client.transition_model_version_stage("churn", "1", "Production")
    moved = client.transition_model_version_stage(
        "churn", "2", "production", archive_existing_versions=True
    )
    assert moved.current_stage == "Production"
    assert client.get_model_version("churn", "1").current_stage == "Archived"
    assert ModelVersion.objects.get(number=1).archived
    latest = {v.current_stage: v.version for v in client.get_latest_versions("churn")}
    assert latest == {"Archived": "1", "Production": "2", "None": "3"}
    assert [v.version for v in client.get_latest_versions("churn", ["Production"])] == ["2"]


def test_latest_versions_come_in_mlflows_order(alice, mlflow_for, artifact_server):
    """A model read alone lists its stages in the order its versions first reach them; a
    search lists them by stage name (as a real `mlflow server` answers: the comparison in
    test_live_scenario.py found it)."""
    client = mlflow_for(alice)
    client.create_registered_model("churn")
    for _ in range(3):
        register(client, "churn", f"{artifact_server}/model.joblib")
    client.transition_model_version_stage("churn", "1", "Staging")
    client.transition_model_version_stage("churn", "2", "Production")
    alone = [("Staging", "1"), ("Production", "2"), ("None", "3")]
    assert stages(client.get_registered_model("churn").latest_versions) == alone
    assert stages(client.get_latest_versions("churn")) == alone
    assert stages(client.update_registered_model("churn", "d").latest_versions) == alone
    (found,) = client.search_registered_models("name = 'churn'")
    assert stages(found.latest_versions) == [("None", "3"), ("Production", "2"), ("Staging", "1")]


def stages(versions) -> list[tuple[str, str]]:
    return [(version.current_stage, version.version) for version in versions]


def test_search_filters_order_and_pages(alice, mlflow_for, artifact_server):
    client = mlflow_for(alice)
    for name in ("churn-a", "churn-b", "fraud", "churn-c"):
        client.create_registered_model(name, tags={"team": "growth" if "churn" in name else "risk"})
        register(client, name, f"{artifact_server}/model.joblib", run_id=f"run-{name}")
    names = [m.name for m in client.search_registered_models("name LIKE 'churn%'")]
    assert names == ["churn-a", "churn-b", "churn-c"]
    assert [m.name for m in client.search_registered_models("tags.team = 'risk'")] == ["fraud"]
    assert [m.name for m in client.search_registered_models("name = 'fraud'")] == ["fraud"]
    ordered = client.search_registered_models(order_by=["name DESC"], max_results=2)
    assert [m.name for m in ordered] == ["fraud", "churn-c"]
    second = client.search_registered_models(
        order_by=["name DESC"], max_results=2, page_token=ordered.token
    )
    assert [m.name for m in second] == ["churn-b", "churn-a"]
    assert not second.token
    found = client.search_model_versions("run_id = 'run-fraud'")
    assert [(v.name, v.version) for v in found] == [("fraud", "1")]
    found = client.search_model_versions("name LIKE 'churn-%' AND run_id != 'run-churn-b'")
    assert sorted(v.name for v in found) == ["churn-a", "churn-c"]
    found = client.search_model_versions("name IN ('fraud', 'churn-a')", order_by=["name ASC"])
    assert [v.name for v in found] == ["churn-a", "fraud"]
    paged = client.search_model_versions(max_results=3, order_by=["name ASC"])
    assert len(paged) == 3 and paged.token
    rest = client.search_model_versions(
        max_results=3, order_by=["name ASC"], page_token=paged.token
    )
    assert [v.name for v in rest] == ["fraud"]


@pytest.mark.parametrize(
    "call, kwargs, code",
    [
        ("search_registered_models", {"filter_string": "name LIKE"}, "INVALID_PARAMETER_VALUE"),
        ("search_registered_models", {"filter_string": "owner = 'x'"}, "INVALID_PARAMETER_VALUE"),
        ("search_registered_models", {"order_by": ["size"]}, "INVALID_PARAMETER_VALUE"),
        ("search_registered_models", {"max_results": 5000}, "INVALID_PARAMETER_VALUE"),
        ("search_registered_models", {"page_token": "zzz"}, "INVALID_PARAMETER_VALUE"),
        # Offsets beyond the databases' 64-bit OFFSET: {"offset": 1e30}, {"offset": 10**21}.
        ("search_registered_models", {"page_token": "eyJvZmZzZXQiOiAxZTMwfQ=="},
         "INVALID_PARAMETER_VALUE"),
        ("search_model_versions",
         {"page_token": "eyJvZmZzZXQiOiAxMDAwMDAwMDAwMDAwMDAwMDAwMDAwfQ=="},
         "INVALID_PARAMETER_VALUE"),
        ("search_model_versions", {"filter_string": "tags.k > 'v'"}, "INVALID_PARAMETER_VALUE"),
        ("search_model_versions", {"filter_string": "run_id = "}, "INVALID_PARAMETER_VALUE"),
        ("search_model_versions", {"max_results": 0}, "INVALID_PARAMETER_VALUE"),
        ("search_model_versions", {"order_by": ["name UP"]}, "INVALID_PARAMETER_VALUE"),
        ("get_registered_model", {"name": "nope"}, "RESOURCE_DOES_NOT_EXIST"),
        ("get_model_version", {"name": "churn", "version": "9"}, "RESOURCE_DOES_NOT_EXIST"),
        ("get_model_version", {"name": "churn", "version": "x"}, "INVALID_PARAMETER_VALUE"),
        ("create_registered_model", {"name": "churn"}, "RESOURCE_ALREADY_EXISTS"),
        ("create_registered_model", {"name": "Bad Name"}, "INVALID_PARAMETER_VALUE"),
        ("create_model_version", {"name": "nope", "source": "http://127.0.0.1/m.joblib"},
         "RESOURCE_DOES_NOT_EXIST"),
        ("create_model_version", {"name": "churn", "source": "ftp://x/m"},
         "INVALID_PARAMETER_VALUE"),
        ("set_registered_model_alias", {"name": "churn", "alias": "latest", "version": "1"},
         "INVALID_PARAMETER_VALUE"),
        ("set_registered_model_alias", {"name": "churn", "alias": "v1", "version": "1"},
         "INVALID_PARAMETER_VALUE"),
        ("set_registered_model_alias", {"name": "churn", "alias": "ok", "version": "9"},
         "RESOURCE_DOES_NOT_EXIST"),
        ("set_registered_model_tag", {"name": "churn", "key": "../up", "value": "x"},
         "INVALID_PARAMETER_VALUE"),
        ("transition_model_version_stage", {"name": "churn", "version": "1", "stage": "Live"},
         "INVALID_PARAMETER_VALUE"),
        ("rename_registered_model", {"name": "churn", "new_name": "fraud"},
         "RESOURCE_ALREADY_EXISTS"),
    ],
)  # fmt: skip
def test_each_misuse_is_mlflows_error(alice, mlflow_for, call, kwargs, code):
    client = mlflow_for(alice)
    client.create_registered_model("churn")
    client.create_registered_model("fraud")
    if call == "create_model_version":
        kwargs = {**kwargs, "await_creation_for": 0}
    before = (RegisteredModel.objects.count(), ModelVersion.objects.count())
    error = refused(getattr(client, call), **kwargs)
    assert error.error_code == code, error.message
    assert (RegisteredModel.objects.count(), ModelVersion.objects.count()) == before


def test_a_viewer_reads_but_may_not_write(alice, carol, dave, mlflow_for):
    mlflow_for(alice).create_registered_model("churn")
    viewer = mlflow_for(carol)
    assert viewer.get_registered_model("churn").name == "churn"
    error = refused(viewer.create_registered_model, "mine")
    assert (error.error_code, error.get_http_status_code()) == ("PERMISSION_DENIED", 403)
    error = refused(viewer.set_registered_model_alias, "churn", "champion", "1")
    assert error.error_code == "PERMISSION_DENIED"
    other = mlflow_for(dave)  # a data scientist, not the owner
    error = refused(other.update_registered_model, "churn", "mine now")
    assert error.error_code == "PERMISSION_DENIED"
    assert RegisteredModel.objects.get().description == ""
