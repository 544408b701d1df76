"""Request rates per API token and per user, answered with 429 and Retry-After."""

import logging
import math
import time
from dataclasses import dataclass
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
    other caches (a folder for `make run`, memory in tests) read then write. A token request
    was already counted by its authentication (`RateCount.of` in ApiTokenAuthentication), in
    the round trip that read its address's token failures; a session request is counted
    here. Fails open when the cache is down, like the token failure throttle: an outage must
    not refuse every call."""

    def allow_request(self, request, view) -> bool:
        self.retry_after = None
        if not request.user.is_authenticated:
            return True  # only login and liveness answer anonymous callers
        counted = getattr(request, "rate_count", None)
        if counted is None:
            counted = RateCount.of(request.user.pk, getattr(request.auth, "id", None))
        self.retry_after = counted.wait
        return counted.wait is None

    def wait(self):
        return self.retry_after


@dataclass(frozen=True)
class RateCount:
    """A request counted against its rates: `wait` is None under every limit, else the
    seconds until the window it is over ends; `read` is the value of the one key read in
    the same round trip (None: absent, or the cache did not answer)."""

    wait: float | None
    read: int | None = None

    @classmethod
    def of(cls, user_id, token_id=None, *, read_key: str | None = None) -> "RateCount":
        """Count a request of `user_id` (with `token_id`, when a token made it), reading
        `read_key` in the same round trip."""
        buckets = rate_buckets(user_id, token_id)
        if not buckets and read_key is None:
            return cls(None)  # both rates off: nothing to count or read
        try:
            read, counts = increment(
                [(key, math.ceil(wait) + 1) for key, _, wait in buckets], read_key
            )
        except (RedisError, OSError):
            logger.warning("API rate limit skipped: the cache does not answer", exc_info=True)
            return cls(None)
        over = [
            wait for (_, limit, wait), count in zip(buckets, counts, strict=True) if count > limit
        ]
        return cls(max(over) if over else None, read)


def rate_buckets(user_id, token_id=None) -> list[tuple[str, int, float]]:
    """(cache key, limit, seconds until the window ends) for the token and the user."""
    now = time.time()
    buckets = []
    for scope, ident, rate in (
        ("token", token_id, settings.API_THROTTLE_TOKEN_RATE),
        ("user", user_id, settings.API_THROTTLE_USER_RATE),
    ):
        if ident is None or rate is None:
            continue
        limit, window = parse_rate(rate)
        start = int(now // window) * window
        key = f"throttle:{scope}:{ident}:{window}:{start}"
        buckets.append((key, limit, start + window - now))
    return buckets


# Reads one key (ARGV[1]: its name, '' for none), then starts each counter at 0 in its window
# (SET … NX EX) and adds one: one round trip. Returns the read value (false when absent)
# followed by the new counts.
INCREMENT_SCRIPT = """
local found = false
if ARGV[1] ~= '' then
  found = redis.call('GET', ARGV[1])
end
local counts = {found}
for i, key in ipairs(KEYS) do
  redis.call('SET', key, 0, 'NX', 'EX', ARGV[i + 1])
  counts[i + 1] = redis.call('INCR', key)
end
return counts
"""


def increment(keys: list[tuple[str, int]], read_key: str | None = None):
    """Add one to each (key, seconds to keep it) counter; return the value of `read_key`
    (an integer, None when absent or not asked) and the new counts."""
    cache = caches["default"]
    if isinstance(cache, RedisCache):
        read_name = cache.make_and_validate_key(read_key) if read_key else ""
        full_keys = [cache.make_and_validate_key(key) for key, _ in keys]
        found, *counts = redis_script(cache)(
            keys=full_keys, args=[read_name, *(timeout for _, timeout in keys)]
        )
        return (int(found) if found else None), counts
    names = [key for key, _ in keys]
    counts = cache.get_many([*names, read_key] if read_key else names)  # other caches: read,
    new = {key: counts.get(key, 0) + 1 for key in names}  # then write
    if new:
        cache.set_many(new, max(timeout for _, timeout in keys))
    return counts.get(read_key), [new[key] for key in names]


def redis_script(cache: RedisCache):
    """The increment script, registered once per cache object. A client and a pipeline built
    per request cost more than the round trip: 10.2 M → 8.4 M instructions for one API GET
    (bench/instructions.py "get one version"). The connection pool is the cache's own."""
    script = getattr(cache, "_throttle_increment", None)
    if script is None:
        client = cache._cache.get_client(None, write=True)
        script = cache._throttle_increment = client.register_script(INCREMENT_SCRIPT)
    return script
