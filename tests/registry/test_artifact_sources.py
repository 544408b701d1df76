"""Artifact sources the MLflow client produces: s3:// (a real local S3 server, moto),
runs:/ and mlflow-artifacts:/ (a real `mlflow server`), file:// under configured roots.
Every fetch obeys the network policy, the size limit, and records the SHA-256."""

import shutil

import mlflow
import pytest
from django.core.exceptions import ValidationError

from deployments import services
from deployments.choices import Flavor, VersionStatus
from deployments.demo import churn_data
from deployments.serving.loading import path_digest
from tests.conftest import mlflow_pointed_at
from tests.factories import iris_artifact, lightgbm_model_folder, lightgbm_zip, validated
from tests.registry.test_artifact_policy import METADATA_REFUSED

SAMPLE = [[24.0, 55.0, 4.0, 1.0]]


@pytest.fixture
def s3(s3_server, settings):
    """The portal configured for the local S3 server."""
    for name, value in s3_server.settings().items():
        setattr(settings, name, value)
    return s3_server


@pytest.fixture(scope="module")
def logged_run(mlflow_tracking_server, tmp_path_factory):
    """A run on the real tracking server with a LightGBM model logged by the mlflow client
    (MLflow 3 keeps it as a logged model of the run) and the same folder logged as plain run
    artifacts under "exported". Returns (run_id, the exported folder's mlflow-artifacts URI,
    the logged model's ID)."""
    import lightgbm
    from mlflow.models import infer_signature

    frame, target = churn_data(rows=200)
    booster = lightgbm.train(
        {"objective": "binary", "verbose": -1}, lightgbm.Dataset(frame, target), 5
    )
    folder = tmp_path_factory.mktemp("exported") / "model"
    mlflow.lightgbm.save_model(booster, str(folder), input_example=frame.head(2))
    with mlflow_pointed_at(mlflow_tracking_server), mlflow.start_run() as run:
        logged = mlflow.lightgbm.log_model(
            booster,
            name="model",
            signature=infer_signature(frame, booster.predict(frame)),
            input_example=frame.head(3),
        )
        mlflow.log_artifacts(str(folder), artifact_path="exported")
    return run.info.run_id, f"{run.info.artifact_uri}/exported", logged.model_id


def register_uri(alice, model, uri, **fields):
    return services.register_version(alice, model.name, artifact_uri=uri, **fields)


# --- s3:// --------------------------------------------------------------------------------


def test_an_mlflow_model_folder_under_an_s3_prefix_validates(alice, churn, s3):
    folder = lightgbm_model_folder()[0]
    uri = s3.upload_folder(folder, "models", "churn/v1")
    version = register_uri(alice, churn, uri)
    assert version.flavor == Flavor.MLFLOW  # an s3:// folder
    version = validated(version)
    assert version.status == VersionStatus.READY, version.status_detail
    assert version.mlflow_flavors == ["lightgbm", "python_function"]
    assert (version.artifact_sha256, version.artifact_size) == path_digest(folder)


def test_a_joblib_object_and_a_zip_object_on_s3_validate(alice, churn, s3):
    client = s3.client()
    client.create_bucket(Bucket="objects")
    client.put_object(Bucket="objects", Key="iris.joblib", Body=iris_artifact()[0])
    client.put_object(Bucket="objects", Key="churn.zip", Body=lightgbm_zip())
    pickle = validated(
        register_uri(alice, churn, "s3://objects/iris.joblib", sample_input=iris_artifact()[3])
    )
    assert (pickle.status, pickle.flavor) == (VersionStatus.READY, Flavor.SKLEARN)
    zipped = validated(register_uri(alice, churn, "s3://objects/churn.zip"))
    assert (zipped.status, zipped.flavor) == (VersionStatus.READY, Flavor.MLFLOW)


def test_an_s3_artifact_over_the_size_limit_is_invalid(alice, churn, s3, settings):
    uri = s3.upload_folder(lightgbm_model_folder()[0], "models", "too-big")
    settings.ARTIFACT_MAX_BYTES = 1000
    version = validated(register_uri(alice, churn, uri))
    assert version.status == VersionStatus.INVALID
    assert "larger than 1000 bytes (ARTIFACT_MAX_BYTES)" in version.status_detail
    assert version.artifact_sha256 == ""  # nothing measured from a partial fetch


def test_an_empty_s3_prefix_is_invalid_with_the_reason(alice, churn, s3):
    s3.client().create_bucket(Bucket="empty")
    version = validated(register_uri(alice, churn, "s3://empty/nothing/here"))
    assert version.status == VersionStatus.INVALID
    assert version.status_detail == "s3://empty/nothing/here holds no object."


@pytest.mark.parametrize(
    "endpoint, allowed, reason",
    [
        ("http://0.0.0.0:9000", None, "0.0.0.0 is"),
        ("http://127.0.0.1:9000", ["10.0.0.0/8"], "127.0.0.1 is outside ARTIFACT_ALLOWED_NETWORKS"),
    ],
)
def test_an_s3_endpoint_outside_the_allowlist_is_refused_at_registration(
    alice, churn, settings, endpoint, allowed, reason
):
    settings.ARTIFACT_S3_ENDPOINT_URL = endpoint
    if allowed:
        settings.ARTIFACT_ALLOWED_NETWORKS = allowed
    with pytest.raises(ValidationError) as excinfo:
        register_uri(alice, churn, "s3://models/churn/v1")
    [message] = excinfo.value.message_dict["artifact_uri"]
    assert message.startswith("ARTIFACT_S3_ENDPOINT_URL: ") and reason in message


def test_an_s3_endpoint_refused_at_fetch_time_makes_the_version_invalid(alice, churn, s3, settings):
    version = register_uri(alice, churn, "s3://models/churn/v1")
    settings.ARTIFACT_S3_ENDPOINT_URL = "http://0.0.0.0:9"  # the setting changed since
    version = validated(version)
    assert version.status == VersionStatus.INVALID
    assert version.status_detail.startswith("ARTIFACT_S3_ENDPOINT_URL: 0.0.0.0 is")


def test_an_s3_endpoint_name_resolving_to_the_metadata_address_is_never_contacted(
    alice, churn, settings, dns
):
    answers, connected = dns
    answers["s3.models.test"] = "169.254.169.254"  # stubbed: no packet goes there
    settings.ARTIFACT_S3_ENDPOINT_URL = "http://s3.models.test:9000"
    version = validated(register_uri(alice, churn, "s3://models/churn/v1"))
    assert version.status == VersionStatus.INVALID
    assert version.status_detail == (
        f"S3 endpoint http://s3.models.test:9000: s3.models.test {METADATA_REFUSED}"
    )
    assert connected == []


# --- runs:/ and mlflow-artifacts:/ -------------------------------------------------------


@pytest.fixture
def tracking(mlflow_tracking_server, settings):
    settings.ARTIFACT_MLFLOW_TRACKING_URI = mlflow_tracking_server
    return mlflow_tracking_server


def test_a_runs_uri_resolves_to_the_runs_logged_model(alice, churn, tracking, logged_run):
    run_id, _, model_id = logged_run
    by_run = validated(register_uri(alice, churn, f"runs:/{run_id}/model"))
    assert by_run.status == VersionStatus.READY, by_run.status_detail
    assert by_run.flavor == Flavor.MLFLOW
    assert by_run.mlflow_flavors == ["lightgbm", "python_function"]
    assert len(by_run.signature["inputs"]) == 4
    # What MLflow 3's register_model sends as the source: the logged model's ID.
    by_id = validated(register_uri(alice, churn, f"models:/{model_id}"))
    assert by_id.status == VersionStatus.READY, by_id.status_detail
    assert by_id.artifact_sha256 == by_run.artifact_sha256
    # The worker records where the ID resolved, as MLflow records the version's storage
    # location; a runs:/ source keeps none (MLflow's is the source itself).
    logged = mlflow.MlflowClient(tracking_uri=tracking).get_logged_model(model_id)
    assert by_id.storage_location == logged.artifact_location
    assert by_id.storage_location.startswith("mlflow-artifacts:/")
    assert by_run.storage_location == ""


def test_a_runs_uri_to_plain_run_artifacts_and_an_mlflow_artifacts_uri(
    alice, churn, tracking, logged_run
):
    run_id, exported, _ = logged_run
    assert exported.startswith("mlflow-artifacts:/")
    for uri in (f"runs:/{run_id}/exported", exported):
        version = validated(register_uri(alice, churn, uri))
        assert version.status == VersionStatus.READY, (uri, version.status_detail)
        assert "(the model's input_example)" in version.status_detail


def test_an_unknown_run_is_invalid_with_the_servers_reason(alice, churn, tracking):
    version = validated(register_uri(alice, churn, "runs:/0123456789abcdef/model"))
    assert version.status == VersionStatus.INVALID
    assert version.status_detail == (
        "The MLflow tracking server answered HTTP 404: Run with id=0123456789abcdef not found"
    )


def test_a_registered_version_is_not_an_artifact_source(alice, churn, tracking):
    with pytest.raises(ValidationError) as excinfo:
        register_uri(alice, churn, "models:/churn/3")
    [message] = excinfo.value.message_dict["artifact_uri"]
    assert message.startswith("Give a logged model's ID: models:/m-<id>")


def test_a_tracking_server_outside_the_allowlist_is_refused(alice, churn, settings):
    settings.ARTIFACT_MLFLOW_TRACKING_URI = "http://0.0.0.0:5000"
    with pytest.raises(ValidationError) as excinfo:
        register_uri(alice, churn, "runs:/0123abc/model")
    assert "0.0.0.0 is" in excinfo.value.message_dict["artifact_uri"][0]


# --- file:// -----------------------------------------------------------------------------


def test_file_uris_work_only_under_the_configured_roots(alice, churn, settings, tmp_path):
    root = tmp_path / "shared-models"
    shutil.copytree(lightgbm_model_folder()[0], root / "churn")
    settings.ARTIFACT_FILE_ROOTS = [str(root)]
    version = validated(register_uri(alice, churn, f"file://{root}/churn"))
    assert version.status == VersionStatus.READY, version.status_detail
    with pytest.raises(ValidationError) as excinfo:
        register_uri(alice, churn, f"file://{root}/../elsewhere")
    assert excinfo.value.message_dict["artifact_uri"] == [
        f"{tmp_path}/elsewhere is outside ARTIFACT_FILE_ROOTS."
    ]


def test_a_symlink_leaving_a_file_root_is_refused(alice, churn, settings, tmp_path):
    root = tmp_path / "shared-models"
    shutil.copytree(lightgbm_model_folder()[0], root / "churn")
    (tmp_path / "secret.txt").write_text("not for models")
    (root / "churn" / "leak.txt").symlink_to(tmp_path / "secret.txt")
    settings.ARTIFACT_FILE_ROOTS = [str(root)]
    version = validated(register_uri(alice, churn, f"file://{root}/churn"))
    assert version.status == VersionStatus.INVALID
    assert version.status_detail == f"{root}/churn/leak.txt links outside {root}/churn."


def test_an_http_url_to_a_model_archive_validates_as_an_mlflow_model(alice, churn, artifact_server):
    version = register_uri(alice, churn, f"{artifact_server}/churn.zip", sample_input=SAMPLE)
    assert version.flavor == Flavor.MLFLOW
    version = validated(version)
    assert version.status == VersionStatus.READY, version.status_detail
    assert version.status_detail.startswith("Loaded and predicted 1 sample rows")


def test_the_local_backend_lays_out_an_s3_model_for_its_server_and_checks_the_digest(
    alice, churn, s3
):
    from types import SimpleNamespace

    from deployments.backends import DeployError
    from deployments.backends.local import LocalBackend, deployment_folder

    uri = s3.upload_folder(lightgbm_model_folder()[0], "models", "deployed")
    version = validated(register_uri(alice, churn, uri))
    backend = LocalBackend(SimpleNamespace(backend_settings={}))
    deployment = SimpleNamespace(pk=987654, version=version)
    path, flavor = backend.artifact_path(deployment, log=lambda line: None)
    assert flavor == "mlflow"
    assert path == str(deployment_folder(deployment) / "fetched")
    assert path_digest(path)[0] == version.artifact_sha256

    s3.client().put_object(Bucket="models", Key="deployed/MLmodel", Body=b"changed")
    with pytest.raises(DeployError, match="The artifact's SHA-256 changed since validation"):
        backend.artifact_path(deployment, log=lambda line: None)


def test_the_api_answers_a_refused_source_with_a_400_on_artifact_uri(
    api_client_for, alice, churn, settings
):
    settings.ARTIFACT_MLFLOW_TRACKING_URI = "http://0.0.0.0:5000"
    answer = api_client_for(alice).post(
        "/api/v1/models/churn/versions/",
        {"artifact_uri": "runs:/0123abc/model"},
        format="json",
    )
    assert answer.status_code == 400
    [message] = answer.json()["artifact_uri"]
    assert message.startswith("0.0.0.0 is") and "artifact downloads never go there" in message
    assert churn.versions.count() == 0
    churn.refresh_from_db()
    assert churn.latest_version_number == 0  # no number burnt
