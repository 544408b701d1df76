"""Monitoring API: checks and incidents as scripts and on-call tools use them."""

from datetime import UTC, datetime, timedelta

from django.db import connection
from django.test.utils import CaptureQueriesContext

from monitoring.models import HealthCheck, Incident, ProbeResult
from monitoring.services import checks, incidents, rollups

CHECKS = "/api/v1/checks/"
INCIDENTS = "/api/v1/incidents/"


def test_engineers_create_checks_and_bad_urls_are_400(api_client_for, bob, alice, endpoint):
    api = api_client_for(bob)
    created = api.post(CHECKS, {"name": "churn", "url": endpoint.url}, format="json")
    assert created.status_code == 201, created.json()
    assert created.json()["state"] == "unknown"
    refused = api.post(CHECKS, {"name": "meta", "url": "http://169.254.169.254/"}, format="json")
    assert refused.status_code == 400
    assert "link-local" in refused.json()["url"][0]
    scientist = api_client_for(alice).post(
        CHECKS, {"name": "x", "url": endpoint.url}, format="json"
    )
    assert scientist.status_code == 403
    assert scientist.json()["detail"] == "Only MLOps engineers may manage health checks."
    assert list(HealthCheck.objects.values_list("name", flat=True)) == ["churn"]


def test_pause_resume_and_delete(api_client_for, bob, make_check, endpoint):
    check = make_check(endpoint.url)
    api = api_client_for(bob)
    assert api.post(f"{CHECKS}{check.pk}/pause/").json()["state"] == "paused"
    assert api.post(f"{CHECKS}{check.pk}/resume/").json()["enabled"] is True
    assert (
        api.patch(f"{CHECKS}{check.pk}/", {"interval_seconds": 60}, format="json").json()[
            "interval_seconds"
        ]
        == 60
    )
    assert api.delete(f"{CHECKS}{check.pk}/").status_code == 204
    assert not HealthCheck.objects.filter(pk=check.pk).exists()


def test_results_are_downsampled_on_the_server(api_client_for, bob, make_check):
    check = make_check("http://127.0.0.1:9/health")
    start = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
    ProbeResult.objects.bulk_create(
        ProbeResult(health_check=check, at=start + timedelta(seconds=10 * i), ok=i % 10 != 0,
                    latency_ms=10.0 + i % 7)
        for i in range(360)
    )  # fmt: skip
    rollups.roll_up_minutes(start, start + timedelta(hours=1))
    rollups.roll_up_hours(start, start + timedelta(hours=1))
    api = api_client_for(bob)
    url = f"{CHECKS}{check.pk}/results/?since=2026-11-20T10:00:00Z&until=2026-11-20T11:00:00Z"
    raw = api.get(url).json()
    assert (raw["bucket"], len(raw["points"])) == ("raw", 360)
    minute = api.get(url + "&bucket=minute").json()
    assert len(minute["points"]) == 60
    assert minute["uptime"] == 0.9
    week = api.get(
        f"{CHECKS}{check.pk}/results/?since=2026-11-14T00:00:00Z&until=2026-11-21T00:00:00Z"
    ).json()
    assert (week["bucket"], len(week["points"])) == ("hour", 1)
    assert week["points"][0]["count"] == 360
    bad = api.get(f"{CHECKS}{check.pk}/results/?since=yesterday")
    assert bad.status_code == 400 and "since" in bad.json()


def test_incidents_are_opened_run_and_listed_open_first(api_client_for, alice, bob, carol):
    api = api_client_for(alice)
    first = api.post(INCIDENTS, {"title": "Latency spike", "severity": "sev2"}, format="json")
    assert first.status_code == 201
    second = api.post(INCIDENTS, {"title": "Bad predictions"}, format="json").json()
    ops = api_client_for(bob)
    assert (
        ops.post(
            f"{INCIDENTS}{first.json()['id']}/acknowledge/", {"note": "on it"}, format="json"
        ).json()["commander"]
        == "bob"
    )
    resolved = ops.post(f"{INCIDENTS}{first.json()['id']}/resolve/", {}, format="json").json()
    assert resolved["state"] == "resolved"
    assert resolved["time_to_resolve_seconds"] >= 0
    assert (
        ops.post(f"{INCIDENTS}{first.json()['id']}/resolve/", {}, format="json").status_code == 409
    )
    listed = api.get(INCIDENTS).json()["results"]
    assert [row["id"] for row in listed] == [second["id"], first.json()["id"]]
    assert api.get(INCIDENTS + "?state=resolved").json()["count"] == 1
    assert api.get(INCIDENTS + "?severity=sev2").json()["count"] == 1
    refused = api_client_for(carol).post(
        f"{INCIDENTS}{second['id']}/acknowledge/", {}, format="json"
    )
    assert refused.status_code == 403
    assert refused.json()["detail"] == "Only MLOps engineers may acknowledge incidents."
    assert Incident.objects.get(pk=second["id"]).state == "open"
    note = api.post(
        f"{INCIDENTS}{second['id']}/notes/", {"note": "Started at 09:12"}, format="json"
    )
    assert note.status_code == 201
    kinds = [e["kind"] for e in api.get(f"{INCIDENTS}{second['id']}/notes/").json()]
    assert kinds == ["state", "note"]


def test_a_bad_incident_is_a_400_naming_the_field(api_client_for, alice):
    response = api_client_for(alice).post(
        INCIDENTS, {"title": "", "severity": "sev9"}, format="json"
    )
    assert response.status_code == 400
    assert {"title", "severity"} <= set(response.json())


def test_list_endpoints_keep_a_constant_query_count(api_client_for, alice, bob, make_check):
    api = api_client_for(alice)
    api.get(INCIDENTS)

    def count(url):
        with CaptureQueriesContext(connection) as queries:
            assert api.get(url).status_code == 200
        return len(queries)

    incidents.open_incident(alice, title="one")
    make_check("http://127.0.0.1:9/health")
    few = (count(INCIDENTS), count(CHECKS))
    for i in range(10):
        incidents.open_incident(alice, title=f"more {i}")
        checks.create_check(bob, name=f"c{i}", url="http://127.0.0.1:9/health")
    assert (count(INCIDENTS), count(CHECKS)) == few
    assert Incident.objects.count() == 11
