"""Monitoring pages: checks with sparklines and charts, incidents and their actions."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from monitoring.models import ProbeResult
from monitoring.services import checks, incidents, rollups


@pytest.fixture
def bob_client(client, bob):
    client.force_login(bob)
    return client


def probes(check, minutes=90, failing_every=7):
    now = timezone.now()
    ProbeResult.objects.bulk_create(
        ProbeResult(health_check=check, at=now - timedelta(seconds=30 * i),
                    ok=i % failing_every != 0, latency_ms=20.0 + i % 5)
        for i in range(minutes * 2)
    )  # fmt: skip
    rollups.roll_up_minutes(now - timedelta(hours=2), now)
    rollups.roll_up_hours(now - timedelta(hours=3), now)


def test_the_checks_page_shows_state_sparkline_and_uptime_in_constant_queries(
    bob_client, bob, make_check
):
    check = make_check("http://127.0.0.1:9/health", name="churn endpoint")
    probes(check)

    def count():
        with CaptureQueriesContext(connection) as queries:
            response = bob_client.get("/checks/")
        return len(queries), response

    few, response = count()
    page = response.content.decode()
    assert "churn endpoint" in page and "<polyline" in page
    for i in range(8):
        probes(checks.create_check(bob, name=f"c{i}", url="http://127.0.0.1:9/health"))
    assert count()[0] == few


@pytest.mark.parametrize("chosen", ["1h", "24h", "7d", "30d"])
def test_the_check_page_charts_each_range(bob_client, make_check, chosen):
    check = make_check("http://127.0.0.1:9/health")
    probes(check)
    response = bob_client.get(f"/checks/{check.pk}/?range={chosen}")
    page = response.content.decode()
    assert "/static/plotly/plotly.min.js" in page
    assert f"last {chosen}" in page
    assert response.context["uptime"] == pytest.approx(1 - 26 / 180, abs=0.02)


def test_a_disallowed_url_shows_on_the_form(bob_client):
    response = bob_client.post(
        "/checks/new/",
        {"name": "meta", "url": "http://169.254.169.254/", "method": "GET",
         "interval_seconds": 30, "timeout_seconds": 5, "expected_statuses": "[200]",
         "failures_before_down": 3},
    )  # fmt: skip
    assert response.status_code == 200
    assert "link-local" in response.context["form"].errors["url"][0]


def test_running_an_incident_from_its_page(bob_client, alice, bob):
    incident = incidents.open_incident(alice, title="Scores look wrong", severity="sev3")
    bob_client.post(f"/incidents/{incident.pk}/acknowledge/", {"note": "looking"})
    bob_client.post(f"/incidents/{incident.pk}/severity/", {"severity": "sev1", "note": "prod"})
    bob_client.post(f"/incidents/{incident.pk}/resolve/", {"note": "rolled back"})
    incident.refresh_from_db()
    assert (incident.state, incident.severity, incident.commander) == ("resolved", "sev1", bob)
    page = bob_client.get(f"/incidents/{incident.pk}/").content.decode()
    assert "open → acknowledged" in page and "SEV3 → SEV1" in page
    listing = bob_client.get("/incidents/")
    assert "MTTA" in listing.content.decode() and "1 opened" in listing.content.decode()
    [week] = listing.context["trend"]
    assert week["opened"] == 1 and week["mttr"] is not None


def test_viewers_cannot_acknowledge(client, carol, alice):
    incident = incidents.open_incident(alice, title="x")
    client.force_login(carol)
    response = client.post(f"/incidents/{incident.pk}/acknowledge/", follow=True)
    assert "Only MLOps engineers may acknowledge incidents." in response.content.decode()
    incident.refresh_from_db()
    assert incident.state == "open"
