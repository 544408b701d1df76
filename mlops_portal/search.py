"""One search over models, versions, targets, deployments, incidents and pages.

PostgreSQL: full-text search ranked with ts_rank, on the expressions that the GIN indexes
of each app's `*_search_index` migration cover. SQLite (the embedded default): a
case-insensitive match, ranked by where it matched (the name first)."""

import re
from dataclasses import dataclass

from django.contrib.postgres.search import SearchQuery, SearchRank, SearchVector
from django.db import connection
from django.db.models import Q

from deployments.models import Deployment, ModelVersion, RegisteredModel, Target
from docs_app.models import Page
from monitoring.models import Incident

PER_KIND = 10


@dataclass(frozen=True)
class Kind:
    name: str
    queryset: object
    fields: tuple[str, ...]  # the first is the title the result shows

    def label(self, row) -> str:
        if isinstance(row, ModelVersion):
            return f"{row.model.name} v{row.number}"
        if isinstance(row, Deployment):
            return f"#{row.pk} {row.version} → {row.target}"
        return str(getattr(row, self.fields[0]))


KINDS = (
    Kind("models", RegisteredModel.objects.all(), ("name", "description")),
    Kind("versions", ModelVersion.objects.select_related("model"), ("description",)),
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
    words = re.findall(r"[A-Za-z0-9]+", query)[:8]
    if not words:
        return None
    return SearchQuery(" & ".join(f"{word}:*" for word in words), config="english",
                       search_type="raw")  # fmt: skip


def gin_index_sql(table: str, fields: tuple[str, ...], name: str) -> str:
    """The index matching SearchVector(*fields, config="english") as Django compiles it."""
    document = " || ' ' || ".join(f"COALESCE({field}, '')" for field in fields)
    return (
        f"CREATE INDEX IF NOT EXISTS {name} ON {table} "
        f"USING GIN (to_tsvector('english'::regconfig, {document}))"
    )
