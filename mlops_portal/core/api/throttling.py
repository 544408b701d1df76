"""Request rates per API token and per user, answered with 429 and Retry-After."""

import logging
import math
import time
from functools import lru_cache

from django.conf import settings
from django.core.cache import cache
from redis import RedisError
from rest_framework.throttling import BaseThrottle

from mlops_portal.env import RATE_UNITS

logger = logging.getLogger(__name__)


@lru_cache(maxsize=16)
def parse_rate(rate: str) -> tuple[int, int]:
    """`600/minute` → (600 requests, 60 seconds)."""
    count, _, unit = rate.partition("/")
    return int(count), RATE_UNITS[unit[:1].lower()]


class ApiRateThrottle(BaseThrottle):
    """Counts each authenticated request against its token (API_THROTTLE_TOKEN_RATE) and
    its user (API_THROTTLE_USER_RATE: every token and the session together), in fixed
    windows in the shared cache, so every web worker adds to the same counts.

    Two cache round trips per request (one read of both counts, one write), whatever the
    number of limits. Like DRF's own throttles the read-then-write is not atomic: under
    concurrent requests a few may slip past the limit, never the other way. Fails open when
    the cache is down, like the token failure throttle."""

    def allow_request(self, request, view) -> bool:
        self.retry_after = None
        user = request.user
        if not user.is_authenticated:
            return True  # only login and liveness answer anonymous callers
        now = time.time()
        buckets = []  # (key, limit, seconds until its window ends)
        credential = getattr(request.auth, "id", None)
        for scope, ident, rate in (
            ("token", credential, settings.API_THROTTLE_TOKEN_RATE),
            ("user", user.pk, settings.API_THROTTLE_USER_RATE),
        ):
            if ident is None or rate is None:
                continue
            limit, window = parse_rate(rate)
            start = int(now // window) * window
            buckets.append(
                (f"throttle:{scope}:{ident}:{window}:{start}", limit, start + window - now)
            )
        if not buckets:
            return True
        try:
            counts = cache.get_many([key for key, _, _ in buckets])
            over = [wait for key, limit, wait in buckets if counts.get(key, 0) >= limit]
            if over:
                self.retry_after = max(over)
                return False
            longest = max(math.ceil(wait) for _, _, wait in buckets)
            cache.set_many({key: counts.get(key, 0) + 1 for key, _, _ in buckets}, longest + 1)
        except (RedisError, OSError):
            logger.warning("API rate limit skipped: the cache does not answer", exc_info=True)
        return True

    def wait(self):
        return self.retry_after
