"""Collecting the prediction log: the Redis stream model servers append sampled requests
to (deployments.serving.prediction_log) becomes LoggedPrediction rows, one per request row.

The worker reads the stream in a consumer group, so an entry stays pending until it is
acknowledged (XACK) after its rows are committed: a run that dies re-reads its pending
entries first next time. That is at-least-once; a second copy of a row is dropped by the
unique (prediction_id, row) constraint. Each run takes at most PREDICTION_COLLECT_BATCH
entries, so a backlog is worked off over several runs without one long transaction.
Entries that cannot be read (malformed, or of a deployment the portal no longer has) are
acknowledged and counted, never retried forever."""

import json
from datetime import UTC, datetime

import redis
from django.conf import settings
from django.db import transaction

from deployments.models import Deployment
from monitoring.models import LoggedPrediction

GROUP = "portal"
CONSUMER = "collector"  # one name: a run re-reads what an earlier, dead run left pending
MAX_ROWS_PER_ENTRY = 10_000  # the model server's own limit on instances


def stream_client() -> redis.Redis:
    return redis.Redis.from_url(
        settings.PREDICTION_LOG_URL, socket_connect_timeout=2, socket_timeout=10
    )


def collect_predictions(limit: int | None = None, client=None) -> dict[str, int]:
    """The beat job: move up to `limit` stream entries into LoggedPrediction; return counts
    of entries read, rows written (new ones), and entries skipped as unreadable."""
    client = client or stream_client()
    limit = limit or settings.PREDICTION_COLLECT_BATCH
    stream = settings.PREDICTION_LOG_STREAM
    _ensure_group(client, stream)
    entries = _read(client, stream, "0", limit)  # pending first: a dead run's leftovers
    if len(entries) < limit:
        entries += _read(client, stream, ">", limit - len(entries))
    if not entries:
        return {"entries": 0, "rows": 0, "skipped": 0}
    rows, skipped = rows_of(entries)
    mine = LoggedPrediction.objects.filter(prediction_id__in={row.prediction_id for row in rows})
    with transaction.atomic():
        before = mine.count()
        LoggedPrediction.objects.bulk_create(rows, ignore_conflicts=True, batch_size=1000)
        written = mine.count() - before
    # After the commit: an entry acknowledged before its rows were saved could be lost.
    client.xack(stream, GROUP, *[entry_id for entry_id, _ in entries])
    return {"entries": len(entries), "rows": written, "skipped": skipped}


def _ensure_group(client, stream: str) -> None:
    try:
        client.xgroup_create(stream, GROUP, id="0", mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):  # the group exists: the usual case
            raise


def _read(client, stream: str, start: str, count: int) -> list:
    answer = client.xreadgroup(GROUP, CONSUMER, {stream: start}, count=count)
    return [entry for _, entries in answer for entry in entries if entry[1]]


def rows_of(entries) -> tuple[list[LoggedPrediction], int]:
    """LoggedPrediction rows (unsaved) for stream entries, and how many entries were
    skipped: malformed, or of a deployment that no longer exists. The version is the
    deployment's, as the portal knows it, not what the entry says."""
    parsed, skipped = [], 0
    for _, fields in entries:
        entry = _parse(fields)
        if entry is None:
            skipped += 1
        else:
            parsed.append(entry)
    versions = dict(
        Deployment.objects.filter(pk__in={e["deployment"] for e in parsed}).values_list(
            "pk", "version_id"
        )
    )
    rows = []
    for entry in parsed:
        version_id = versions.get(entry["deployment"])
        if version_id is None:
            skipped += 1
            continue
        rows += [
            LoggedPrediction(
                deployment_id=entry["deployment"],
                version_id=version_id,
                prediction_id=entry["prediction_id"],
                row=index,
                logged_at=entry["at"],
                features=features,
                prediction=prediction,
            )
            for index, (features, prediction) in enumerate(
                zip(entry["rows"], entry["predictions"], strict=False)
            )
        ]
    return rows, skipped


def _parse(fields: dict) -> dict | None:
    """One entry's fields as Python values, or None when they are not a logged request."""
    try:
        text = {key.decode(): value.decode() for key, value in fields.items()}
        entry = {
            "deployment": int(text["deployment"]),
            "prediction_id": text["prediction_id"],
            "at": datetime.fromtimestamp(float(text["at"]), tz=UTC),
            "rows": json.loads(text["rows"]),
            "predictions": json.loads(text["predictions"]),
        }
    except (KeyError, ValueError, UnicodeDecodeError, OverflowError, OSError):
        return None
    valid = (
        0 < len(entry["prediction_id"]) <= 64
        and isinstance(entry["rows"], list)
        and isinstance(entry["predictions"], list)
        and len(entry["rows"]) <= MAX_ROWS_PER_ENTRY
    )
    return entry if valid else None
