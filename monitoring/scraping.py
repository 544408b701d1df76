"""Fetching model servers' /metrics and reading the counters the portal rolls up.

The fetch is the probe engine's (`monitoring.probing`): one aiohttp session, a semaphore
capping concurrency, a deadline per server, the network policy checked by the resolver.
A scrape never raises: every target gets exactly one outcome, with the text or a short
reason. `read_counters` turns a text into the few numbers the roll-ups need, or raises
MetricsError saying what is wrong with it."""

import asyncio
import math
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from deployments.serving.metrics import PREDICTION_PATHS
from monitoring.netpolicy import NetPolicy
from monitoring.probing import USER_AGENT, PolicyResolver, ProbeSpec, describe

BODY_LIMIT = 1024 * 1024
MAX_ERROR_LENGTH = 300
REQUESTS = "model_server_requests_total"
DURATION = "model_server_request_duration_seconds"
PREDICTIONS = "model_server_predictions_total"
UPTIME = "model_server_uptime_seconds"


@dataclass(frozen=True)
class ScrapeOutcome:
    deployment_id: int
    at: datetime
    text: str | None  # None when the scrape failed
    error: str  # "" when it worked


class MetricsError(ValueError):
    """The text is not a model server's metrics; the message says why."""


async def scrape_all(
    targets: Sequence[tuple[int, str]], policy: NetPolicy, concurrency: int, timeout: float
) -> list[ScrapeOutcome]:
    """GET every (deployment id, metrics URL); one outcome each, in input order."""
    if not targets:
        return []
    semaphore = asyncio.Semaphore(max(1, concurrency))
    connector = aiohttp.TCPConnector(
        resolver=PolicyResolver(policy), limit=max(1, concurrency), limit_per_host=0
    )
    async with aiohttp.ClientSession(
        connector=connector, cookie_jar=aiohttp.DummyCookieJar(),
        headers={"User-Agent": USER_AGENT}, trust_env=False,
    ) as session:  # fmt: skip

        async def one(deployment_id: int, url: str) -> ScrapeOutcome:
            async with semaphore:
                return await scrape_one(session, deployment_id, url, policy, timeout)

        return await asyncio.gather(*(one(pk, url) for pk, url in targets))


def scrape_all_sync(targets, policy, concurrency, timeout) -> list[ScrapeOutcome]:
    """For the Celery task: a fresh event loop (its own thread when one already runs)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(scrape_all(targets, policy, concurrency, timeout))
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, scrape_all(targets, policy, concurrency, timeout)).result()


async def scrape_one(session, deployment_id, url, policy, timeout) -> ScrapeOutcome:
    at = datetime.now(UTC)
    text, error = None, ""
    try:
        refused = policy.check_url(url, resolve=False)
        if refused:
            error = f"refused by policy: {refused}"
        else:
            text, error = await _get(session, url, time.perf_counter() + timeout)
    except Exception as exc:
        error = describe(exc, ProbeSpec(check_id=deployment_id, url=url, timeout=timeout))
    return ScrapeOutcome(deployment_id, at, text if not error else None, error[:MAX_ERROR_LENGTH])


async def _get(session, url, deadline) -> tuple[str | None, str]:
    timeout = aiohttp.ClientTimeout(total=max(0.001, deadline - time.perf_counter()))
    async with session.get(url, allow_redirects=False, timeout=timeout) as response:
        if response.status != 200:
            return None, f"HTTP {response.status} from /metrics"
        body = await response.content.read(BODY_LIMIT + 1)
        if len(body) > BODY_LIMIT:
            return None, f"metrics body over {BODY_LIMIT // 1024} KiB"
        return body.decode("utf-8", errors="replace"), ""


def read_counters(text: str) -> dict:
    """The cumulative counters of a model server's metrics text:

    {"requests", "errors" (5xx), "client_errors" (4xx): of predictions
     (/predict and V2 infer),
     "buckets": {le: cumulative count}, "count", "uptime", "predictions": {label: n}}
    """
    counters = {"requests": 0.0, "errors": 0.0, "client_errors": 0.0, "buckets": {},
                "count": None, "uptime": None, "predictions": {}}  # fmt: skip
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                _read_sample(counters, sample)
    except MetricsError:
        raise
    except Exception as exc:  # the parser raises ValueError, IndexError, KeyError, …
        raise MetricsError(f"malformed metrics text: {type(exc).__name__}: {exc}") from exc
    if counters["count"] is None or not counters["buckets"]:
        raise MetricsError(f"not a model server's metrics: no {DURATION} histogram")
    return counters


def _read_sample(counters: dict, sample) -> None:
    name, labels, value = sample.name, sample.labels, sample.value
    if name.startswith(("model_server_requests", DURATION, "model_server_predictions")) and (
        not math.isfinite(value) or value < 0
    ):
        raise MetricsError(f"{name} has the value {value}")
    if name == REQUESTS and labels.get("path") in PREDICTION_PATHS:
        status = int(labels.get("status", "0") or 0)
        counters["requests"] += value
        if status >= 500:
            counters["errors"] += value
        elif status >= 400:
            counters["client_errors"] += value
    elif name == f"{DURATION}_bucket":
        counters["buckets"][labels["le"]] = value
    elif name == f"{DURATION}_count":
        counters["count"] = value
    elif name == PREDICTIONS:
        label = labels.get("label", "other")[:64]
        counters["predictions"][label] = counters["predictions"].get(label, 0) + value
    elif name == UPTIME:
        counters["uptime"] = value
