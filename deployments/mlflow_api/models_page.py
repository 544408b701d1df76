"""The search of registered models in name order without a filter, or with only the stock
client's "not prompts": the pages every MLflow client reads. On PostgreSQL, one query whose
answer is the page's JSON, written by the database in exactly the bytes
`wire.registered_model` and orjson give (the general path, which SQLite and every other
filter or order take).

Building 100 models' dicts in Python (with their latest versions, tags and aliases) was
most of the request's CPU; the response embeds the database's text with `orjson.Fragment`
(docs/architecture.md, "Speed"). Every string goes through `to_json` (PostgreSQL escapes
exactly the characters orjson escapes, in the same form), so raw control characters never
occur in its text: a version with an uploaded artifact marks its name between two \\x01
characters, and Python replaces that with the file's URL, which only Django's storage
knows."""

from functools import cache

import orjson
from django.db import connection

from deployments.choices import VersionStatus
from deployments.mlflow_api import search as grammar
from deployments.mlflow_api import wire
from deployments.models import ModelAlias, ModelVersion, RegisteredModel

# Around an uploaded artifact's name (a JSON string) in the database's text.
UPLOAD_MARK = "\x01"


def by_name(request, offset: int, count: int, without_prompts=False) -> tuple[object, int]:
    """The JSON of up to `count` models from `offset` in name order (a list of dicts, or
    `orjson.Fragment` of PostgreSQL's text), and how many models there are from `offset`,
    counted up to `count + 1` (more than `count`: there is a next page). `without_prompts`:
    leave out prompts (`grammar.NOT_PROMPTS`, what the stock client asks)."""
    if connection.vendor == "postgresql":
        return written_by_database(request, offset, count, without_prompts)
    condition = grammar.models_filter([grammar.NOT_PROMPTS] if without_prompts else [])
    models = RegisteredModel.objects.filter(condition).order_by("name")
    return built_in_python(models, request, offset, count)


def built_in_python(models, request, offset: int, count: int) -> tuple[list[dict], int]:
    """The general path: `models` (an ordered queryset) read from `offset`, their latest
    versions and aliases in one query each, then `wire.registered_model` of each."""
    rows = wire.model_rows(models, offset, offset + count + 1)
    page = rows[:count]
    ids = [model.id for model in page]
    latest = wire.latest_versions(ids, by_stage_name=True)
    pairs = wire.aliases_of_models(ids)
    built = [
        wire.registered_model(model, request, latest.get(model.id), pairs.get(model.id))
        for model in page
    ]
    return built, len(rows)


def written_by_database(
    request, offset: int, count: int, without_prompts=False
) -> tuple[orjson.Fragment, int]:
    with connection.cursor() as cursor:
        cursor.execute(page_sql(without_prompts), {"offset": offset, "count": count})
        found, text = cursor.fetchone()
    if UPLOAD_MARK in text:
        text = with_upload_urls(text, request)
    return orjson.Fragment(text), found


def with_upload_urls(text: str, request) -> str:
    """`text` with each marked artifact name replaced by its URL (`wire.source`'s)."""
    parts = text.split(UPLOAD_MARK)
    for index in range(1, len(parts), 2):
        url = wire.upload_url(orjson.loads(parts[index]), request)
        parts[index] = orjson.dumps(url).decode()
    return "".join(parts)


# --- the query, built once per process -------------------------------------------------------


def millis(column: str) -> str:
    """`wire.EpochMillis` (as text when concatenated)."""
    return f"FLOOR(EXTRACT(EPOCH FROM {column}) * 1000)::bigint"


def json_text(column: str) -> str:
    """A text column as a JSON string, escaped as orjson escapes it."""
    return f"to_json({column})::text"


def literal(text: str) -> str:
    """`text` as an SQL string literal (for the constants below)."""
    return "'" + text.replace("'", "''") + "'"


def case(column: str, labels: dict[str, str]) -> str:
    """`column`'s label in `labels`, as a JSON string."""
    whens = " ".join(
        f"WHEN {literal(value)} THEN {literal(orjson.dumps(label).decode())}"
        for value, label in labels.items()
    )
    return f"CASE {column} {whens} END"


def tags(column: str) -> str:
    """MLflow's `[{"key":…,"value":…}]` items of a jsonb object, in its order (as Django
    reads it back); NULL when there are none."""
    return (
        "(SELECT string_agg('{\"key\":' || to_json(tag.key)::text || ',\"value\":' "
        "|| tag.value::text || '}', ',' ORDER BY tag.position) "
        f"FROM jsonb_each({column}) WITH ORDINALITY AS tag(key, value, position))"
    )


def version_json(version: str, user: str, model_name: str) -> str:
    """`wire.model_version(version, request)` (no aliases) of the row `version`."""
    stage = (
        f"CASE WHEN {version}.archived THEN {literal(orjson.dumps(wire.ARCHIVED_LABEL).decode())} "
        f"ELSE {case(f'{version}.stage', wire.STAGE_LABELS)} END"
    )
    mark = literal(UPLOAD_MARK)
    source = (
        f"CASE WHEN {version}.artifact_uri <> '' THEN {json_text(f'{version}.artifact_uri')} "
        f"WHEN {version}.artifact <> '' "
        f"THEN {mark} || {json_text(f'{version}.artifact')} || {mark} "
        """ELSE '""' END"""
    )
    invalid = literal(VersionStatus.INVALID)
    return f"""'{{"name":' || {json_text(model_name)}
        || ',"version":"' || {version}.number
        || '","creation_timestamp":' || {millis(f"{version}.created_at")}
        || ',"last_updated_timestamp":' || {millis(f"{version}.updated_at")}
        || ',"user_id":' || COALESCE({json_text(f"{user}.username")}, 'null')
        || ',"current_stage":' || {stage}
        || ',"description":' || {json_text(f"{version}.description")}
        || ',"source":' || {source}
        || ',"run_id":' || {json_text(f"{version}.run_id")}
        || ',"status":' || {case(f"{version}.status", wire.STATUS)}
        || CASE WHEN {version}.status = {invalid}
           THEN ',"status_message":' || {json_text(f"{version}.status_detail")} ELSE '' END
        || COALESCE(',"tags":[' || {tags(f"{version}.mlflow_tags")} || ']', '')
        || ',"run_link":' || {json_text(f"{version}.source_url")}
        || '}}'"""


def model_json(model: str, owner: str) -> str:
    """`wire.registered_model` of the row `model`: its newest version in each stage (listed
    by stage, as `wire.newest_per_stage` lists them) and its aliases read per model."""
    tables = table_names()
    # The newest number in each stage, then those rows by (model, number): a hashed
    # grouping, where DISTINCT ON sorted each model's versions (half again the database's CPU).
    latest = f"""(SELECT string_agg({version_json("newest", "registered_by", f"{model}.name")},
                                   ',' ORDER BY stages.effective)
            FROM (SELECT CASE WHEN v.archived THEN 'archived' ELSE v.stage END AS effective,
                         max(v.number) AS number
                  FROM {tables["version"]} v WHERE v.model_id = {model}.id GROUP BY 1) stages
            JOIN {tables["version"]} newest
              ON newest.model_id = {model}.id AND newest.number = stages.number
            JOIN {tables["user"]} registered_by ON registered_by.id = newest.registered_by_id)"""
    aliases = f"""(SELECT string_agg('{{"alias":' || {json_text("a.alias")}
                                   || ',"version":"' || named.number || '"}}', ',' ORDER BY a.alias)
            FROM {tables["alias"]} a JOIN {tables["version"]} named ON named.id = a.version_id
            WHERE a.model_id = {model}.id)"""
    return f"""'{{"name":' || {json_text(f"{model}.name")}
        || ',"creation_timestamp":' || {millis(f"{model}.created_at")}
        || ',"last_updated_timestamp":' || {millis(f"{model}.updated_at")}
        || ',"user_id":' || COALESCE({json_text(f"{owner}.username")}, 'null')
        || CASE WHEN {model}.description <> ''
           THEN ',"description":' || {json_text(f"{model}.description")} ELSE '' END
        || COALESCE(',"latest_versions":[' || {latest} || ']', '')
        || COALESCE(',"tags":[' || {tags(f"{model}.mlflow_tags")} || ']', '')
        || COALESCE(',"aliases":[' || {aliases} || ']', '')
        || '}}'"""


def table_names() -> dict[str, str]:
    quote = connection.ops.quote_name
    return {
        "model": quote(RegisteredModel._meta.db_table),
        "version": quote(ModelVersion._meta.db_table),
        "alias": quote(ModelAlias._meta.db_table),
        "user": quote(RegisteredModel._meta.get_field("owner").related_model._meta.db_table),
    }


@cache
def page_sql(without_prompts: bool) -> str:
    """One row: how many models there are from %(offset)s (at most %(count)s + 1), and the
    JSON array of the first %(count)s."""
    tables = table_names()
    # What `grammar.NOT_PROMPTS` selects: no `mlflow.prompt.is_prompt` tag equal to "true"
    # (tests compare the two paths' pages).
    prompt = literal(orjson.dumps({grammar.PROMPT_TAG: "true"}).decode())
    where = f"WHERE NOT (m.mlflow_tags @> {prompt}::jsonb)" if without_prompts else ""
    return f"""
        WITH found AS (
            SELECT m.id FROM {tables["model"]} m {where} ORDER BY m.name
            LIMIT %(count)s + 1 OFFSET %(offset)s
        )
        SELECT (SELECT count(*) FROM found),
               '[' || COALESCE((
                   SELECT string_agg({model_json("m", "owner")}, ',' ORDER BY m.name)
                   FROM (SELECT * FROM {tables["model"]} WHERE id IN (SELECT id FROM found)
                         ORDER BY name LIMIT %(count)s) m
                   JOIN {tables["user"]} owner ON owner.id = m.owner_id
               ), '') || ']'
        """
