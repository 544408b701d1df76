"""Serving metrics: scrape every live deployment's /metrics, turn its counters into deltas,
and add them to the deployment's minute and hour roll-ups.

A scrape round reads each server once (`monitoring.scraping`), then, in one transaction,
locks the deployments' scrape states (a concurrent round waits and then sees the counters
this one stored, so nothing is counted twice), computes the deltas and upserts the touched
roll-ups. A counter lower than last time (or a lower uptime) means the server restarted:
everything it counted since is the delta. A failed scrape (dead or slow server, malformed
text) is recorded on the state and counted in the roll-up's `scrape_errors`; the counters
are cumulative, so the next good scrape still counts the traffic in between."""

from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from deployments.models import Deployment
from monitoring.choices import Resolution
from monitoring.models import ServingRollup, ServingScrapeState
from monitoring.scraping import MetricsError, read_counters, scrape_all_sync
from monitoring.services.checks import net_policy

MINUTE_ROLLUP_RETENTION_DAYS = 8
TOTALS = ("requests", "errors", "client_errors")
ROLLUP_FIELDS = (
    "requests", "errors", "client_errors", "latency_buckets", "latency_p50", "latency_p95",
    "latency_p99", "predictions", "scrapes", "scrape_errors",
)  # fmt: skip


def scrape_live_deployments(now=None) -> dict[str, int]:
    """The beat job: scrape every live deployment once; return counts of ok and failed."""
    live = list(
        Deployment.objects.live().exclude(endpoint="").values_list("pk", "version_id", "endpoint")
    )
    if not live:
        return {"scraped": 0, "failed": 0}
    targets = [(pk, f"{endpoint.rstrip('/')}/metrics") for pk, _, endpoint in live]
    outcomes = scrape_all_sync(
        targets, net_policy(), settings.SERVING_SCRAPE_CONCURRENCY,
        settings.SERVING_SCRAPE_TIMEOUT_SECONDS,
    )  # fmt: skip
    versions = {pk: version_id for pk, version_id, _ in live}
    return record_scrapes(outcomes, versions, now or timezone.now())


def record_scrapes(outcomes, versions: dict[int, int], now) -> dict[str, int]:
    """Store one round's outcomes: states, deltas into roll-ups. `versions` maps each
    deployment id to its version id."""
    ids = sorted(o.deployment_id for o in outcomes)
    ServingScrapeState.objects.bulk_create(
        [ServingScrapeState(deployment_id=pk) for pk in ids], ignore_conflicts=True
    )
    minute = now.replace(second=0, microsecond=0)
    buckets = {Resolution.MINUTE: minute, Resolution.HOUR: minute.replace(minute=0)}
    failed = 0
    with transaction.atomic():
        states = {
            s.deployment_id: s
            for s in ServingScrapeState.objects.select_for_update()
            .filter(deployment_id__in=ids)
            .order_by("deployment_id")
        }
        rollups = _rollups_for_update(ids, versions, buckets)
        for outcome in outcomes:
            state = states[outcome.deployment_id]
            delta = _apply(state, outcome, now)
            failed += delta is None
            for resolution in buckets:
                _add(rollups[(outcome.deployment_id, resolution)], delta)
        ServingScrapeState.objects.bulk_update(
            states.values(), ["scraped_at", "counters", "last_ok", "last_error",
                              "consecutive_errors"],
        )  # fmt: skip
        ServingRollup.objects.bulk_create(
            rollups.values(), update_conflicts=True,
            unique_fields=["deployment", "resolution", "bucket_start"],
            update_fields=list(ROLLUP_FIELDS), batch_size=1000,
        )  # fmt: skip
    return {"scraped": len(outcomes) - failed, "failed": failed}


def _rollups_for_update(ids, versions, buckets) -> dict:
    """The minute and hour roll-ups this round adds to, existing ones locked (one query)."""
    this_minute = Q(resolution=Resolution.MINUTE, bucket_start=buckets[Resolution.MINUTE])
    this_hour = Q(resolution=Resolution.HOUR, bucket_start=buckets[Resolution.HOUR])
    found = {
        (r.deployment_id, r.resolution): r
        for r in ServingRollup.objects.select_for_update().filter(
            this_minute | this_hour, deployment_id__in=ids
        )
    }
    for pk in ids:
        for resolution, start in buckets.items():
            found.setdefault(
                (pk, resolution),
                ServingRollup(deployment_id=pk, version_id=versions[pk], resolution=resolution,
                              bucket_start=start, latency_buckets={}, predictions={}),
            )  # fmt: skip
    return found


def _apply(state, outcome, now) -> dict | None:
    """Update the scrape state from one outcome; return the counters' delta since the last
    good scrape, or None when this scrape failed."""
    state.scraped_at = now
    counters, error = None, outcome.error
    if not error:
        try:
            counters = read_counters(outcome.text)
        except MetricsError as exc:
            error = str(exc)[:300]
    if error:
        state.last_ok, state.last_error = False, error
        state.consecutive_errors += 1
        return None
    delta = counter_delta(state.counters or None, counters)
    state.counters, state.last_ok, state.last_error, state.consecutive_errors = (
        counters, True, "", 0,
    )  # fmt: skip
    return delta


def counter_delta(previous: dict | None, current: dict) -> dict:
    """What happened between two reads of the cumulative counters. No previous read, or a
    restart in between (a counter or the uptime went down): everything since the start."""
    if previous is None or restarted(previous, current):
        previous = {"buckets": {}, "predictions": {}}
    delta = {name: max(0, int(current[name] - previous.get(name, 0))) for name in TOTALS}
    delta["buckets"] = _per_bucket(current["buckets"], previous["buckets"])
    delta["predictions"] = {
        label: int(n - previous["predictions"].get(label, 0))
        for label, n in current["predictions"].items()
        if n - previous["predictions"].get(label, 0) > 0
    }
    return delta


def restarted(previous: dict, current: dict) -> bool:
    if (current.get("uptime") or 0) < (previous.get("uptime") or 0):
        return True
    if any(current[name] < previous.get(name, 0) for name in TOTALS):
        return True
    if (current.get("count") or 0) < (previous.get("count") or 0):
        return True
    return any(n < previous["predictions"].get(k, 0) for k, n in current["predictions"].items())


def _per_bucket(current: dict, previous: dict) -> dict[str, int]:
    """Cumulative bucket counts (two reads) → new observations per bucket bound."""
    now, before = _non_cumulative(current), _non_cumulative(previous)
    return {le: round(n - before.get(le, 0)) for le, n in now.items() if n > before.get(le, 0)}


def _non_cumulative(cumulative: dict) -> dict:
    result, below = {}, 0.0
    for le in sorted(cumulative, key=float):
        result[le] = cumulative[le] - below
        below = cumulative[le]
    return result


def _add(rollup, delta) -> None:
    rollup.scrapes += 1
    if delta is None:
        rollup.scrape_errors += 1
        return
    for name in TOTALS:
        setattr(rollup, name, getattr(rollup, name) + delta[name])
    rollup.latency_buckets = merge(rollup.latency_buckets, delta["buckets"])
    rollup.predictions = merge(rollup.predictions, delta["predictions"])
    p50, p95, p99 = quantiles(rollup.latency_buckets)
    rollup.latency_p50, rollup.latency_p95, rollup.latency_p99 = p50, p95, p99


def merge(a: dict, b: dict) -> dict:
    """Sum two {key: count} dicts."""
    merged = dict(a)
    for key, n in b.items():
        merged[key] = merged.get(key, 0) + n
    return merged


def quantiles(buckets: dict, fractions=(0.5, 0.95, 0.99)) -> tuple:
    """Latency quantiles in milliseconds from {le: count per bucket}, interpolated inside
    the bucket as Prometheus' histogram_quantile; None without observations. A quantile in
    the +Inf bucket is the highest finite bound."""
    bounds = sorted(((float(le), n) for le, n in buckets.items()), key=lambda b: b[0])
    total = sum(n for _, n in bounds)
    if not total:
        return tuple(None for _ in fractions)
    results = []
    for fraction in fractions:
        rank, below, lower = fraction * total, 0, 0.0
        value = None
        for bound, n in bounds:
            if n and below + n >= rank:
                value = (
                    lower
                    if bound == float("inf")
                    else lower + (bound - lower) * ((rank - below) / n)
                )
                break
            below += n
            if bound != float("inf"):
                lower = bound
        results.append(round((value if value is not None else lower) * 1000, 3))
    return tuple(results)


def prune(now) -> int:
    """Delete minute roll-ups older than MINUTE_ROLLUP_RETENTION_DAYS; hours are kept."""
    cutoff = now - timedelta(days=MINUTE_ROLLUP_RETENTION_DAYS)
    deleted, _ = ServingRollup.objects.filter(
        resolution=Resolution.MINUTE, bucket_start__lt=cutoff
    ).delete()
    return deleted
