"""One search over models, versions, targets, deployments, incidents and pages.

PostgreSQL: full-text search ranked with ts_rank, on the expressions that the GIN indexes
of each app's `*_search_index` migration cover. SQLite (the embedded default): a
case-insensitive match, ranked by where it matched (the name first).

Versions are found by their model's name too ("iris-classifier v4", "iris-classifier 4",
"iris-classifier"), which lives in another table: see `_ranked_versions`."""

import re
from collections.abc import Callable
from dataclasses import dataclass

from django.contrib.postgres.search import SearchQuery, SearchRank, SearchVector
from django.db import connection
from django.db.models import Case, FloatField, Q, Value, When

from deployments.models import Deployment, ModelVersion, RegisteredModel, Target
from docs_app.models import Page
from monitoring.models import Incident

PER_KIND = 10
MAX_WORDS = 8
WORD = re.compile(r"[A-Za-z0-9]+")
VERSION_NUMBER = re.compile(r"[vV]?(\d{1,9})")  # "v4" or "4"
# A version's own words: description, tags (the JSON text) and number. The GIN indexes
# `version_search_idx` and `model_name_search_idx` (docs_app/migrations/0003) are built
# from these very expressions, so the planner can match them.
VERSION_DOCUMENT = SearchVector("description", "tags", "number", config="english")
MODEL_NAME_DOCUMENT = SearchVector("name", config="english")


@dataclass(frozen=True)
class Kind:
    name: str
    queryset: object
    fields: tuple[str, ...]  # the first is the title the result shows
    ranked: Callable[[str], object] | None = None  # its own search, instead of `fields`

    def label(self, row) -> str:
        if isinstance(row, ModelVersion):
            return f"{row.model.name} v{row.number}"
        if isinstance(row, Deployment):
            return f"#{row.pk} {row.version} → {row.target}"
        return str(getattr(row, self.fields[0]))


def _ranked_versions(query: str):
    """Versions whose words match the query, where the leading words may instead match the
    model's name: "iris-classifier v4" is iris-classifier's version 4, "iris-classifier"
    all its versions (newest first), "candidate" every version tagged or described so.

    Ranked by how many words the model's name covered, then by ts_rank on the version's
    own document. Two queries, both on GIN indexes: the models whose names match, then
    the versions."""
    words = WORD.findall(query)[:MAX_WORDS]
    if not words:
        return ModelVersion.objects.none()
    if connection.vendor != "postgresql":
        return _versions_matching_plainly(words)
    covered = _models_named_by_leading_words(words)
    document = VERSION_DOCUMENT
    matches = Q(document=_version_terms(words))
    for leading in range(1, max(covered.values(), default=0) + 1):
        models = [pk for pk, most in covered.items() if most >= leading]
        rest = words[leading:]
        matches |= Q(model_id__in=models, **({"document": _version_terms(rest)} if rest else {}))
    return (
        _versions.annotate(document=document)
        .filter(matches)
        .annotate(
            rank=_name_score(covered) + SearchRank(document, _version_terms(words, joiner=" | "))
        )
        .order_by("-rank", "model__name", "-number")
    )


def _name_score(covered: dict[int, int]) -> Case:
    """How many words the version's model's name covered (0 when none)."""
    by_count = {}
    for pk, most in covered.items():
        by_count.setdefault(most, []).append(pk)
    return Case(
        *[When(model_id__in=pks, then=Value(float(most))) for most, pks in by_count.items()],
        default=Value(0.0),
        output_field=FloatField(),
    )


def _models_named_by_leading_words(words: list[str]) -> dict[int, int]:
    """{model id: how many leading words its name matches (at least one)}."""
    name = MODEL_NAME_DOCUMENT
    most = Case(
        *[When(name_document=_prefix_terms(words[:n]), then=Value(n))
          for n in range(len(words), 0, -1)],
        default=Value(1),
    )  # fmt: skip
    return dict(
        RegisteredModel.objects.annotate(name_document=name)
        .filter(name_document=_prefix_terms(words[:1]))
        .annotate(most=most)
        .values_list("pk", "most")
    )


def _version_terms(words: list[str], joiner=" & ") -> SearchQuery:
    """A version's part of the query: numbers exactly ("v4" and "4" both mean version 4, not
    40), other words as prefixes."""
    terms = []
    for word in words:
        number = VERSION_NUMBER.fullmatch(word)
        terms.append(f"({int(number[1])} | v{int(number[1])})" if number else f"{word}:*")
    return SearchQuery(joiner.join(terms), config="english", search_type="raw")


def _versions_matching_plainly(words: list[str]):
    """SQLite: the same split of the words, with case-insensitive matches; a number matches
    the version's number only ("1" is in "run 101")."""
    matches = Q(pk__in=[])
    for leading in range(len(words) + 1):
        match = Q()
        for word in words[:leading]:
            match &= Q(model__name__icontains=word)
        for word in words[leading:]:
            number = VERSION_NUMBER.fullmatch(word)
            if number:
                match &= Q(number=int(number[1]))
            else:
                match &= Q(description__icontains=word) | Q(tags__icontains=word)
        matches |= match
    return _versions.filter(matches).order_by("model__name", "-number")


_versions = ModelVersion.objects.select_related("model")

KINDS = (
    Kind("models", RegisteredModel.objects.all(), ("name", "description")),
    Kind("versions", _versions, ("description",), ranked=_ranked_versions),
    Kind("targets", Target.objects.all(), ("name", "description")),
    Kind("deployments", Deployment.objects.select_related("version__model", "target"), ("reason",)),
    Kind("incidents", Incident.objects.all(), ("title", "description")),
    Kind("pages", Page.objects.all(), ("title", "body")),
)


KINDS_BY_NAME = {kind.name: kind for kind in KINDS}


def search(query: str, per_kind: int = PER_KIND) -> dict[str, list]:
    """The best results of each kind, grouped; empty groups are left out."""
    query = clean(query)
    if not query:
        return {}
    groups = {}
    for kind in KINDS:
        rows = _ranked(kind, query)[:per_kind]
        if rows:
            groups[kind.name] = results(kind, rows)
    return groups


def search_kind(query: str, kind_name: str):
    """All results of one kind, ranked: a queryset to paginate (None for an unknown kind)."""
    kind = KINDS_BY_NAME.get(kind_name)
    query = clean(query)
    return (kind, _ranked(kind, query)) if kind and query else (kind, None)


def results(kind: Kind, rows) -> list[tuple[str, str, object]]:
    return [(kind.label(row), row.get_absolute_url(), row) for row in rows]


def clean(query: str) -> str:
    return (query or "").strip()[:200]


def _ranked(kind: Kind, query: str):
    if kind.ranked is not None:
        return kind.ranked(query)
    if connection.vendor == "postgresql":
        terms = prefix_query(query)
        if terms is None:
            return kind.queryset.none()
        vector = SearchVector(*kind.fields, config="english")
        # Filtering with @@ on the indexed expression lets PostgreSQL use the GIN index.
        return (
            kind.queryset.annotate(document=vector, rank=SearchRank(vector, terms))
            .filter(document=terms)
            .order_by("-rank", "-pk")
        )
    matches = Q()
    for field in kind.fields:
        matches |= Q(**{f"{field}__icontains": query})
    return kind.queryset.filter(matches).order_by("-pk")


def prefix_query(query: str) -> SearchQuery | None:
    """Every word as a prefix ("chur" finds churn), all required; None without words."""
    words = WORD.findall(query)[:MAX_WORDS]
    return _prefix_terms(words) if words else None


def _prefix_terms(words: list[str]) -> SearchQuery:
    return SearchQuery(" & ".join(f"{word}:*" for word in words), config="english",
                       search_type="raw")  # fmt: skip


def gin_index_sql(table: str, fields: tuple[str, ...], name: str) -> str:
    """The index matching SearchVector(*fields, config="english") as Django compiles it."""
    document = " || ' ' || ".join(f"COALESCE({field}, '')" for field in fields)
    return (
        f"CREATE INDEX IF NOT EXISTS {name} ON {table} "
        f"USING GIN (to_tsvector('english'::regconfig, {document}))"
    )
