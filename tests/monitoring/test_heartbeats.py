"""Heartbeat checks: a job pings /ping/<uuid>; no ping within period + grace turns the
check down and opens an incident through the probe checks' automation; a ping mitigates
it, the quiet period resolves it. Pings over real HTTP (live_server), real PostgreSQL."""

import subprocess
import time
import uuid

import httpx
import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext

from monitoring.choices import CheckKind, CheckState, IncidentState, PingKind
from monitoring.models import HealthCheck, Incident, Ping
from monitoring.services import checks, heartbeats


@pytest.fixture
def heartbeat(bob):
    def make(period=1, grace=1, **options):
        return checks.create_check(
            bob, name=options.pop("name", "nightly training"), kind=CheckKind.HEARTBEAT,
            period_seconds=period, grace_seconds=grace, **options,
        )  # fmt: skip

    return make


def ping(base, check, suffix="", body=b"", **options):
    url = f"{base}/ping/{check.ping_key}{suffix}"
    return httpx.post(url, content=body, timeout=10, **options)


def state(check):
    check.refresh_from_db()
    return check.state


@pytest.mark.django_db(transaction=True)
def test_a_job_that_stops_pinging_opens_an_incident_and_one_ping_resolves_it(
    live_server, heartbeat, settings
):
    settings.INCIDENT_QUIET_PERIOD_SECONDS = 0
    check = heartbeat(period=1, grace=1)
    assert ping(live_server.url, check).text == "OK\n"
    assert state(check) == CheckState.UP

    heartbeats.mark_overdue()  # within period + grace: nothing happens
    assert state(check) == CheckState.UP and not Incident.objects.exists()

    time.sleep(2.2)  # the job stops pinging for longer than period + grace
    assert heartbeats.mark_overdue() == 1
    assert state(check) == CheckState.DOWN
    incident = Incident.objects.get(health_check=check)
    assert incident.state == IncidentState.OPEN
    assert incident.title == "nightly training is down"
    evidence = incident.events.get(kind="evidence")
    assert "no ping for 2 s (period + grace)" in evidence.message
    assert heartbeats.mark_overdue() == 0  # already down: one incident, not one per round

    ping(live_server.url, check)
    incident.refresh_from_db()
    assert state(check) == CheckState.UP
    assert incident.state == IncidentState.MITIGATED
    assert checks.resolve_quiet_incidents() == 1
    incident.refresh_from_db()
    assert incident.state == IncidentState.RESOLVED
    assert "nightly training pinged again." in incident.events.values_list("message", flat=True)


@pytest.mark.django_db(transaction=True)
def test_start_and_exit_status_pings_record_runs_with_durations_and_log_tails(
    live_server, heartbeat
):
    check = heartbeat(period=3600, grace=600)
    ping(live_server.url, check, "/start")
    time.sleep(0.3)
    ping(live_server.url, check, "/0", b"epoch 10: loss 0.21\ndone\n")
    ping(live_server.url, check, "/start")
    answer = ping(live_server.url, check, "/3", b"Traceback ...\nMemoryError\n")

    assert answer.status_code == 200
    runs = list(Ping.objects.filter(health_check=check).order_by("at"))
    assert [(r.kind, r.exit_status) for r in runs] == [
        (PingKind.START, None), (PingKind.SUCCESS, 0), (PingKind.START, None), (PingKind.FAIL, 3),
    ]  # fmt: skip
    assert runs[1].duration_seconds >= 0.3
    assert runs[3].body.endswith("MemoryError\n")
    assert state(check) == CheckState.DOWN  # a non-zero exit status is a failure
    incident = Incident.objects.get(health_check=check)
    evidence = incident.events.get(kind="evidence")
    assert evidence.data["probes"][-2]["log_tail"].endswith("MemoryError\n")
    assert "exit status 3" in evidence.message


def test_the_check_page_shows_runs_and_the_ping_url_to_engineers_only(
    client, bob, carol, heartbeat
):
    check = heartbeat(period=86400, grace=3600, name="feature pipeline")
    heartbeats.record_ping(check.ping_key, PingKind.START)
    heartbeats.record_ping(check.ping_key, PingKind.FAIL, exit_status=2, body=b"disk full")
    client.force_login(bob)

    def page():
        with CaptureQueriesContext(connection) as queries:
            response = client.get(check.get_absolute_url())
        return response.content.decode(), len(queries)

    text, few = page()
    assert f"/ping/{check.ping_key}" in text
    runs = text.split('data-testid="runs"', 1)[1]
    assert "Failure" in runs and "disk full" in runs and ">2<" in runs
    for _ in range(20):
        heartbeats.record_ping(check.ping_key, PingKind.SUCCESS)
    assert page()[1] == few

    client.force_login(carol)  # a viewer sees the runs, not the secret URL
    assert str(check.ping_key) not in client.get(check.get_absolute_url()).content.decode()


def test_heartbeats_are_created_over_the_api_and_validated(api_client_for, bob):
    api = api_client_for(bob)

    created = api.post(
        "/api/v1/checks/",
        {"name": "batch scoring", "kind": "heartbeat", "period_seconds": 3600,
         "grace_seconds": 300},
        format="json",
    )  # fmt: skip
    missing = api.post("/api/v1/checks/", {"name": "x", "kind": "heartbeat"}, format="json")

    assert created.status_code == 201, created.json()
    body = created.json()
    assert body["kind"] == "heartbeat" and body["url"] == ""
    assert body["ping_url"].endswith(f"/ping/{HealthCheck.objects.get(pk=body['id']).ping_key}")
    assert missing.status_code == 400
    assert set(missing.json()) >= {"period_seconds", "grace_seconds"}


def test_the_form_creates_a_heartbeat_through_the_same_service(client, bob):
    client.force_login(bob)
    response = client.post(
        "/checks/new/",
        {"name": "nightly retrain", "kind": "heartbeat", "period_seconds": "86400",
         "grace_seconds": "1800", "method": "GET", "interval_seconds": "30",
         "timeout_seconds": "5", "expected_statuses": "[200]", "failures_before_down": "3"},
    )  # fmt: skip

    check = HealthCheck.objects.get(name="nightly retrain")
    assert response.status_code == 302
    assert (check.kind, check.period_seconds, check.grace_seconds) == ("heartbeat", 86400, 1800)
    assert check.ping_key is not None and check.next_due_at is None  # never probed


def test_an_http_check_has_no_period_and_a_heartbeat_is_never_probed(bob, heartbeat):
    with pytest.raises(ValidationError) as error:
        checks.create_check(bob, name="x", url="http://127.0.0.1:9/health", period_seconds=60)
    assert "period_seconds" in error.value.message_dict

    heartbeat()
    assert checks.run_probes() == 0


@pytest.mark.parametrize(
    ("suffix", "options", "status", "text"),
    [
        ("/256", {}, 400, "0 to 255"),
        ("", {"content": b"x" * 100_001}, 413, "at most 100000 bytes"),
    ],
    ids=["exit-status", "body"],
)
def test_bad_pings_get_a_plain_answer_and_change_nothing(
    client, heartbeat, suffix, options, status, text
):
    check = heartbeat()
    response = client.post(
        f"/ping/{check.ping_key}{suffix}", data=options.get("content", b""),
        content_type="text/plain",
    )  # fmt: skip
    assert response.status_code == status
    assert text in response.content.decode()
    assert not Ping.objects.exists()


def test_an_unknown_key_is_404_and_pings_are_rate_limited(client, heartbeat, settings):
    settings.HEARTBEAT_PINGS_PER_MINUTE = 3
    check = heartbeat(period=3600)

    assert client.get(f"/ping/{uuid.uuid4()}").status_code == 404
    answers = [client.get(f"/ping/{check.ping_key}").status_code for _ in range(5)]

    assert answers[:3] == [200, 200, 200]
    assert answers[3:] == [429, 429]
    assert Ping.objects.filter(health_check=check).count() == 3


@pytest.mark.django_db(transaction=True)
def test_the_readme_curl_line_pings(live_server, heartbeat):
    check = heartbeat(period=3600)
    url = f"{live_server.url}/ping/{check.ping_key}"
    result = subprocess.run(
        ["curl", "-fsS", "-m", "10", "--retry", "3", "--data-raw", "trained in 42 min", url],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert Ping.objects.get(health_check=check).body == "trained in 42 min"


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_the_overdue_task_on_a_real_worker_opens_the_incident(
    celery_worker_process, live_server, heartbeat
):
    from monitoring.tasks import mark_overdue_heartbeats
    from tests.conftest import wait_until

    check = heartbeat(period=1, grace=0, name="feature pipeline")
    ping(live_server.url, check)
    time.sleep(1.2)

    mark_overdue_heartbeats.delay()

    incident = wait_until(lambda: Incident.objects.filter(health_check=check).first(), timeout=30)
    assert incident.title == "feature pipeline is down"
    assert state(check) == CheckState.DOWN


@pytest.mark.parametrize(
    ("expression", "zone", "after", "expected"),
    [
        ("0 2 * * *", "UTC", "2026-12-01T01:59:00+00:00", "2026-12-01T02:00:00+00:00"),
        ("0 2 * * *", "UTC", "2026-12-01T02:00:00+00:00", "2026-12-02T02:00:00+00:00"),
        # 02:00 in Paris is 01:00 UTC in winter.
        ("0 2 * * *", "Europe/Paris", "2026-12-01T00:30:00+00:00", "2026-12-01T01:00:00+00:00"),
        ("*/15 9-17 * * mon-fri", "UTC", "2026-12-04T17:50:00+00:00",
         "2026-12-07T09:00:00+00:00"),  # Friday evening → Monday 09:00
        ("30 6 1 * *", "UTC", "2026-12-01T07:00:00+00:00", "2027-01-01T06:30:00+00:00"),
    ],
    ids=["later-today", "tomorrow", "time-zone", "weekdays", "monthly"],
)  # fmt: skip
def test_a_cron_schedule_says_when_the_job_is_next_due(expression, zone, after, expected):
    from datetime import datetime

    from monitoring import cron

    assert cron.next_run(expression, zone, datetime.fromisoformat(after)) == (
        datetime.fromisoformat(expected)
    )


def test_a_cron_heartbeat_is_due_at_its_next_run_plus_grace(api_client_for, bob):
    from datetime import timedelta

    from monitoring import cron

    api = api_client_for(bob)
    created = api.post(
        "/api/v1/checks/",
        {"name": "nightly", "kind": "heartbeat", "cron_expression": "0 2 * * *",
         "cron_timezone": "Europe/Paris", "grace_seconds": 1800},
        format="json",
    )  # fmt: skip
    bad = api.post(
        "/api/v1/checks/",
        {"name": "x", "kind": "heartbeat", "cron_expression": "0 25 * * *",
         "cron_timezone": "Mars/Olympus", "grace_seconds": 60},
        format="json",
    )  # fmt: skip

    assert created.status_code == 201, created.json()
    check = HealthCheck.objects.get(pk=created.json()["id"])
    expected = cron.next_run("0 2 * * *", "Europe/Paris", check.created_at)
    assert abs(check.ping_deadline - expected - timedelta(seconds=1800)) < timedelta(seconds=5)
    assert bad.status_code == 400
    assert set(bad.json()) == {"cron_expression", "cron_timezone"}
    assert "hour field" in bad.json()["cron_expression"][0]
