"""The transactional outbox: every Celery job is first a row, written in the transaction of
the change that asks for it, and only then a message.

- `enqueue(task, *args)` writes the row (in the caller's transaction, or in its own) and,
  once that commits, publishes it at once: the fast path. A broker error there is logged and
  hands the row to the relay; it never reaches the request, whose change is committed.
- `relay_once()`, looped by `manage.py relay_outbox`, claims rows nobody has published, sends
  them and marks them; a broker error leaves them pending with the error and a later
  `relay_at` (backoff), so the jobs go out within seconds of the broker coming back.

Delivery is at least once: a process that dies between sending and marking leaves the row
to the relay, which sends it again. Every task must therefore be idempotent (ours claim
their work with a conditional UPDATE, so a duplicate finds nothing to do).

This module imports no feature app: callers pass their task (or its name).
"""

import functools
import logging
import random
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from mlops_portal.broker import QuickSender
from mlops_portal.core import logs
from mlops_portal.models import OutboxMessage

log = logging.getLogger(__name__)

CLAIM_SQL = """
UPDATE {table} SET relay_at = %s
WHERE published_at IS NULL AND relay_at <= %s
  AND id IN (SELECT id FROM {table} WHERE published_at IS NULL AND relay_at <= %s
             ORDER BY relay_at LIMIT %s {lock})
RETURNING *
"""


def enqueue(task, *args, queue=None, countdown=None) -> OutboxMessage:
    """Ask for `task` (a Celery task or its name) to run with `args` once the current
    transaction commits, `countdown` seconds later at the earliest, on `queue` (default:
    the task's route). Nothing is sent if the transaction rolls back. Return the row."""
    return enqueue_many(task, [args], queue=queue, countdown=countdown)[0]


def enqueue_many(task, args_list, *, queue=None, countdown=None) -> list[OutboxMessage]:
    """`enqueue` for several jobs of one task: one INSERT, one publish after commit."""
    rows = new_jobs(task, args_list, queue=queue, countdown=countdown)
    if not rows:
        return rows
    # The caller's transaction, or one of its own; no savepoint: two round trips fewer.
    with transaction.atomic(savepoint=False):
        OutboxMessage.objects.bulk_create(rows)
        publish_on_commit(rows)
    return rows


def new_jobs(task, args_list, *, queue=None, countdown=None) -> list[OutboxMessage]:
    """Unsaved rows for `task`, one per args, for a caller that inserts them itself (then
    calls `publish_on_commit`); `enqueue_many` is the usual way."""
    now = timezone.now()
    request_id = logs.current_request_id() or ""
    return [
        OutboxMessage(
            task=getattr(task, "name", task),
            request_id=request_id,
            args=list(args),
            queue=queue or "",
            available_at=now + timedelta(seconds=countdown or 0),
            # Left to the committing process for a lease; the relay takes it after that.
            relay_at=now + timedelta(seconds=settings.OUTBOX_LEASE_SECONDS),
            created_at=now,
        )
        for args in args_list
    ]


def publish_on_commit(rows) -> None:
    """Publish the inserted `rows` once the current transaction commits (the fast path)."""
    transaction.on_commit(lambda: publish_committed(rows))


def publish_committed(rows) -> None:
    """The fast path, run on commit: send the rows and mark them published. A failure is
    logged and hands what was not sent to the relay at once; it never raises, since the
    change that asked for the jobs is already committed."""
    try:
        sent, unsent, error = _send(rows)
        _mark(sent, unsent, error, retry_at=timezone.now())
    except Exception:  # the database itself: the rows' lease expires, the relay sends them
        log.exception("outbox: could not record the publishing of %d job(s)", len(rows))
        return
    if unsent:
        log.warning(
            "outbox: broker unavailable, %d job(s) left to the relay: %s", len(unsent), error
        )


def relay_once(limit=100, app=None) -> dict[str, int]:
    """Send up to `limit` due rows that nobody is publishing; return how many were
    `published` and how many `failed` (left pending with their error, retried later).

    Two relays never take the same row: the claim moves `relay_at` past now in one UPDATE,
    which a second relay's UPDATE no longer matches (PostgreSQL: it also skips the rows the
    first one has locked; SQLite runs one writer at a time)."""
    rows = claim(limit)
    sent, unsent, error = _send(rows, app)
    attempts = unsent[0].attempts + 1 if unsent else 0
    _mark(sent, unsent, error, retry_at=timezone.now() + timedelta(seconds=backoff(attempts)))
    if unsent:
        log.warning("outbox relay: broker unavailable, %d job(s) pending: %s", len(unsent), error)
    return {"published": len(sent), "failed": len(unsent)}


def claim(limit: int) -> list[OutboxMessage]:
    """Take up to `limit` rows that are unpublished and due for the relay, oldest first,
    moving their `relay_at` one lease ahead so that no other publisher takes them."""
    now = timezone.now()
    lease = now + timedelta(seconds=settings.OUTBOX_LEASE_SECONDS)
    lock = "FOR UPDATE SKIP LOCKED" if connection.vendor == "postgresql" else ""
    sql = CLAIM_SQL.format(table=OutboxMessage._meta.db_table, lock=lock)
    adapt = connection.ops.adapt_datetimefield_value
    with transaction.atomic():
        rows = list(OutboxMessage.objects.raw(sql, [adapt(lease), adapt(now), adapt(now), limit]))
    return sorted(rows, key=lambda row: (row.relay_at, row.pk))


def backoff(attempts: int) -> float:
    """Seconds before the relay tries a row again after its `attempts`-th failure: doubling
    from 1 s up to OUTBOX_RETRY_MAX_SECONDS, with jitter so that relays do not beat as one."""
    if attempts <= 0:
        return 0.0
    ceiling = min(2.0 ** (attempts - 1), settings.OUTBOX_RETRY_MAX_SECONDS)
    return ceiling * random.uniform(0.8, 1.0)


def prune(now=None) -> int:
    """Delete the rows published more than OUTBOX_RETENTION_HOURS ago; return how many."""
    now = now or timezone.now()
    cutoff = now - timedelta(hours=settings.OUTBOX_RETENTION_HOURS)
    deleted, _ = OutboxMessage.objects.filter(published_at__lt=cutoff).delete()
    return deleted


def publish(message: OutboxMessage, app=None) -> None:
    """Send one row's message to the broker; raise what the broker raised. No retries here:
    the row is the retry."""
    if app is None:
        from mlops_portal.celery import app
    countdown = (message.available_at - timezone.now()).total_seconds()
    # The task's first job goes through Celery, the next ones copy its message
    # (mlops_portal.broker.QuickSender): what Celery would send, for a third of the CPU.
    sender = quick_sender(app)
    sender.send(message.task, message.args, message.queue, message.request_id, countdown)


@functools.cache
def quick_sender(app) -> QuickSender:
    """The app's one QuickSender (it keeps the messages it may copy)."""
    return QuickSender(app)


def _send(rows, app=None):
    """Publish `rows` in order until the broker fails; return (sent ids, unsent rows, error).
    The first failure stops the batch: with the broker down, the rest would fail as well."""
    sent = []
    for index, row in enumerate(rows):
        try:
            publish(row, app)
        except Exception as exc:  # whatever the transport raises: kombu, redis, socket errors
            return sent, rows[index:], f"{exc.__class__.__name__}: {exc}"[:2000]
        sent.append(row.pk)
    return sent, [], ""


def _mark(sent, unsent, error, retry_at) -> None:
    if sent:
        _mark_published(sent, timezone.now())
    if unsent:
        tried, untried = unsent[0], unsent[1:]
        OutboxMessage.objects.filter(pk=tried.pk).update(
            attempts=F("attempts") + 1, last_error=error, relay_at=retry_at
        )
        if untried:
            OutboxMessage.objects.filter(pk__in=[row.pk for row in untried]).update(
                relay_at=retry_at
            )


def _mark_published(ids, now) -> None:
    """UPDATE … SET published_at, written by hand: the fast path runs it after every job a
    request asks for, and building the ORM's UPDATE cost more than its round trip."""
    table = OutboxMessage._meta.db_table
    marks = ", ".join(["%s"] * len(ids))
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET published_at = %s WHERE id IN ({marks})",
            [connection.ops.adapt_datetimefield_value(now), *ids],
        )
