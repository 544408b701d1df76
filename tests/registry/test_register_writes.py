"""Registering writes its four rows (version, event, change record, outbox job) in one
statement (mlops_portal.core.inserts): the same rows the ORM wrote, all or none."""

import pytest
from auditlog.models import LogEntry
from django.db import DataError, connection, transaction

from deployments import services
from deployments.choices import VersionEventKind
from deployments.models import ModelVersion, VersionEvent
from mlops_portal.core import audit, inserts, outbox
from mlops_portal.models import OutboxMessage

URI = "https://artifacts.example.com/churn/model.joblib"
VALIDATE = "deployments.tasks.validate_version_task"


def register(alice, **fields):
    return services.register_version(alice, "churn", artifact_uri=URI, metrics={"auc": 0.9},
                                     sample_input=[[1, 2]], **fields)  # fmt: skip


def written_rows(version) -> dict:
    """What a registration left in the database, with the parts that differ per version
    (ids, number, times) checked against the version and left out."""
    event = VersionEvent.objects.get(version=version)
    record = LogEntry.objects.get_for_object(version).get()
    job = OutboxMessage.objects.get(args=[version.pk])
    changes = dict(record.changes)
    assert changes.pop("number") == ["None", str(version.number)]
    assert changes.pop("created_at")[1] == str(version.created_at.replace(tzinfo=None))
    assert (record.object_pk, record.object_id) == (str(version.pk), version.pk)
    assert record.object_repr == f"churn v{version.number}"
    return {
        "event": (event.kind, event.actor.username, event.message),
        "record": (record.action, record.actor.username, record.actor_email, changes),
        "job": (job.task, job.published_at, job.attempts),
    }


def test_one_statement_writes_what_the_rows_one_by_one_write(alice, churn, monkeypatch):
    together = register(alice)
    monkeypatch.setattr(connection, "vendor", "sqlite")  # the other path, on PostgreSQL
    one_by_one = register(alice)
    monkeypatch.undo()

    rows = written_rows(together)
    assert rows == written_rows(one_by_one)
    assert rows["event"] == (VersionEventKind.REGISTERED, "alice", "Registered by alice.")
    assert rows["record"][:3] == (LogEntry.Action.CREATE, "alice", alice.email)
    assert rows["job"] == (VALIDATE, None, 0)


def test_the_change_record_is_the_one_auditlog_writes_on_save(alice, churn):
    registered = register(alice)
    saved = ModelVersion.objects.get(pk=registered.pk)
    saved.pk, saved.number = None, 99
    saved.save()  # through the ORM: auditlog's own post_save record
    ours = LogEntry.objects.get_for_object(registered).get()
    auditlogs = LogEntry.objects.get_for_object(saved).get()
    for record in (ours, auditlogs):
        record.changes.pop("number"), record.changes.pop("created_at")
    assert ours.changes == auditlogs.changes
    assert ours.content_type == auditlogs.content_type
    assert ours.action == auditlogs.action == LogEntry.Action.CREATE


def test_a_row_that_fails_leaves_none_of_them(alice, churn):
    version = ModelVersion(model=churn, number=5, artifact_uri=URI, registered_by=alice)
    event = VersionEvent(kind=VersionEventKind.REGISTERED, actor=alice)
    [job] = outbox.new_jobs("x" * 300, [()])  # longer than the column: the INSERT fails
    with pytest.raises(DataError), transaction.atomic():
        inserts.insert_family(
            version,
            [
                inserts.Child(event, {"version_id": "id"}),
                inserts.Child(audit.creation_record(version, alice), {"object_id": "id",
                                                                      "object_pk": "text"}),
                inserts.Child(job, {"args": "list"}),
            ],
        )  # fmt: skip
    assert not ModelVersion.objects.exists()
    assert not VersionEvent.objects.exists()
    assert not OutboxMessage.objects.exists()
    assert not LogEntry.objects.filter(object_repr="churn v5").exists()


def test_a_refused_registration_writes_nothing(dave, churn):
    from django.core.exceptions import PermissionDenied

    with pytest.raises(PermissionDenied):
        services.register_version(dave, "churn", artifact_uri=URI)
    assert not ModelVersion.objects.exists()
    assert not OutboxMessage.objects.exists()
    assert churn.versions.count() == 0


def test_the_registration_serializer_gives_each_request_its_own_fields():
    from deployments.api.serializers import ModelVersionByUriSerializer

    first = ModelVersionByUriSerializer(data={"artifact_uri": URI, "tags": ["a"]})
    second = ModelVersionByUriSerializer(data={"artifact_uri": " ", "tags": [""]})
    assert first.is_valid(), first.errors
    assert not second.is_valid()
    assert second.errors == {
        "artifact_uri": ["This field may not be blank."],
        "tags": {0: ["This field may not be blank."]},
    }
    assert first.validated_data["tags"] == ["a"]
    assert all(field.parent is first for field in first.fields.values())
    assert not set(map(id, first.fields.values())) & set(map(id, second.fields.values()))
