import logging
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from redis import RedisError
from rest_framework import authentication, exceptions

from mlops_portal.choices import TokenScope
from mlops_portal.core import security_log
from mlops_portal.core.api.throttling import RateCount
from mlops_portal.core.tokens import TokenExpired, authenticate_token

logger = logging.getLogger(__name__)


class TokenFailureThrottle:
    """Counts bad API tokens per client address in fixed windows of
    API_TOKEN_FAILURE_WINDOW_SECONDS, in the shared cache (Redis in production), so every
    web worker adds to the same count: after API_TOKEN_FAILURE_LIMIT failures, token
    requests from that address answer 429 until the window ends, whatever the token.

    Past the limit every token request from the address answers 429, a good token's too,
    so guessing stops paying off. A bad token's request reads the count before it is logged
    and counted; a good token's reads it in the round trip that counts the request against
    its rates (ApiTokenAuthentication), after the lookup: one Redis round trip per request
    instead of two, for the price of an indexed lookup per guess while an address is over.
    Fails open: with the cache down, tokens are still checked, just not throttled."""

    def __init__(self, request):
        self.window = settings.API_TOKEN_FAILURE_WINDOW_SECONDS
        self.limit = settings.API_TOKEN_FAILURE_LIMIT
        now = time.time()
        start = int(now // self.window) * self.window
        self.wait = start + self.window - now
        ip = security_log.client_ip(request)
        self.key = f"throttle:token-failures:{ip}:{start}"

    def check(self) -> None:
        """Raise Throttled (429, with Retry-After) when this address is over the limit."""
        try:
            failures = cache.get(self.key, 0)
        except (RedisError, OSError):
            logger.warning("Token throttle skipped: the cache does not answer", exc_info=True)
            return
        self.refuse_over_limit(failures)

    def refuse_over_limit(self, failures: int | None) -> None:
        """Raise Throttled when `failures` (this address's count, read) reach the limit."""
        if failures is not None and failures >= self.limit:
            raise exceptions.Throttled(
                wait=self.wait, detail="Too many requests with an invalid API token."
            )

    def record_failure(self) -> None:
        try:
            # add + incr: atomic in Redis, so concurrent workers never lose a count.
            cache.add(self.key, 0, timeout=int(self.window) + 1)
            cache.incr(self.key)
        except (RedisError, OSError, ValueError):  # ValueError: expired between add and incr
            logger.warning("Token failure not counted: the cache does not answer", exc_info=True)


@dataclass(frozen=True)
class TokenCredential:
    """`request.auth` of a token request: which token, and what it may do."""

    id: int
    scope: str

    @property
    def read_only(self) -> bool:
        return self.scope == TokenScope.READ


class ApiTokenAuthentication(authentication.BaseAuthentication):
    """`Authorization: Token <secret>` or `Authorization: Bearer <secret>`."""

    keywords = ("token", "bearer")

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode("latin-1").split()
        if not header or header[0].lower() not in self.keywords:
            return None
        throttle = TokenFailureThrottle(request)
        if len(header) != 2:
            self._failed(request, throttle, "malformed")
            raise exceptions.AuthenticationFailed(
                "Malformed Authorization header: use 'Token <secret>'."
            )
        try:
            user = authenticate_token(header[1])
        except TokenExpired as expired:
            self._failed(request, throttle, "expired")
            raise exceptions.AuthenticationFailed(
                f"This token expired at {expired.args[0]:%Y-%m-%d %H:%M} UTC; create a new one."
            ) from None
        if user is None:
            self._failed(request, throttle, "invalid")
            raise exceptions.AuthenticationFailed("Invalid or revoked token.")
        # One round trip: the address's token failures, read, and this request counted
        # against its rates (ApiRateThrottle answers from `rate_count` after the permissions).
        counted = RateCount.of(user.pk, user.token_id, read_key=throttle.key)
        throttle.refuse_over_limit(counted.read)
        request.rate_count = counted
        return user, TokenCredential(user.token_id, user.token_scope)

    def _failed(self, request, throttle, reason: str) -> None:
        throttle.check()  # over the limit: 429, neither logged nor counted
        throttle.record_failure()
        security_log.token_failed(request, reason)

    def authenticate_header(self, request):
        return "Token"
