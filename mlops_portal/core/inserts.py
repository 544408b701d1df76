"""Insert a row and the rows that name it in one SQL statement.

Registering a version writes four rows that belong together: the version, its event, its
change record and the outbox row of its validation job. Through the ORM that was four
INSERTs: four round trips, each built and compiled anew, and auditlog's signal diffing the
row again. On PostgreSQL they are one statement here (data-modifying WITH queries), whose SQL
is built once per process: one round trip, and the children read the parent's new id inside
the statement. Elsewhere (SQLite, `make run`) the same INSERTs run one after another.

save() and its signals do not run: the caller builds every row they would have written (its
change record with `audit.creation_record`). Run it inside a transaction, so that a failure
of any row leaves none of them.
"""

import functools
from dataclasses import dataclass
from datetime import datetime

import orjson
from django.db import connections, models
from django.utils import timezone

# How a child's column takes the parent's new id: (the value in Python, its SQL on PostgreSQL).
LINKS = {
    "id": (lambda pk: pk, "(SELECT id FROM parent)"),
    "text": (str, "(SELECT id::text FROM parent)"),  # a generic key (auditlog's object_pk)
    "list": (lambda pk: [pk], "jsonb_build_array((SELECT id FROM parent))"),  # a job's args
}


@dataclass(frozen=True)
class Child:
    """An unsaved row to insert after the parent; `links` maps each of its columns (attname)
    that takes the parent's id to how (a key of LINKS)."""

    row: models.Model
    links: dict[str, str]


def insert_family(parent: models.Model, children: list[Child], using="default") -> None:
    """INSERT the unsaved `parent`, then `children` with the parent's new id in their
    `links` columns; set every row's pk and links as save() would."""
    connection = connections[using]
    if connection.vendor != "postgresql":
        _insert_one_by_one(connection, parent, children)
        return
    sql = _family_sql(_shape(parent, children))
    params = [_json_row(parent, ())] + [_json_row(c.row, c.links) for c in children]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        ids = cursor.fetchone()
    _saved(connection, parent, ids[0])
    for child, pk in zip(children, ids[1:], strict=True):
        _link(child, ids[0])
        _saved(connection, child.row, pk)


def _insert_one_by_one(connection, parent, children) -> None:
    rows = [(parent, ()), *((child.row, child.links) for child in children)]
    for row, links in rows:
        if row is not parent:
            _link(Child(row, links), parent.pk)
        table, columns = _table_columns(type(row), ())
        placeholders = ", ".join(["%s"] * len(columns))
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({placeholders}) "
                f"RETURNING {_pk(type(row))}",
                _values(connection, row, ()),
            )
            _saved(connection, row, cursor.fetchone()[0])


def _shape(parent, children) -> tuple:
    """What the statement depends on (the tables and which columns are links): its cache key."""
    return (type(parent), *((type(c.row), tuple(sorted(c.links.items()))) for c in children))


@functools.cache
def _family_sql(shape) -> str:
    """Each row arrives as one JSON object, read by jsonb_populate_record: one parameter a
    row, where a parameter a column (sixty here) made psycopg parse the statement anew on
    every call (it caches statements of at most 50 parameters)."""
    parent, *children = shape
    steps = [f"parent AS ({_insert_sql(parent, {})} RETURNING {_pk(parent)} AS id)"]
    for index, (model, links) in enumerate(children):
        steps.append(
            f"child{index} AS ({_insert_sql(model, dict(links))} RETURNING {_pk(model)} AS id)"
        )
    names = ["parent", *(f"child{index}" for index in range(len(children)))]
    selected = ", ".join(f"(SELECT id FROM {name})" for name in names)
    return f"WITH {', '.join(steps)} SELECT {selected}"


def _insert_sql(model, links) -> str:
    table, columns = _table_columns(model, links)
    values = columns + [LINKS[how][1] for how in links.values()]
    columns += [_quote(model._meta.get_field(name).column) for name in links]
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) SELECT {', '.join(values)} "
        f"FROM jsonb_populate_record(NULL::{table}, %s::jsonb)"
    )


def _table_columns(model, links) -> tuple[str, list[str]]:
    columns = [_quote(field.column) for field in _fields(model, links)]
    return _quote(model._meta.db_table), columns


def _fields(model, links) -> list[models.Field]:
    """The columns written from the row's own values: all but the id and the links."""
    return [f for f in model._meta.concrete_fields if not f.primary_key and f.attname not in links]


def _json_row(row, links) -> str:
    """The row's columns as one JSON object (PostgreSQL reads each value with its column's
    type: a timestamp from its ISO text, a JSON column from the value itself)."""
    values = {}
    for column, attname, kinds, field in _json_plan(type(row), tuple(links)):
        value = getattr(row, attname)
        # A value of the type the field prepares already goes as it is; anything else (None,
        # a file, a naive time, a lazy text) goes through the field, as save() does.
        if type(value) not in kinds or (type(value) is datetime and value.tzinfo is None):
            value = field.get_prep_value(_value(field, row))
        values[column] = value
    return orjson.dumps(values, default=str).decode()


@functools.cache
def _json_plan(model, links) -> list[tuple]:
    """For each column written from the row's own values: its name, attname, the types
    whose values the field's pre_save and get_prep_value hand back unchanged, and the field."""
    return [(f.column, f.attname, _unchanged_types(f), f) for f in _fields(model, links)]


def _unchanged_types(field) -> tuple:
    """Types whose values `field.get_prep_value(field.pre_save(row, add=True))` returns as
    they are, judged by Django's own methods: a field that overrides either gets ()."""
    saves_as_read = type(field).pre_save in (models.Field.pre_save, models.DateTimeField.pre_save)
    if not saves_as_read:
        return ()
    if isinstance(field, models.ForeignKey):
        field = field.target_field
    prepare = type(field).get_prep_value
    if prepare in (models.CharField.get_prep_value, models.TextField.get_prep_value):
        return (str,)
    if prepare is models.IntegerField.get_prep_value:
        return (int,)
    if prepare is models.BooleanField.get_prep_value:
        return (bool,)
    if prepare is models.DateTimeField.get_prep_value:
        return (datetime,)  # an aware one (USE_TZ): _json_row checks
    if prepare is models.Field.get_prep_value:  # JSONField among them: lazy texts only change
        return (dict, list, str, int, float, bool)
    return ()


def _values(connection, row, links) -> list:
    """The row's values as its fields prepare them for the database, as save() does."""
    return [field.get_db_prep_save(_value(field, row), connection)
            for field in _fields(type(row), links)]  # fmt: skip


def _value(field, row):
    """What save() would write: a timestamp set already is kept (the change record shows
    it), an empty `auto_now` one gets now."""
    if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
        if getattr(row, field.attname) is None:
            setattr(row, field.attname, timezone.now())
        return getattr(row, field.attname)
    return field.pre_save(row, add=True)


def _link(child: Child, parent_pk: int) -> None:
    for name, how in child.links.items():
        setattr(child.row, name, LINKS[how][0](parent_pk))


def _saved(connection, row, pk) -> None:
    row.pk = pk
    row._state.adding = False
    row._state.db = connection.alias


def _pk(model) -> str:
    return _quote(model._meta.pk.column)


def _quote(name: str) -> str:
    return f'"{name}"'
