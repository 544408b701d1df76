"""Roll-ups equal the raw data they summarise; charts read roll-ups past an hour."""

import random
from datetime import UTC, datetime, timedelta

import pytest

from monitoring import series
from monitoring.models import ProbeResult, ProbeRollup
from monitoring.services import rollups

HOUR = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


@pytest.fixture
def history(make_check):
    """Two hours of probes every 10 s, about 5 % failed, with varied latencies."""
    check = make_check("http://127.0.0.1:9/health")
    rng = random.Random(7)
    rows = [
        ProbeResult(
            health_check=check, at=HOUR + timedelta(seconds=10 * i), ok=rng.random() > 0.05,
            status_code=200, latency_ms=round(rng.uniform(5, 300), 2),
        )
        for i in range(720)
    ]  # fmt: skip
    ProbeResult.objects.bulk_create(rows)
    return check, rows


def test_minute_rollups_equal_the_raw_results(history):
    _check, rows = history
    assert rollups.roll_up_minutes(HOUR, HOUR + timedelta(hours=2)) == 120
    for rollup in ProbeRollup.objects.filter(resolution="minute"):
        raw = [
            r
            for r in rows
            if rollup.bucket_start <= r.at < rollup.bucket_start + timedelta(minutes=1)
        ]
        latencies = sorted(r.latency_ms for r in raw)
        assert rollup.count == len(raw) == 6
        assert rollup.failures == sum(not r.ok for r in raw)
        assert rollup.latency_max == pytest.approx(max(latencies))
        assert rollup.latency_p50 == pytest.approx(rollups.percentile(latencies, 0.5))
        assert rollup.latency_p95 == pytest.approx(rollups.percentile(latencies, 0.95))


def test_hour_rollups_keep_counts_failures_and_max_exact(history):
    _check, rows = history
    rollups.roll_up_minutes(HOUR, HOUR + timedelta(hours=2))
    assert rollups.roll_up_hours(HOUR, HOUR + timedelta(hours=2)) == 2
    for rollup in ProbeRollup.objects.filter(resolution="hour"):
        raw = [
            r
            for r in rows
            if rollup.bucket_start <= r.at < rollup.bucket_start + timedelta(hours=1)
        ]
        assert rollup.count == len(raw) == 360
        assert rollup.failures == sum(not r.ok for r in raw)
        assert rollup.latency_max == pytest.approx(max(r.latency_ms for r in raw))


def test_recomputing_a_window_is_idempotent(history):
    rollups.roll_up_minutes(HOUR, HOUR + timedelta(minutes=10))
    rollups.roll_up_minutes(HOUR, HOUR + timedelta(minutes=10))
    assert ProbeRollup.objects.filter(resolution="minute").count() == 10


def test_uptime_and_series_come_from_rollups_past_an_hour(history):
    check, rows = history
    rollups.roll_up_minutes(HOUR, HOUR + timedelta(hours=2))
    rollups.roll_up_hours(HOUR, HOUR + timedelta(hours=2))
    ok_share = sum(r.ok for r in rows) / len(rows)
    since, until = HOUR, HOUR + timedelta(hours=2)
    assert series.uptime([check.pk], since, until)[check.pk] == pytest.approx(ok_share)
    assert series.bucket_for(since, until) == "minute"
    assert len(series.points(check.pk, since, until)) == 120
    week = series.points(check.pk, HOUR - timedelta(days=6), HOUR + timedelta(days=1))
    assert [p.count for p in week] == [360, 360]  # hourly buckets, not 720 raw rows


def test_pruning_drops_raw_results_past_the_retention(history, settings):
    settings.HEALTHCHECK_RESULT_RETENTION_DAYS = 7
    pruned = rollups.prune(HOUR + timedelta(days=7, minutes=30))
    assert pruned["pruned_results"] == 180  # the first half hour
