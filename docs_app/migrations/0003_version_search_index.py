"""Versions are found by tag and number as well as description, and by their model's name
(PostgreSQL only; SQLite searches with a plain match). The indexes are built from the
expressions `mlops_portal.overview.search` queries with, so they match by construction."""

from django.db import migrations

OLD_VERSION_INDEX = (
    "CREATE INDEX IF NOT EXISTS version_search_idx ON deployments_modelversion "
    "USING GIN (to_tsvector('english'::regconfig, COALESCE(description, '')))"
)


def indexes():
    from django.contrib.postgres.indexes import GinIndex

    from mlops_portal.overview.search import MODEL_NAME_DOCUMENT, VERSION_DOCUMENT

    return [
        ("ModelVersion", GinIndex(VERSION_DOCUMENT, name="version_search_idx")),
        ("RegisteredModel", GinIndex(MODEL_NAME_DOCUMENT, name="model_name_search_idx")),
    ]


def create(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute("DROP INDEX IF EXISTS version_search_idx")
    for model_name, index in indexes():
        schema_editor.execute(index.create_sql(apps.get_model("deployments", model_name),
                                               schema_editor))  # fmt: skip


def drop(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for _, index in indexes():
        schema_editor.execute(f"DROP INDEX IF EXISTS {index.name}")
    schema_editor.execute(OLD_VERSION_INDEX)


class Migration(migrations.Migration):
    dependencies = [
        ("docs_app", "0002_search_index"),
        ("deployments", "0003_dashboard_indexes"),
    ]

    operations = [migrations.RunPython(create, drop)]
