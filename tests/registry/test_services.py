"""The registry's rules, through the service functions every form, API call and task uses."""

import threading

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files.base import ContentFile
from django.db import connection
from django.test import override_settings

from deployments import services
from deployments.choices import VersionEventKind, VersionStatus
from deployments.models import ModelVersion, RegisteredModel
from mlops_portal.models import OutboxMessage
from tests.conftest import Sent
from tests.factories import iris_artifact, register_iris_version

VALIDATE = "deployments.tasks.validate_version_task"


def errors_of(excinfo) -> dict:
    return excinfo.value.message_dict


# --- models ----------------------------------------------------------------------------


def test_it_creates_a_model_owned_by_its_creator(alice):
    model = services.create_model(alice, name="Churn", team="growth", tags=["Tabular", "nlp"])
    assert model.name == "churn"
    assert model.owner == alice
    assert model.tags == ["nlp", "tabular"]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("has space", "Use lowercase letters"),
        ("-leading", "Use lowercase letters"),
        ("", "This field cannot be blank."),
    ],
)
def test_it_refuses_a_model_name_that_is_not_slug_safe(alice, name, message):
    with pytest.raises(ValidationError) as excinfo:
        services.create_model(alice, name=name)
    assert message in errors_of(excinfo)["name"][0]


def test_it_refuses_a_duplicate_model_name(alice, churn):
    with pytest.raises(ValidationError) as excinfo:
        services.create_model(alice, name="churn")
    assert errors_of(excinfo)["name"] == ["A model named 'churn' already exists."]


def test_viewers_cannot_create_models(carol):
    with pytest.raises(PermissionDenied, match="Only data scientists or MLOps engineers"):
        services.create_model(carol, name="nope")
    assert not RegisteredModel.objects.exists()


def test_only_the_owner_or_an_engineer_edits_a_model(churn, dave, bob):
    with pytest.raises(PermissionDenied):
        services.update_model(dave, churn, description="hijacked")
    services.update_model(bob, churn, description="Reviewed by platform.", tags=["prod"])
    churn.refresh_from_db()
    assert churn.description == "Reviewed by platform."
    assert churn.tags == ["prod"]


# --- versions ----------------------------------------------------------------------------


def test_versions_are_numbered_one_after_another(alice, churn):
    numbers = [register_iris_version(alice, churn).number for _ in range(3)]
    assert numbers == [1, 2, 3]
    churn.refresh_from_db()
    assert churn.latest_version_number == 3


def test_registering_stores_the_upload_with_its_size_and_sha256(alice, churn):
    import hashlib

    artifact = iris_artifact()[0]
    version = register_iris_version(alice, churn)
    assert version.artifact_size == len(artifact)
    assert version.artifact_sha256 == hashlib.sha256(artifact).hexdigest()
    assert version.artifact.read() == artifact
    assert version.status == VersionStatus.REGISTERED
    assert list(version.events.values_list("kind", flat=True)) == [VersionEventKind.REGISTERED]


def test_registering_queues_the_validation_after_commit(
    alice, churn, django_capture_on_commit_callbacks, sent_tasks, outbox_jobs
):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        version = register_iris_version(alice, churn)
    # The job is written with the version; nothing leaves before the transaction commits.
    assert outbox_jobs() == [(VALIDATE, (version.pk,))]
    assert sent_tasks == []
    for callback in callbacks:
        callback()
    assert sent_tasks == [Sent(VALIDATE, (version.pk,), "default")]
    assert OutboxMessage.objects.get().published_at is not None


def test_viewers_cannot_register_versions(carol, churn):
    with pytest.raises(PermissionDenied):
        register_iris_version(carol, churn)
    assert not ModelVersion.objects.exists()


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"artifact": None}, "artifact", "exactly one of the two"),
        ({"artifact_uri": "https://example.com/m.joblib"}, "artifact", "exactly one of the two"),
        ({"artifact": ContentFile(b"x", name="model.onnx")}, "artifact", "saved with joblib"),
        ({"artifact": ContentFile(b"", name="model.joblib")}, "artifact", "empty"),
        ({"metrics": {"auc": "high"}}, "metrics", "must be a number"),
        ({"metrics": {"auc": float("nan")}}, "metrics", "must be finite"),
        ({"metrics": ["auc"]}, "metrics", "object of names to numbers"),
        ({"params": [1, 2]}, "params", "JSON object"),
        ({"sample_input": []}, "sample_input", "non-empty list"),
        ({"sample_input": [[1, 2], [3]]}, "sample_input", "has 1 values; row 0 has 2"),
        ({"sample_input": [["a"]]}, "sample_input", "only finite numbers"),
        ({"artifact_sha256": "abc"}, "artifact_sha256", "64 hexadecimal"),
        ({"artifact_sha256": "0" * 64}, "artifact_sha256", "may be corrupt"),
        ({"tags": ["Not A Tag!"]}, "tags", "short lowercase words"),
    ],
)
def test_it_names_the_field_of_bad_input_and_writes_nothing(
    alice, churn, overrides, field, message
):
    with pytest.raises(ValidationError) as excinfo:
        register_iris_version(alice, churn, **overrides)
    assert message in " ".join(errors_of(excinfo)[field])
    assert not ModelVersion.objects.exists()
    churn.refresh_from_db()
    assert churn.latest_version_number == 0  # no number burnt by a refused registration


@override_settings(ARTIFACT_MAX_BYTES=100)
def test_it_refuses_an_oversized_upload(alice, churn):
    with pytest.raises(ValidationError) as excinfo:
        register_iris_version(alice, churn)
    assert "the limit is 100 bytes" in errors_of(excinfo)["artifact"][0]


@pytest.mark.parametrize(
    "uri, reason",
    [
        ("file:///etc/passwd", "file:// artifacts are off: ARTIFACT_FILE_ROOTS lists no folder."),
        ("ftp://models.internal/m.joblib", "Give an http(s)://, s3://, runs:/"),
        ("runs:/0123abc/model", "set ARTIFACT_MLFLOW_TRACKING_URI"),
        ("s3:///no-bucket", "Give the bucket and key"),
    ],
)
def test_it_refuses_artifact_uris_the_workers_cannot_fetch(alice, churn, uri, reason):
    with pytest.raises(ValidationError) as excinfo:
        register_iris_version(alice, churn, artifact=None, artifact_uri=uri)
    assert reason in errors_of(excinfo)["artifact_uri"][0]


def test_a_version_is_immutable_except_description_tags_and_archived(alice, churn):
    version = register_iris_version(alice, churn, description="first")
    services.update_version(alice, version, description="better words", tags=["champion"])
    services.set_version_archived(alice, version, True)
    version.refresh_from_db()
    assert (version.description, version.archived) == ("better words", True)
    assert version.tags == ["champion"]
    with pytest.raises(TypeError):
        services.update_version(alice, version, metrics={"auc": 1.0})
    kinds = list(version.events.values_list("kind", flat=True))
    assert kinds == [
        VersionEventKind.REGISTERED,
        VersionEventKind.EDITED,
        VersionEventKind.ARCHIVED,
    ]


def test_another_data_scientist_cannot_archive_alices_version(alice, dave, churn):
    version = register_iris_version(alice, churn)
    with pytest.raises(PermissionDenied):
        services.set_version_archived(dave, version, True)


@pytest.mark.django_db(transaction=True)
def test_concurrent_registrations_never_share_a_number(alice):
    """Eight threads, eight PostgreSQL connections, one model: eight distinct numbers."""
    assert connection.vendor == "postgresql"
    model = services.create_model(alice, name="race")
    start = threading.Barrier(8)
    numbers, failures = [], []

    def register():
        try:
            start.wait()
            numbers.append(
                register_iris_version(alice, RegisteredModel.objects.get(pk=model.pk)).number
            )
        except Exception as exc:  # reported below, with the thread's error
            failures.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=register) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert sorted(numbers) == list(range(1, 9))


# --- validation (the job's logic, in process) ---------------------------------------------


def test_validation_marks_a_loadable_model_ready(alice, churn):
    version = register_iris_version(alice, churn)
    validated = services.validate_version(version.pk)
    assert validated.status == VersionStatus.READY
    assert "predicted 3 sample rows" in validated.status_detail
    assert validated.validation_attempts == 1
    assert list(validated.events.values_list("kind", flat=True))[-2:] == [
        VersionEventKind.VALIDATION_STARTED,
        VersionEventKind.VALIDATED,
    ]


def test_validation_runs_once_even_if_the_task_is_delivered_twice(alice, churn):
    version = register_iris_version(alice, churn)
    services.validate_version(version.pk)
    assert services.validate_version(version.pk) is None  # already final: nothing to do
    version.refresh_from_db()
    assert version.validation_attempts == 1


def test_validation_of_a_deleted_version_is_a_quiet_no_op(db):
    assert services.validate_version(987654) is None


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        (
            {"artifact": ContentFile(b"not a pickle", name="model.joblib")},
            "the file is not a model saved with joblib or pickle",
        ),
        ({"artifact": ContentFile(b"\x80\x04", name="model.joblib")}, "ends too early"),
        ({"sample_input": [[1.0, 2.0]]}, "expects 4 features per row, got 2"),
    ],
)
def test_validation_marks_a_broken_version_invalid_with_the_reason(alice, churn, overrides, reason):
    version = register_iris_version(alice, churn, **overrides)
    validated = services.validate_version(version.pk)
    assert validated.status == VersionStatus.INVALID
    assert reason in validated.status_detail
    assert validated.events.last().kind == VersionEventKind.VALIDATION_FAILED


def test_validation_downloads_an_artifact_uri(alice, churn, artifact_server):
    version = register_iris_version(
        alice, churn, artifact=None, artifact_uri=f"{artifact_server}/model.joblib"
    )
    validated = services.validate_version(version.pk)
    assert validated.status == VersionStatus.READY
    assert validated.artifact_size == len(iris_artifact()[0])


def test_validation_refuses_a_remote_artifact_with_another_checksum(alice, churn, artifact_server):
    version = register_iris_version(
        alice,
        churn,
        artifact=None,
        artifact_uri=f"{artifact_server}/model.joblib",
        artifact_sha256="0" * 64,
    )
    validated = services.validate_version(version.pk)
    assert validated.status == VersionStatus.INVALID
    assert "Checksum mismatch" in validated.status_detail


def test_validation_reports_a_missing_remote_artifact(alice, churn, artifact_server):
    version = register_iris_version(
        alice, churn, artifact=None, artifact_uri=f"{artifact_server}/gone.joblib"
    )
    validated = services.validate_version(version.pk)
    assert validated.status == VersionStatus.INVALID
    assert "answered HTTP 404" in validated.status_detail


@override_settings(VALIDATION_STALE_AFTER_SECONDS=0)
def test_a_validation_abandoned_by_a_dead_worker_is_found_and_redone(alice, churn):
    version = register_iris_version(alice, churn)
    ModelVersion.objects.filter(pk=version.pk).update(
        status=VersionStatus.VALIDATING, validation_attempts=1
    )
    ModelVersion.objects.filter(pk=version.pk).update(validation_started_at="2020-01-01T00:00Z")
    assert services.stale_validation_ids() == [version.pk]
    validated = services.validate_version(version.pk)
    assert validated.status == VersionStatus.READY
    assert validated.validation_attempts == 2
