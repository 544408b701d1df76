"""Query expressions the registry's reads share (`/api/v1/` and the MLflow API)."""

from django.db.models import F, Func, JSONField

from deployments.models import ModelAlias


class AliasNames(Func):
    """The names of a version's aliases, sorted by name, as a JSON list: one more column of
    the version's row, where a query of the model's aliases was one more round trip."""

    output_field = JSONField()
    table = ModelAlias._meta.db_table
    postgresql_template = (
        f"COALESCE((SELECT JSONB_AGG(a.alias ORDER BY a.alias) FROM {table} a"
        " WHERE a.version_id = %(expressions)s), '[]'::jsonb)"
    )
    # SQLite (`make run`) has no ORDER BY inside an aggregate: the sorted rows are aggregated.
    template = (
        f"(SELECT JSON_GROUP_ARRAY(alias) FROM (SELECT a.alias FROM {table} a"
        " WHERE a.version_id = %(expressions)s ORDER BY a.alias))"
    )

    def __init__(self):
        super().__init__(F("id"))

    def as_postgresql(self, compiler, connection, **extra):
        return self.as_sql(compiler, connection, template=self.postgresql_template, **extra)
