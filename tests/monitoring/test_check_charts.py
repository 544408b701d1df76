"""A check's chart covers the range asked for, starts latency at 0, draws a lone probe as a
marker, keeps its title clear of its legend, and says so when the range has no data."""

import html
import json
import re
from datetime import datetime, timedelta

from django.utils import timezone

from monitoring.models import ProbeResult


def figure_of(page: str) -> dict:
    found = re.search(r'class="plotly-graph-div" data-figure="([^"]*)"', page)
    assert found, "no chart on the page"
    return json.loads(html.unescape(found.group(1)))["figure"]


def at(value: str) -> datetime:
    return datetime.fromisoformat(value)


def test_one_probe_is_a_marker_on_an_axis_spanning_the_whole_day(client, bob, make_check):
    check = make_check("http://127.0.0.1:9/health")
    ProbeResult.objects.create(
        health_check=check, at=timezone.now() - timedelta(minutes=3), ok=True, latency_ms=20.0
    )
    client.force_login(bob)
    figure = figure_of(client.get(f"/checks/{check.pk}/?range=1h").content.decode())
    layout, latency = figure["layout"], figure["data"][0]
    start, end = (at(value) for value in layout["xaxis"]["range"])
    assert end - start == timedelta(hours=1)  # the range asked for, not the minute with data
    assert abs(end - timezone.now()) < timedelta(minutes=1)
    assert "markers" in latency["mode"]
    low, high = layout["yaxis"]["range"]
    assert low == 0 and 20 < high < 30  # not fractions of a millisecond around 20
    assert layout["legend"]["y"] < 0 < layout["title"]["text"].count("last 1h")


def test_the_24h_range_spans_24_hours_with_data_in_a_few_minutes(client, bob, make_check):
    from monitoring.services import rollups

    check = make_check("http://127.0.0.1:9/health")
    now = timezone.now()
    ProbeResult.objects.bulk_create(
        ProbeResult(health_check=check, at=now - timedelta(minutes=i), ok=True, latency_ms=5.0)
        for i in range(1, 6)
    )
    rollups.roll_up_minutes(now - timedelta(hours=1), now)
    client.force_login(bob)
    figure = figure_of(client.get(f"/checks/{check.pk}/?range=24h").content.decode())
    start, end = (at(value) for value in figure["layout"]["xaxis"]["range"])
    assert end - start == timedelta(days=1)
    assert figure["layout"]["yaxis"]["range"][0] == 0


def test_an_empty_range_says_so_instead_of_drawing_an_empty_frame(client, bob, make_check):
    check = make_check("http://127.0.0.1:9/health")
    client.force_login(bob)
    page = client.get(f"/checks/{check.pk}/?range=7d").content.decode()
    assert "No data in this range (last 7d)." in page
    assert "plotly-graph-div" not in page and "plotly.min.js" not in page
