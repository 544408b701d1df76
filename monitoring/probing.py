"""The probe engine: one HTTP request per health check, thousands of them per second.

A Celery task hands `probe_all_sync` the checks that are due; they run concurrently in one
aiohttp session, so connections to a model server are kept alive and reused from one round
to the next within the batch. What makes it safe and predictable:

- Every probe has its own deadline (`ProbeSpec.timeout`, covering redirects too): a slow or
  dead endpoint costs its own probe that long and never holds back the others. The
  semaphore caps how many run at once; a probe's clock starts when it gets its turn.
- The network policy is enforced where it cannot be dodged. IP literals are checked before
  the request (aiohttp never resolves them); names are checked by `PolicyResolver` on the
  addresses DNS answers at connect time, so a name that changed address since the check was
  saved (DNS rebinding) is refused. Redirects are followed by hand, each Location checked.
- A probe never raises: every spec gets exactly one outcome, in input order, with a short
  reason when it failed.
"""

import asyncio
import errno
import socket
import ssl
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from yarl import URL

from monitoring.netpolicy import NetPolicy

MAX_REDIRECTS = 3
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
# Health answers are small; past this the body is not read and the connection is dropped
# rather than downloading, say, a model file someone pointed a check at.
BODY_LIMIT = 64 * 1024
DNS_CACHE_SECONDS = 30
MAX_ERROR_LENGTH = 300
USER_AGENT = "mlops-portal-prober/1"


@dataclass(frozen=True)
class ProbeSpec:
    check_id: int
    url: str
    method: str = "GET"
    timeout: float = 5.0
    expected_statuses: tuple[int, ...] = (200,)
    latency_threshold_ms: float | None = None


@dataclass(frozen=True)
class ProbeOutcome:
    check_id: int
    at: datetime  # UTC, when the probe started
    ok: bool
    status_code: int | None
    latency_ms: float | None
    error: str  # "" when ok


class PolicyRefused(OSError):
    """Raised by the resolver for a refused address. An OSError, so aiohttp wraps it in a
    ClientConnectorError like any failed lookup, and the probe reports it as a refusal."""


class PolicyResolver(AbstractResolver):
    """Resolve with `inner` (aiohttp's default: getaddrinfo in a thread), then refuse the
    whole answer when any address is refused by the policy: a rebinding answer mixing an
    allowed and a forbidden address must not get a chance to connect to the latter."""

    def __init__(self, policy: NetPolicy, inner: AbstractResolver | None = None) -> None:
        self.policy = policy
        self.inner = inner if inner is not None else DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self.inner.resolve(host, port, family)
        for result in results:
            error = self.policy.check_address(result["host"], host=host)
            if error:
                raise PolicyRefused(errno.EACCES, error)
        return results

    async def close(self) -> None:
        await self.inner.close()


async def probe_all(
    specs: Sequence[ProbeSpec],
    policy: NetPolicy,
    concurrency: int = 200,
    *,
    dns: AbstractResolver | None = None,
) -> list[ProbeOutcome]:
    """Probe every spec; one outcome each, in input order. `dns` replaces the DNS resolver
    under the policy check (tests play DNS with it)."""
    if not specs:
        return []
    concurrency = max(1, concurrency)
    semaphore = asyncio.Semaphore(concurrency)
    connector = aiohttp.TCPConnector(
        resolver=PolicyResolver(policy, dns),
        limit=concurrency,
        # No per-host cap: the semaphore bounds the total, and a probe queued for a pool slot
        # would spend its own timeout waiting on other probes to the same host.
        limit_per_host=0,
        ttl_dns_cache=DNS_CACHE_SECONDS,
        keepalive_timeout=30,
    )
    async with aiohttp.ClientSession(
        connector=connector,
        cookie_jar=aiohttp.DummyCookieJar(),  # no state carried from one check to another
        headers={"User-Agent": USER_AGENT},
        auto_decompress=False,  # the body is drained, never used
        trust_env=False,  # never through a proxy from the environment
    ) as session:

        async def one(spec: ProbeSpec) -> ProbeOutcome:
            async with semaphore:
                return await probe_one(session, spec, policy)

        return await asyncio.gather(*(one(spec) for spec in specs))


def probe_all_sync(
    specs: Sequence[ProbeSpec], policy: NetPolicy, concurrency: int = 200
) -> list[ProbeOutcome]:
    """For the Celery task: run `probe_all` in a fresh event loop.

    When this thread already runs a loop (sync Playwright in the test suite, an async
    caller), the probes get their own thread: asyncio.run refuses to nest."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(probe_all(specs, policy, concurrency))
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, probe_all(specs, policy, concurrency)).result()


async def probe_one(
    session: aiohttp.ClientSession, spec: ProbeSpec, policy: NetPolicy
) -> ProbeOutcome:
    at = datetime.now(UTC)
    started = time.perf_counter()
    status: int | None = None
    try:
        status, error = await fetch(session, spec, policy, started + spec.timeout)
    except Exception as exc:
        error = describe(exc, spec)
    latency_ms = round((time.perf_counter() - started) * 1000, 2) if status is not None else None
    if not error and status is not None:
        error = judge(spec, status, latency_ms)
    return ProbeOutcome(
        check_id=spec.check_id,
        at=at,
        ok=not error,
        status_code=status,
        latency_ms=latency_ms,
        error=error[:MAX_ERROR_LENGTH],
    )


async def fetch(
    session: aiohttp.ClientSession, spec: ProbeSpec, policy: NetPolicy, deadline: float
) -> tuple[int | None, str]:
    """Request spec.url, following up to MAX_REDIRECTS redirects; return (status, error)."""
    url = spec.url
    method = spec.method.upper()
    for hop in range(MAX_REDIRECTS + 1):
        # IP literals skip the resolver, so they are checked here; names are checked when
        # the resolver answers (no blocking DNS lookup in the event loop).
        refused = policy.check_url(url, resolve=False)
        if refused:
            where = "" if hop == 0 else f"redirect to {url}: "
            return None, f"refused by policy: {where}{refused}"
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            raise TimeoutError
        async with session.request(
            method,
            url,
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=remaining),
        ) as response:
            await drain(response)
            location = response.headers.get("Location")
            if (
                response.status not in REDIRECT_STATUSES
                or response.status in spec.expected_statuses  # the redirect is the answer
                or not location
            ):
                return response.status, ""
            url = str(response.url.join(URL(location)))
            if response.status == 303 or (response.status in (301, 302) and method == "POST"):
                method = "GET"  # what browsers do; 307/308 keep the method
    return None, f"too many redirects (more than {MAX_REDIRECTS})"


async def drain(response: aiohttp.ClientResponse) -> None:
    """Read a small body so the connection goes back to the pool; close it on a big one."""
    if response.content_length is not None and response.content_length > BODY_LIMIT:
        response.close()
        return
    remaining = BODY_LIMIT
    while remaining > 0:
        chunk = await response.content.read(remaining)
        if not chunk:
            return
        remaining -= len(chunk)
    if not response.content.at_eof():
        response.close()


def judge(spec: ProbeSpec, status: int, latency_ms: float | None) -> str:
    if status not in spec.expected_statuses:
        expected = " or ".join(str(s) for s in spec.expected_statuses)
        return f"HTTP {status} (expected {expected})"
    threshold = spec.latency_threshold_ms
    if threshold is not None and latency_ms is not None and latency_ms > threshold:
        return f"latency {latency_ms:.0f} ms over {threshold:g} ms"
    return ""


def describe(exc: Exception, spec: ProbeSpec) -> str:
    """A short reason for a failed probe, readable on the check's page."""
    if isinstance(exc, TimeoutError):  # aiohttp's timeouts are TimeoutErrors too
        return f"timed out after {spec.timeout:g} s"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError | aiohttp.ClientSSLError):
        return f"TLS error: {exc}"
    if isinstance(exc, aiohttp.ClientConnectorError):
        cause = exc.os_error
        if isinstance(cause, PolicyRefused):
            return f"refused by policy: {cause.strerror}"
        if isinstance(exc, aiohttp.ClientConnectorDNSError):
            return f"cannot resolve {exc.host}"
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        return f"cannot connect: {cause.strerror or cause}"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "server disconnected without answering"
    if isinstance(exc, aiohttp.InvalidURL):
        return f"invalid URL: {exc}"
    if isinstance(exc, aiohttp.ClientResponseError | aiohttp.ClientPayloadError):
        return f"bad HTTP response: {exc}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS error: {exc}"
    if isinstance(exc, aiohttp.ClientError | OSError):
        return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return f"probe failed: {type(exc).__name__}: {exc}"
