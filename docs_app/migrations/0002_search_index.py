"""Full-text search indexes (PostgreSQL only; SQLite searches with a plain match)."""

from django.db import migrations

INDEXES = [
    ("docs_app_page", ("title", "body"), "page_search_idx"),
    ("deployments_registeredmodel", ("name", "description"), "model_search_idx"),
    ("deployments_target", ("name", "description"), "target_search_idx"),
    ("deployments_modelversion", ("description",), "version_search_idx"),
    ("deployments_deployment", ("reason",), "deployment_search_idx"),
    ("monitoring_incident", ("title", "description"), "incident_search_idx"),
]


def create(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    from mlops_portal.overview.search import gin_index_sql

    for table, fields, name in INDEXES:
        schema_editor.execute(gin_index_sql(table, fields, name))


def drop(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for _, _, name in INDEXES:
        schema_editor.execute(f"DROP INDEX IF EXISTS {name}")


class Migration(migrations.Migration):
    dependencies = [
        ("docs_app", "0001_initial"),
        ("deployments", "0001_initial"),
        ("monitoring", "0001_initial"),
    ]

    operations = [migrations.RunPython(create, drop)]
