"""MLflow's search grammar over the registry's querysets: filters (`name LIKE 'x%' AND
tags.k = 'v'`), `order_by` and page tokens (base64 of `{"offset": n}`, as MLflow's)."""

import base64
import binascii
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime

from django.db.models import F, Lookup, Q, TextField, Value
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Coalesce
from django.db.models.lookups import Exact, In

from deployments.mlflow_api.errors import invalid

TOKEN = re.compile(
    r"""\s*(?:
    (?P<string>'[^']*'|"[^"]*")
    | (?P<number>-?\d+(?:\.\d+)?)
    | (?P<op><=|>=|!=|<>|=|<|>)
    | (?P<paren>[(),])
    | (?P<word>[A-Za-z_][\w]*(?:\.(?:[\w]+|`[^`]*`|"[^"]*"))*|`[^`]*`)
    )""",
    re.VERBOSE,
)


@dataclass(frozen=True)
class Clause:
    kind: str  # "attribute" or "tag"
    key: str
    comparator: str
    value: object  # str, int, or a list of str for IN


class Like(Lookup):
    """MLflow's LIKE: SQL's own (case-sensitive on PostgreSQL), wildcards as sent."""

    lookup_name = "mlflow_like"
    operator = "LIKE"

    def as_sql(self, compiler, connection):
        lhs, lhs_params = self.process_lhs(compiler, connection)
        rhs, rhs_params = self.process_rhs(compiler, connection)
        operator = self.operator
        if connection.vendor != "postgresql":
            operator = "LIKE"  # SQLite's LIKE ignores ASCII case already
        return f"{lhs} {operator} {rhs}", [*lhs_params, *rhs_params]


class ILike(Like):
    lookup_name = "mlflow_ilike"
    operator = "ILIKE"


class NotEqual(Lookup):
    """`<>`: NULL (a missing tag) matches neither = nor !=, as in MLflow."""

    lookup_name = "mlflow_ne"

    def as_sql(self, compiler, connection):
        lhs, lhs_params = self.process_lhs(compiler, connection)
        rhs, rhs_params = self.process_rhs(compiler, connection)
        return f"{lhs} <> {rhs}", [*lhs_params, *rhs_params]


def parse_filter(text: str) -> list[Clause]:
    """The clauses of `text`, joined by AND; MlflowError for anything else."""
    tokens = _tokens(text or "")
    clauses, position = [], 0
    while position < len(tokens):
        clause, position = _clause(tokens, position, text)
        clauses.append(clause)
        if position < len(tokens):
            if tokens[position] != ("word", "AND"):
                raise invalid(f"Invalid clause(s) in filter string: {text}")
            position += 1
            if position == len(tokens):
                raise invalid(f"Invalid clause(s) in filter string: {text}")
    return clauses


def _tokens(text: str) -> list[tuple[str, str]]:
    tokens, position = [], 0
    while position < len(text):
        if not text[position:].strip():
            break
        match = TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise invalid(f"Invalid clause(s) in filter string: {text}")
        kind = match.lastgroup
        value = match.group(kind)
        if kind == "word" and value.upper() in ("AND", "LIKE", "ILIKE", "IN", "NOT"):
            value = value.upper()
        tokens.append((kind, value))
        position = match.end()
    return tokens


def _clause(tokens, position, text) -> tuple[Clause, int]:
    def at(index):
        return tokens[index] if index < len(tokens) else (None, None)

    kind, word = at(position)
    if kind != "word" or word in ("AND", "LIKE", "ILIKE", "IN", "NOT"):
        raise invalid(f"Invalid clause(s) in filter string: {text}")
    clause_kind, key = _identifier(word)
    kind, comparator = at(position + 1)
    position += 2
    if (kind, comparator) == ("word", "NOT") and at(position) == ("word", "IN"):
        comparator, position = "NOT IN", position + 1
    elif kind not in ("op", "word") or comparator == "AND":
        raise invalid(f"Invalid clause(s) in filter string: {text}")
    comparator = "!=" if comparator == "<>" else comparator
    if comparator in ("IN", "NOT IN"):
        values, position = _value_list(tokens, position, text)
        return Clause(clause_kind, key, comparator, values), position
    kind, value = at(position)
    if kind == "string":
        return Clause(clause_kind, key, comparator, value[1:-1]), position + 1
    if kind == "number":
        return Clause(clause_kind, key, comparator, value), position + 1
    raise invalid(f"Invalid clause(s) in filter string: {text}")


def _identifier(word: str) -> tuple[str, str]:
    head, _, rest = word.partition(".")
    if head.lower() in ("tag", "tags") and rest:
        return "tag", rest.strip('`"')
    if head.lower() in ("attribute", "attributes") and rest:
        return "attribute", rest.strip('`"')
    return "attribute", word.strip('`"')


def _value_list(tokens, position, text) -> tuple[list[str], int]:
    if position >= len(tokens) or tokens[position] != ("paren", "("):
        raise invalid(f"Invalid clause(s) in filter string: {text}")
    values, position = [], position + 1
    while position < len(tokens):
        kind, value = tokens[position]
        if kind != "string":
            break
        values.append(value[1:-1])
        position += 1
        if position < len(tokens) and tokens[position] == ("paren", ","):
            position += 1
        elif position < len(tokens) and tokens[position] == ("paren", ")"):
            return values, position + 1
    raise invalid(f"Invalid clause(s) in filter string: {text}")


# --- clauses to Q ----------------------------------------------------------------------------

STRING_COMPARATORS = ("=", "!=", "LIKE", "ILIKE")
NUMERIC_COMPARATORS = ("=", "!=", "<", "<=", ">", ">=")
# MLflow attribute → our column, per resource.
MODEL_ATTRIBUTES = {"name": "name"}
VERSION_ATTRIBUTES = {"name": "model__name", "run_id": "run_id", "source_path": "artifact_uri"}
VERSION_NUMERIC = {
    "version_number": "number",
    "creation_timestamp": "created_at",
    "last_updated_timestamp": "updated_at",
}


def models_filter(clauses: list[Clause]) -> Q:
    return _combine(clauses, MODEL_ATTRIBUTES, {}, in_keys=("name",))


def versions_filter(clauses: list[Clause]) -> Q:
    return _combine(clauses, VERSION_ATTRIBUTES, VERSION_NUMERIC, in_keys=("name", "run_id"))


def _combine(clauses, attributes, numeric, in_keys) -> Q:
    condition = Q()
    for clause in clauses:
        if clause.kind == "tag":
            condition &= _tag(clause)
        elif clause.key in attributes:
            condition &= _string(clause, attributes[clause.key], clause.key in in_keys)
        elif clause.key in numeric:
            condition &= _numeric(clause, numeric[clause.key])
        else:
            raise invalid(f"Invalid attribute name: {clause.key}")
    return condition


def _compare(lhs, comparator, value) -> Q:
    lookup = {"=": Exact, "!=": NotEqual, "LIKE": Like, "ILIKE": ILike}[comparator]
    return Q(lookup(lhs, value))


PROMPT_TAG = "mlflow.prompt.is_prompt"


def _tag(clause: Clause) -> Q:
    if clause.key == PROMPT_TAG:
        return _prompts(clause)
    if clause.comparator not in STRING_COMPARATORS or not isinstance(clause.value, str):
        raise invalid(f"Invalid comparator for tag: {clause.comparator}")
    return _compare(KeyTextTransform(clause.key, "mlflow_tags"), clause.comparator, clause.value)


# What the stock client adds to every `search_registered_models()` (MLflow 3).
NOT_PROMPTS = Clause("tag", PROMPT_TAG, "!=", "true")


def only_not_prompts(clauses: list[Clause]) -> bool:
    """Whether the filter is exactly the stock client's "not prompts", nothing else."""
    return clauses == [NOT_PROMPTS]


def _prompts(clause: Clause) -> Q:
    """The client adds `tags.mlflow.prompt.is_prompt != 'true'` to every model search;
    MLflow reads it as "not prompts", models without the tag included (a plain != would
    drop them). `= 'true'` (or `!= 'false'`) asks for prompts only."""
    value = str(clause.value).lower()
    # The tag's text, "" when absent, so that "not a prompt" keeps models without the tag
    # (a negated comparison with NULL would drop them); SQLite has no JSON containment.
    tag_text = Coalesce(
        KeyTextTransform(PROMPT_TAG, "mlflow_tags"), Value(""), output_field=TextField()
    )
    is_prompt = Q(Exact(tag_text, "true"))
    wants_prompts = (clause.comparator, value) in (("=", "true"), ("!=", "false"))
    return is_prompt if wants_prompts else ~is_prompt


def _string(clause: Clause, column: str, allows_in: bool) -> Q:
    if clause.comparator in ("IN", "NOT IN") and allows_in:
        matched = Q(In(F(column), clause.value))
        return ~matched if clause.comparator == "NOT IN" else matched
    if clause.comparator not in STRING_COMPARATORS or not isinstance(clause.value, str):
        raise invalid(f"Invalid comparator for attribute: {clause.comparator}")
    return _compare(F(column), clause.comparator, clause.value)


def _numeric(clause: Clause, column: str) -> Q:
    if clause.comparator not in NUMERIC_COMPARATORS:
        raise invalid(f"Invalid comparator for attribute {clause.key}: {clause.comparator}")
    try:
        value = int(clause.value)
    except (TypeError, ValueError):
        message = f"Invalid value for numeric attribute '{clause.key}': {clause.value!r}"
        raise invalid(message) from None
    if column != "number":
        value = _moment(value)
    lookups = {"=": "exact", "<": "lt", "<=": "lte", ">": "gt", ">=": "gte"}
    if clause.comparator == "!=":
        return ~Q(**{column: value})
    return Q(**{f"{column}__{lookups[clause.comparator]}": value})


def _moment(millis: int) -> datetime:
    try:
        return datetime.fromtimestamp(millis / 1000, tz=UTC)
    except (OverflowError, OSError, ValueError):
        raise invalid(f"Invalid timestamp: {millis}") from None


# --- order_by and pages ----------------------------------------------------------------------

MODEL_ORDER = {"name": "name", "timestamp": "updated_at", "last_updated_timestamp": "updated_at"}
VERSION_ORDER = {
    "name": "model__name",
    "version_number": "number",
    "creation_timestamp": "created_at",
    "last_updated_timestamp": "updated_at",
}
VERSION_DEFAULT_ORDER = ["last_updated_timestamp DESC", "name ASC", "version_number DESC"]


def models_order(order_by: list[str]) -> list:
    fields = _order(order_by, MODEL_ORDER, "Valid keys are '{'timestamp', 'name'}'")
    return _tie_break(fields, ["name"])


def versions_order(order_by: list[str]) -> list:
    fields = _order(
        order_by or VERSION_DEFAULT_ORDER,
        VERSION_ORDER,
        f"Valid keys are {set(VERSION_ORDER)}",
    )
    return _tie_break(fields, ["model__name", "-number"])


def _order(order_by, keys, valid) -> list[str]:
    fields, seen = [], set()
    for text in order_by:
        parts = text.strip().split()
        if (
            not parts
            or len(parts) > 2
            or (len(parts) == 2 and parts[1].upper() not in ("ASC", "DESC"))
        ):
            raise invalid(f"Invalid order_by clause '{text}'. Could not be parsed.")
        key = parts[0].strip("`")
        key = key.split(".", 1)[1] if key.startswith("attribute.") else key
        if key not in keys:
            raise invalid(f"Invalid order by key '{key}' specified. {valid}")
        if keys[key] in seen:
            raise invalid(f"`order_by` contains duplicate fields: {order_by}")
        seen.add(keys[key])
        descending = len(parts) == 2 and parts[1].upper() == "DESC"
        fields.append(("-" if descending else "") + keys[key])
    return fields


def _tie_break(fields: list[str], defaults: list[str]) -> list[str]:
    used = {field.lstrip("-") for field in fields}
    return fields + [field for field in defaults if field.lstrip("-") not in used]


# The databases' OFFSET is a signed 64-bit integer; beyond it the query itself would fail.
LARGEST_OFFSET = 2**63 - 1


def page_offset(token: str) -> int:
    if not token:
        return 0
    try:
        decoded = base64.b64decode(token, validate=True)
    except (binascii.Error, ValueError):
        raise invalid("Invalid page token, could not base64-decode") from None
    try:
        offset = int(json.loads(decoded)["offset"])
    except (ValueError, TypeError, KeyError, RecursionError):
        raise invalid(f"Invalid page token, decoded value={decoded!r}") from None
    if not 0 <= offset <= LARGEST_OFFSET:
        raise invalid(f"Invalid page token, offset={offset}")
    return offset


def page_token(offset: int) -> str:
    return base64.b64encode(json.dumps({"offset": offset}).encode()).decode()
