import os
import sys

import redis
from django.conf import settings
from django.core.management.base import BaseCommand

FILESYSTEM_BROKER = "filesystem://"


class Command(BaseCommand):
    help = (
        "Print the Celery broker URL `make run` should use: CELERY_BROKER_URL if set, "
        "else REDIS_URL when Redis answers, else the filesystem broker under var/."
    )

    def handle(self, *args, **options):
        explicit = os.environ.get("CELERY_BROKER_URL")
        if explicit:
            self.say(f"Broker: {explicit} (from CELERY_BROKER_URL).")
            chosen = explicit
        elif redis_answers(settings.REDIS_URL):
            self.say(
                f"Broker: Redis at {settings.REDIS_URL}. "
                "For the no-install filesystem broker: CELERY_BROKER_URL=filesystem:// make run"
            )
            chosen = settings.REDIS_URL
        else:
            self.say(
                f"Broker: filesystem queue under {settings.VAR_DIR / 'celery-broker'} "
                f"(Redis at {settings.REDIS_URL} did not answer; start Redis and run `make run` "
                "again to use it, or set REDIS_URL)."
            )
            chosen = FILESYSTEM_BROKER
        self.stdout.write(chosen)

    def say(self, line: str) -> None:
        print(line, file=sys.stderr)


def redis_answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1).ping())
    except (redis.RedisError, OSError, ValueError):
        return False
