"""A faster reading of PostgreSQL `timestamptz` values, for every query of the portal.

Django registers its own loader for `timestamptz` (to attach its time zone), a subclass of
psycopg's pure-Python one: psycopg's C loader is never used, and parsing a timestamp in
Python cost a third of the CPU of a page of 100 models in MLflow's format (four timestamps
a model, bench/profile_endpoint.py). In UTC, which the portal always runs its connections
in (USE_TZ), PostgreSQL writes `2026-12-02 07:58:19.123456+00`, which the standard
library's C `datetime.fromisoformat` reads as the same aware UTC datetime. Anything else
(another DateStyle or time zone, BC dates, infinity) goes to Django's loader as before.
"""

from datetime import UTC, datetime
from functools import cache

from django.db.backends.signals import connection_created


@cache  # one class per Django loader class (Django makes one per time zone)
def fast_timestamptz_loader(django_loader: type) -> type:
    """A loader class that reads UTC timestamps with `fromisoformat`, else as `django_loader`."""

    class UtcTimestamptzLoader(django_loader):
        fast_utc = True

        def load(self, data):
            if self.timezone is UTC:
                text = bytes(data).decode()
                if text.endswith("+00"):
                    try:
                        return datetime.fromisoformat(text)
                    except ValueError:
                        pass
            return super().load(data)

    return UtcTimestamptzLoader


def use_fast_timestamps(sender, connection, **kwargs) -> None:
    """On each new PostgreSQL connection (psycopg 3), put the fast loader in front of the one
    Django registered; it keeps Django's `timezone`, so Django's per-cursor check (which
    re-registers its loader only when the time zones differ) leaves it in place."""
    if connection.vendor != "postgresql" or not hasattr(connection.connection, "adapters"):
        return
    from psycopg.postgres import types
    from psycopg.pq import Format

    adapters = connection.connection.adapters
    current = adapters.get_loader(types["timestamptz"].oid, Format.TEXT)
    if current is None or getattr(current, "fast_utc", False):
        return
    adapters.register_loader("timestamptz", fast_timestamptz_loader(current))


def install() -> None:
    connection_created.connect(use_fast_timestamps, dispatch_uid="portal-fast-timestamps")
