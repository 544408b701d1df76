"""The analysis between canary steps: the canary's error rate and p95 latency over the
step's hold, compared with the stable version's over the same time.

Both come from the model servers' own /metrics (deployments/serving/metrics.py), read with
prometheus-client's parser here rather than through monitoring (which deployments must not
import): the counters at the start of a step are kept, and the step's window is the
difference with the counters at its end. p95 is interpolated in the latency histogram's
buckets as Prometheus' histogram_quantile does.

The rules (settings, README "Canary releases"):
- too few canary predictions in the window (< CANARY_MIN_REQUESTS): not judged, it passes;
- error rate (5xx answers to predictions) at most CANARY_MAX_ERROR_RATE_INCREASE
  percentage points above the stable's;
- p95 at most CANARY_MAX_P95_RATIO times the stable's, unless under
  CANARY_P95_FLOOR_SECONDS (a millisecond model's p95 lies in the histogram's first
  buckets, where one bucket more is a ratio of 2 that means nothing)."""

import math
from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families

from deployments.serving.metrics import PREDICTION_PATHS

REQUESTS = "model_server_requests_total"
DURATION = "model_server_request_duration_seconds"
SCRAPE_TIMEOUT = 5.0


class MetricsUnavailable(Exception):
    """A server's /metrics could not be read or is not a model server's."""


@dataclass(frozen=True)
class Rules:
    min_requests: int
    max_error_rate_increase: float  # percentage points
    max_p95_ratio: float
    p95_floor_seconds: float


@dataclass(frozen=True)
class Window:
    """One version's predictions over a step's hold."""

    requests: float
    errors: float
    p95: float | None  # seconds; None without requests

    @property
    def error_rate(self) -> float:
        """Percent of predictions answered with a 5xx."""
        return 100.0 * self.errors / self.requests if self.requests else 0.0

    def describe(self) -> str:
        p95 = f"{self.p95 * 1000:.1f} ms" if self.p95 is not None else "n/a"
        return f"{self.requests:.0f} requests, {self.error_rate:.1f} % errors, p95 {p95}"


@dataclass(frozen=True)
class Verdict:
    passed: bool
    summary: str  # one sentence with the figures, for the timeline
    figures: dict


def scrape(url: str) -> dict:
    """The counters of the model server whose /metrics is `url`."""
    try:
        response = httpx.get(url, timeout=SCRAPE_TIMEOUT)
    except httpx.HTTPError as exc:
        raise MetricsUnavailable(f"{url}: {exc}") from exc
    if response.status_code != 200:
        raise MetricsUnavailable(f"{url}: HTTP {response.status_code}")
    return read_counters(response.text)


def read_counters(text: str) -> dict:
    """{"requests", "errors", "buckets": {le: cumulative count}} of predictions."""
    counters = {"requests": 0.0, "errors": 0.0, "buckets": {}}
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == REQUESTS and sample.labels.get("path") in PREDICTION_PATHS:
                    counters["requests"] += sample.value
                    if int(sample.labels.get("status") or 0) >= 500:
                        counters["errors"] += sample.value
                elif sample.name == f"{DURATION}_bucket":
                    counters["buckets"][sample.labels["le"]] = sample.value
    except Exception as exc:  # the parser raises ValueError, IndexError, KeyError, …
        raise MetricsUnavailable(f"malformed metrics: {type(exc).__name__}: {exc}") from exc
    if not counters["buckets"]:
        raise MetricsUnavailable(f"not a model server's metrics: no {DURATION} histogram")
    return counters


def window(before: dict, after: dict) -> Window:
    """What happened between two readings of one server's counters."""
    if after["requests"] < before.get("requests", 0.0):
        # Counters went back: the server restarted (a Ray router replica Serve replaced),
        # and counts from zero since, as Prometheus' rate() takes a reset.
        before = {}
    buckets = {
        le: after["buckets"][le] - before.get("buckets", {}).get(le, 0.0) for le in after["buckets"]
    }
    requests = after["requests"] - before.get("requests", 0.0)
    errors = after["errors"] - before.get("errors", 0.0)
    return Window(requests=requests, errors=errors, p95=quantile(0.95, buckets))


def quantile(q: float, buckets: dict) -> float | None:
    """The q-quantile of a cumulative histogram {le: count} (histogram_quantile)."""
    ordered = sorted((float(le), count) for le, count in buckets.items())
    if not ordered or ordered[-1][1] <= 0:
        return None
    rank = q * ordered[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in ordered:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound  # beyond the last finite bucket: its bound
            share = (rank - lower_count) / (count - lower_count) if count > lower_count else 1
            return lower_bound + (bound - lower_bound) * share
        lower_bound, lower_count = bound, count
    return lower_bound


def judge(stable: Window, canary: Window, rules: Rules) -> Verdict:
    """Compare the canary's window with the stable's under `rules`."""
    figures = {
        "stable": {"requests": stable.requests, "error_rate": round(stable.error_rate, 3),
                   "p95_seconds": stable.p95},
        "canary": {"requests": canary.requests, "error_rate": round(canary.error_rate, 3),
                   "p95_seconds": canary.p95},
    }  # fmt: skip
    seen = f"canary: {canary.describe()}; stable: {stable.describe()}"
    if canary.requests < rules.min_requests:
        return Verdict(
            True, f"Not judged: {canary.requests:.0f} canary requests, fewer than "
            f"{rules.min_requests} ({seen}).", figures,
        )  # fmt: skip
    problems = []
    allowed = stable.error_rate + rules.max_error_rate_increase
    if canary.error_rate > allowed:
        problems.append(
            f"error rate {canary.error_rate:.1f} % is over the stable's "
            f"{stable.error_rate:.1f} % + {rules.max_error_rate_increase:g} points"
        )
    if (
        canary.p95 is not None
        and stable.p95 is not None
        and canary.p95 > rules.p95_floor_seconds
        and canary.p95 > stable.p95 * rules.max_p95_ratio
    ):
        problems.append(
            f"p95 {canary.p95 * 1000:.1f} ms is over {rules.max_p95_ratio:g} times the stable's "
            f"{stable.p95 * 1000:.1f} ms"
        )
    if problems:
        return Verdict(False, f"Analysis failed: {'; '.join(problems)} ({seen}).", figures)
    return Verdict(True, f"Analysis passed ({seen}).", figures)
