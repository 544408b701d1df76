import logging
import signal
import threading
import time

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import DatabaseError, close_old_connections

from mlops_portal.core import outbox

log = logging.getLogger("mlops_portal.core.outbox")

BATCH = 100
PRUNE_EVERY_SECONDS = 300


class Command(BaseCommand):
    help = (
        "Publish the outbox's jobs that their committing process could not send (broker "
        "down, process killed), retrying with backoff until the broker answers, and delete "
        "published ones after OUTBOX_RETENTION_HOURS. Runs until SIGTERM or SIGINT."
    )

    def handle(self, *args, **options):
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        self.stdout.write(
            f"Outbox relay: polling every {settings.OUTBOX_RELAY_INTERVAL_SECONDS} s.", ending="\n"
        )
        self.stdout.flush()
        # Its own loop, not a beat task: beat sends its tasks through the broker, which is
        # exactly what may be down.
        next_prune = 0.0
        while not stop.is_set():
            published = self.relay()
            if time.monotonic() >= next_prune:
                next_prune = time.monotonic() + PRUNE_EVERY_SECONDS
                self.prune()
            if published < BATCH:  # a full batch: more may be waiting, go on at once
                stop.wait(settings.OUTBOX_RELAY_INTERVAL_SECONDS)
        self.stdout.write("Outbox relay: stopped.")

    def relay(self) -> int:
        try:
            counts = outbox.relay_once(BATCH)
        except DatabaseError:
            log.exception("outbox relay: database unavailable")
            close_old_connections()  # a database restart must not end the relay
            return 0
        if counts["published"]:
            log.info("outbox relay: published %d job(s)", counts["published"])
        return counts["published"]

    def prune(self) -> None:
        try:
            deleted = outbox.prune()
        except DatabaseError:
            log.exception("outbox relay: could not prune")
            return
        if deleted:
            log.info("outbox relay: deleted %d published job(s)", deleted)
