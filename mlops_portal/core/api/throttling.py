"""Request rates per API token and per user, answered with 429 and Retry-After."""

import logging
import math
import time
from functools import lru_cache

from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache
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
    windows in the shared cache, so every web worker adds to the same counts. Past either
    limit: 429 with Retry-After (the end of that window).

    On Redis (production) both counts are one round trip: a Lua script of atomic increments;
    other caches (a folder for `make run`, memory in tests) read then write. Fails open when
    the cache is down, like the token failure throttle: an outage must not refuse every call."""

    def allow_request(self, request, view) -> bool:
        self.retry_after = None
        if not request.user.is_authenticated:
            return True  # only login and liveness answer anonymous callers
        buckets = self.buckets(request)
        if not buckets:
            return True
        try:
            counts = increment([(key, math.ceil(wait) + 1) for key, _, wait in buckets])
        except (RedisError, OSError):
            logger.warning("API rate limit skipped: the cache does not answer", exc_info=True)
            return True
        over = [
            wait for (_, limit, wait), count in zip(buckets, counts, strict=True) if count > limit
        ]
        if over:
            self.retry_after = max(over)
            return False
        return True

    def buckets(self, request) -> list[tuple[str, int, float]]:
        """(cache key, limit, seconds until the window ends) for the token and the user."""
        now = time.time()
        buckets = []
        for scope, ident, rate in (
            ("token", getattr(request.auth, "id", None), settings.API_THROTTLE_TOKEN_RATE),
            ("user", request.user.pk, settings.API_THROTTLE_USER_RATE),
        ):
            if ident is None or rate is None:
                continue
            limit, window = parse_rate(rate)
            start = int(now // window) * window
            key = f"throttle:{scope}:{ident}:{window}:{start}"
            buckets.append((key, limit, start + window - now))
        return buckets

    def wait(self):
        return self.retry_after


# Each counter starts its window at 0 (SET … NX EX) and goes up by one: one round trip.
INCREMENT_SCRIPT = """
local counts = {}
for i, key in ipairs(KEYS) do
  redis.call('SET', key, 0, 'NX', 'EX', ARGV[i])
  counts[i] = redis.call('INCR', key)
end
return counts
"""


def increment(keys: list[tuple[str, int]]) -> list[int]:
    """Add one to each (key, seconds to keep it) counter; return the new counts."""
    cache = caches["default"]
    if isinstance(cache, RedisCache):
        full_keys = [cache.make_and_validate_key(key) for key, _ in keys]
        return redis_script(cache)(keys=full_keys, args=[timeout for _, timeout in keys])
    counts = cache.get_many([key for key, _ in keys])  # other caches: read, then write
    new = {key: counts.get(key, 0) + 1 for key, _ in keys}
    cache.set_many(new, max(timeout for _, timeout in keys))
    return [new[key] for key, _ in keys]


def redis_script(cache: RedisCache):
    """The increment script, registered once per cache object. A client and a pipeline built
    per request cost more than the round trip: 10.2 M → 8.4 M instructions for one API GET
    (bench/instructions.py "get one version"). The connection pool is the cache's own."""
    script = getattr(cache, "_throttle_increment", None)
    if script is None:
        client = cache._cache.get_client(None, write=True)
        script = cache._throttle_increment = client.register_script(INCREMENT_SCRIPT)
    return script
