"""`.values()` queries that hot API endpoints run on every request, compiled to SQL once per
process instead of once per request.

Django builds and compiles a queryset's SQL anew each time it runs; for the small queries
behind "get one version" or a page of versions, that cost more CPU than sending the query
to PostgreSQL and reading the rows back (bench/instructions.py). A `CompiledValues` is
written as an ordinary queryset, built once with placeholder arguments; each request reuses
its SQL with the real arguments, and its rows go through the same converters Django applies
(JSON columns decoded with orjson, several times faster than `json.loads`).
"""

import json
from collections.abc import Callable

import orjson
from django.db import connections, models

# Appended to a compiled query to read one page of it (PostgreSQL and SQLite alike).
PAGE_SQL = " LIMIT %s OFFSET %s"


class CompiledValues:
    """The rows (dicts) of `build(*arguments)`, a `.values()` queryset. `placeholders` are
    one value per argument, of its type, that the queryset would never hold as a constant:
    they mark where each argument goes among the compiled query's parameters.

    `shape`, when given, is called once per database with the columns' names and returns
    what makes each row (a list of converted values) into what `rows` answers instead of a
    dict: a response's own dict, built without an intermediate one."""

    def __init__(
        self,
        build: Callable[..., models.QuerySet],
        *placeholders,
        using="default",
        shape: Callable[[list[str]], Callable[[list], object]] | None = None,
    ):
        self.build = build
        self.placeholders = placeholders
        self.using = using
        self.shape = shape
        self._compiled: dict[str, tuple] = {}  # by database vendor (tests may switch)

    def rows(self, *arguments, limit: int | None = None, offset: int = 0) -> list:
        connection = connections[self.using]
        sql, slots, names, make_row, converters = self._compile(connection)
        params = [slot.value(arguments) for slot in slots]
        if limit is not None:
            sql, params = sql + PAGE_SQL, [*params, limit, offset]
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            found = cursor.fetchall()
        json_positions, others = converters
        rows = []
        for row in found:
            row = list(row)
            # JSON columns inline (a page of 25 versions has 200 values): a call of a
            # converter per value cost more than orjson's parse.
            for position in json_positions:
                text = row[position]
                if text is not None:
                    try:
                        row[position] = orjson.loads(text)
                    except orjson.JSONDecodeError:  # not text, or beyond orjson
                        row[position] = decode_json(text, None, connection)
            for position, convert, expression in others:
                row[position] = convert(row[position], expression, connection)
            rows.append(dict(zip(names, row, strict=True)) if make_row is None else make_row(row))
        return rows

    def _compile(self, connection) -> tuple:
        compiled = self._compiled.get(connection.vendor)
        if compiled is None:
            compiled = self._compiled[connection.vendor] = self._compile_now(connection)
        return compiled

    def _compile_now(self, connection) -> tuple:
        query = self.build(*self.placeholders).query
        compiler = query.get_compiler(connection=connection)
        sql, params = compiler.as_sql()
        slots = [self._slot(param) for param in params]
        missing = set(range(len(self.placeholders))) - {s.index for s in slots}
        if missing:
            raise ValueError(f"placeholders {sorted(missing)} are not parameters of: {sql}")
        # As ValuesIterable names a row's columns.
        names = list(query.selected or ())
        if not names:
            names = [*query.extra_select, *query.values_select, *query.annotation_select]
        expressions = [select[0] for select in compiler.select[: compiler.col_count]]
        json_positions, others = [], []
        for position, (converts, expression) in compiler.get_converters(expressions).items():
            if [fast_converter(convert) for convert in converts] == [decode_json]:
                json_positions.append(position)
            else:
                others += [(position, convert, expression) for convert in converts]
        make_row = None if self.shape is None else self.shape(names)
        return sql, slots, names, make_row, (json_positions, others)

    def _slot(self, param):
        for index, placeholder in enumerate(self.placeholders):
            if isinstance(param, type(placeholder)) and param == placeholder:
                return Argument(index, type(param))
        return Constant(param)


class Argument:
    """A parameter of the compiled query that is an argument of `rows`, wrapped in the type
    the database adapter gave the placeholder (psycopg's Int4 for an integer column)."""

    def __init__(self, index: int, kind: type):
        self.index = index
        self.kind = kind

    def value(self, arguments):
        return self.kind(arguments[self.index])


class Constant:
    """A parameter of the compiled query that is the same on every request."""

    index = None

    def __init__(self, value):
        self.value_ = value

    def value(self, arguments):
        return self.value_


def fast_converter(convert):
    """JSONField's converter without a custom decoder becomes orjson's (`rows` applies it
    inline); others stay."""
    field = getattr(convert, "__self__", None)
    if (
        isinstance(field, models.JSONField)
        and getattr(convert, "__func__", None) is models.JSONField.from_db_value
        and field.decoder is None
    ):
        return decode_json
    return convert


def decode_json(value, expression, connection):
    """JSONField.from_db_value, with orjson (which refuses what json.loads also refuses,
    except integers beyond 64 bits: those go to json.loads)."""
    if value is None or not isinstance(value, str | bytes):
        return value
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value


class InstanceReader:
    """Model instances from rows of hand-written SQL that select `model`'s concrete columns
    in order (`columns`): each value goes through the converters a queryset applies, then
    `from_db`, as a queryset would. For the hot lookups written as SQL (the API token's
    user, the claimed version number's model): `.raw()` works out its columns' order anew
    on every call, as much CPU again as the query."""

    def __init__(self, model: type[models.Model]):
        self.model = model
        self.fields = model._meta.concrete_fields
        self.attnames = [field.attname for field in self.fields]
        self._converters: dict[str, list[tuple]] = {}  # by database vendor (tests may switch)
        self._columns: dict[tuple[str, str], str] = {}  # by (vendor, prefix)

    def columns(self, connection, prefix: str = "") -> str:
        """The model's columns for a SELECT or RETURNING list, each after `prefix` ("u."),
        written once per database vendor and prefix."""
        key = (connection.vendor, prefix)
        found = self._columns.get(key)
        if found is None:
            quote = connection.ops.quote_name
            found = self._columns[key] = ", ".join(
                f"{prefix}{quote(f.column)}" for f in self.fields
            )
        return found

    def instance(self, connection, row) -> models.Model:
        """The instance read from the first len(fields) values of `row`."""
        values = list(row[: len(self.fields)])
        for position, convert, column in self._converters_for(connection):
            values[position] = convert(values[position], column, connection)
        return self.model.from_db(connection.alias, self.attnames, values)

    def _converters_for(self, connection) -> list[tuple]:
        found = self._converters.get(connection.vendor)
        if found is None:
            table = self.model._meta.db_table
            found = self._converters[connection.vendor] = [
                (position, convert, column)
                for position, column in enumerate(f.get_col(table) for f in self.fields)
                for convert in [
                    *connection.ops.get_db_converters(column),
                    *column.get_db_converters(connection),
                ]
            ]
        return found
