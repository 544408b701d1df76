"""Registering writes its four rows (version, event, change record, outbox job) in one
statement (mlops_portal.core.inserts): the same rows the ORM wrote, all or none."""

import copy

import pytest
from auditlog.models import LogEntry
from django.db import DataError, connection, transaction

from deployments import services
from deployments.choices import VersionEventKind
from deployments.models import ModelVersion, VersionEvent
from mlops_portal.core import audit, inserts, outbox
from mlops_portal.core.api import fields as fields_module
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
    for field in ModelVersionByUriSerializer._built_fields.values():  # as copy.copy makes
        clone, copied = fields_module._shallow_copy(field), copy.copy(field)
        assert type(clone) is type(copied) and vars(clone) == vars(copied)


@pytest.mark.filterwarnings("ignore:DateTimeField .* received a naive datetime")
def test_values_taken_as_they_are_read_as_the_fields_would_prepare_them(alice, churn):
    """`_json_row` skips the field's preparation for values of the type it hands back
    unchanged: the JSON is the same as preparing every value, for the four rows of a
    registration and for values of other types (None, a naive time, a lazy text, a file)."""
    from datetime import datetime

    import orjson
    from django.utils.translation import gettext_lazy

    def prepared_by_every_field(row, links) -> dict:
        return {f.column: f.get_prep_value(inserts._value(f, row))
                for f in inserts._fields(type(row), links)}  # fmt: skip

    version = ModelVersion(model=churn, number=7, artifact_uri=URI, registered_by=alice,
                           metrics={"auc": 0.9}, sample_input=[[1, 2]])  # fmt: skip
    record = audit.creation_record(version, alice)
    event = VersionEvent(kind=VersionEventKind.REGISTERED, actor=alice, message="Registered.")
    [job] = outbox.new_jobs(VALIDATE, [()])
    odd = ModelVersion(model=churn, number=8, artifact_uri=gettext_lazy("lazy"),
                       registered_by=alice, artifact="churn-v8.joblib",
                       validated_at=datetime(2026, 1, 2, 3, 4, 5))  # fmt: skip
    rows = [(version, {}), (record, {"object_id": "id", "object_pk": "text"}),
            (event, {"version_id": "id"}), (job, {"args": "list"}), (odd, {})]  # fmt: skip
    for row, links in rows:
        expected = orjson.dumps(prepared_by_every_field(row, links), default=str).decode()
        assert inserts._json_row(row, links) == expected


@pytest.mark.filterwarnings("ignore:DateTimeField .* received a naive datetime")
def test_the_creation_changes_are_auditlogs_own_diff(alice, churn):
    """`audit._creation_changes` writes texts, numbers, ids and aware times itself: the
    same changes as auditlog's diff, for these and for the values it leaves to auditlog."""
    from datetime import datetime

    from auditlog.diff import model_instance_diff
    from django.utils import timezone

    registered = ModelVersion(model=churn, number=7, artifact_uri=URI, registered_by=alice,
                              metrics={"auc": 0.9}, sample_input=[[1, 2]],
                              created_at=timezone.now(), updated_at=timezone.now())  # fmt: skip
    odd = ModelVersion(model=churn, number=8, artifact_uri="None", registered_by=None,
                       artifact="churn-v8.joblib", artifact_size=12, archived=True,
                       validated_at=datetime(2026, 1, 2, 3, 4, 5),
                       created_at=timezone.now())  # fmt: skip
    for version in (registered, odd):
        assert audit._creation_changes(version) == model_instance_diff(None, version)
