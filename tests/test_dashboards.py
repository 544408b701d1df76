"""DORA metrics and the other dashboard figures against hand-computed values on fixed data,
the page, and the JSON/CSV API."""

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from deployments import services as deployments
from deployments.choices import DeploymentState as State
from deployments.models import Deployment, ModelVersion
from mlops_portal.overview.dashboards import (
    Scope,
    approval_waits,
    deployment_outcomes,
    dora,
    health_by_target,
    incidents_by_severity,
)
from monitoring.choices import Resolution
from monitoring.models import HealthCheck, Incident, ProbeRollup
from tests.factories import register_iris_version

WEEK_1 = datetime(2026, 10, 5, tzinfo=UTC)  # a Monday
WEEK_2 = WEEK_1 + timedelta(days=7)
TWO_WEEKS = Scope("week", since=WEEK_1, until=WEEK_1 + timedelta(days=14))


def at(day: int, hour: int = 0) -> datetime:
    """October 2026, UTC."""
    return datetime(2026, 10, day, hour, tzinfo=UTC)


@pytest.fixture
def history(alice, bob):
    """Two weeks of one platform team, written with fixed timestamps:

    week 1: three changes to production for team botany (lead times 108 h, 6 h, 10 h), the
    second rolled back, the third followed by an incident; one change of team ads (1 h);
    plus what must not count: a rollback, a rejected rollback, a staging deploy, a failed
    deploy. Incidents: 2 h (linked to the third change), 4 h (no deployment), one still
    open, one on staging; week 2: the third version deployed again, one incident of 1 h."""
    iris = deployments.create_model(alice, name="iris", team="botany")
    ads = deployments.create_model(alice, name="ads-ctr", team="ads")
    production = deployments.create_target(bob, name="prod", environment="production")
    staging = deployments.create_target(bob, name="staging", environment="staging")

    def version(model, registered):
        registered_version = register_iris_version(alice, model)
        ModelVersion.objects.filter(pk=registered_version.pk).update(created_at=registered)
        return registered_version

    def deploy(version, target, finished, state=State.SUPERSEDED, **fields):
        return Deployment.objects.create(
            version=version, target=target, state=state, reason="history",
            requested_by=alice, finished_at=finished, **fields,
        )  # fmt: skip

    a, b, c = version(iris, at(1)), version(iris, at(6)), version(iris, at(7))
    first = deploy(a, production, at(5, 12))  # lead 108 h
    second = deploy(b, production, at(6, 6), state=State.ROLLED_BACK)  # lead 6 h
    deploy(a, production, at(6, 8), rollback_of=second)  # a rollback: not a change
    third = deploy(c, production, at(7, 10), state=State.SUCCEEDED)  # lead 10 h
    deploy(version(ads, at(8)), production, at(8, 1))  # team ads, lead 1 h
    deploy(c, staging, at(7, 1))  # not production
    deploy(c, production, at(9), state=State.FAILED)  # never went live
    deploy(a, production, at(6, 9), state=State.REJECTED, rollback_of=first)  # not a failure
    deploy(c, production, at(13, 2))  # week 2: a redeploy, a deployment but no new lead time

    def incident(opened, resolved=None, **links):
        return Incident.objects.create(
            title="history", source="manual", opened_at=opened, resolved_at=resolved,
            acknowledged_at=resolved, state="resolved" if resolved else "open", **links,
        )  # fmt: skip

    incident(at(7, 11), at(7, 13), deployment=third, version=c)  # 2 h, the change failed
    incident(at(8), at(8, 4))  # 4 h, no deployment behind it
    incident(at(9))  # still open: no time to restore yet
    incident(at(13), at(13, 1))  # week 2: 1 h
    incident(at(8, 5), at(8, 6), target=staging)  # not production: no time to restore
    return {"first": first, "second": second, "third": third}


def test_dora_by_week_for_all_teams(history):
    week_1, week_2 = dora(TWO_WEEKS)["rows"]
    assert week_1 == {
        "period_start": "2026-10-05",
        "deployments": 4,
        "lead_time_p50_hours": 6.0,  # nearest rank: 2nd of [1, 6, 10, 108]
        "lead_time_p90_hours": 108.0,  # 4th
        "failures": 2,  # the rolled-back one and the one with an incident
        "change_failure_rate": 0.5,
        "incidents_restored": 2,
        "time_to_restore_p50_hours": 2.0,  # 1st of [2, 4]
    }
    assert week_2 == {
        "period_start": "2026-10-12",
        "deployments": 1,  # the redeploy is a deployment...
        "lead_time_p50_hours": None,  # ...but not a new change to measure
        "lead_time_p90_hours": None,
        "failures": 0,
        "change_failure_rate": 0.0,
        "incidents_restored": 1,
        "time_to_restore_p50_hours": 1.0,
    }


def test_dora_for_one_team_and_for_one_model(history):
    team = Scope("week", since=WEEK_1, until=WEEK_2, team="botany")
    [week] = dora(team)["rows"]
    assert (week["deployments"], week["failures"]) == (3, 2)
    assert (week["lead_time_p50_hours"], week["lead_time_p90_hours"]) == (10.0, 108.0)
    assert week["change_failure_rate"] == 0.6667
    assert (week["incidents_restored"], week["time_to_restore_p50_hours"]) == (1, 2.0)

    model = Scope("week", since=WEEK_1, until=WEEK_2, model="ads-ctr")
    [week] = dora(model)["rows"]
    assert (week["deployments"], week["failures"], week["change_failure_rate"]) == (1, 0, 0.0)
    assert week["lead_time_p50_hours"] == 1.0
    assert week["incidents_restored"] == 0


def test_dora_summary_over_the_range_and_by_month(history):
    summary = dora(TWO_WEEKS)["summary"]
    assert summary == {
        "deployments": 5,
        "lead_time_p50_hours": 6.0,  # first times live only: [1, 6, 10, 108]
        "lead_time_p90_hours": 108.0,
        "failures": 2,
        "change_failure_rate": 0.4,
        "time_to_restore_p50_hours": 2.0,  # 2nd of [1, 2, 4]
    }
    [october] = dora(Scope("month", since=at(1), until=at(31)))["rows"]
    assert october["period_start"] == "2026-10-01"
    assert october["deployments"] == 5 and october["incidents_restored"] == 3


def test_dora_with_nothing_deployed(db):
    result = dora(TWO_WEEKS)
    assert [row["deployments"] for row in result["rows"]] == [0, 0]
    assert result["summary"]["change_failure_rate"] is None
    assert result["summary"]["lead_time_p50_hours"] is None


def test_outcomes_approvals_incidents_and_health(history, bob):
    week_1 = deployment_outcomes(TWO_WEEKS)["rows"][0]
    assert week_1["period_start"] == "2026-10-05"
    # Created "now" by the fixture, so they fall outside these two weeks.
    assert week_1[State.SUPERSEDED] == 0

    outcomes = deployment_outcomes(Scope("week"))["summary"]
    # Superseded: the first change, the rollback, team ads' change, the staging deploy and
    # the redeploy.
    assert outcomes[State.SUPERSEDED] == 5 and outcomes[State.ROLLED_BACK] == 1
    assert outcomes[State.REJECTED] == 1
    assert outcomes[State.FAILED] == 1 and outcomes[State.SUCCEEDED] == 1

    Deployment.objects.filter(pk=history["third"].pk).update(
        approved_by=bob,
        created_at=at(7, 8),
        queued_at=at(7, 9),
    )
    [week] = approval_waits(Scope("week", since=WEEK_1, until=WEEK_2))["rows"]
    assert (week["approved"], week["wait_p50_hours"]) == (1, 1.0)

    Incident.objects.filter(opened_at=at(8)).update(severity="sev1")
    by_severity = incidents_by_severity(TWO_WEEKS)["rows"]
    assert [(row["sev1"], row["sev3"]) for row in by_severity] == [(1, 3), (0, 1)]  # all targets
    assert by_severity[1]["mttr_hours"] == 1.0

    check = HealthCheck.objects.create(
        name="prod", url="http://127.0.0.1:9/", target=history["third"].target, created_by=bob,
        expected_statuses=[200],
    )  # fmt: skip
    for hour, (count, failures, p95) in enumerate([(120, 0, 40.0), (120, 6, 90.0)]):
        ProbeRollup.objects.create(
            health_check=check, resolution=Resolution.HOUR, bucket_start=at(6, hour),
            count=count, failures=failures, latency_p95=p95,
        )  # fmt: skip
    [prod] = health_by_target(TWO_WEEKS)["rows"]
    assert prod == {
        "target": "prod",
        "probes": 240,
        "failures": 6,
        "availability": 0.975,
        "latency_p95_ms": 90.0,
    }


# --- the page and the API -----------------------------------------------------------------


def test_the_dashboard_page_shows_dora_with_definitions(client, carol, history):
    client.force_login(carol)
    october = {"since": "2026-10-01", "until": "2026-10-31"}
    response = client.get("/dashboards/", {"period": "month", "team": "botany", **october})
    assert response.status_code == 200
    page = response.content.decode()
    assert response.context["dora"]["summary"]["deployments"] == 4  # botany's, redeploy too
    assert "Lead time for changes" in page
    assert "From registering a version to its first time live in production" in page
    # Eight charts; one whose range holds nothing says so instead of an empty frame.
    drawn, empty = page.count('class="plotly-graph-div"'), page.count("No data in this range.")
    assert (drawn + empty, drawn > 0) == (8, True)
    api_link = "/api/v1/metrics/dora/?period=month&amp;since=2026-10-01T00%3A00%3A00%2B00%3A00"
    assert api_link in page and "team=botany" in page

    for bad in (
        {"period": "fortnight"},
        {"since": "1999-12-31"},
        {"since": "2026-10-05", "until": "2026-10-01"},
    ):
        response = client.get("/dashboards/", bad)
        assert response.status_code == 200
        assert "Showing the defaults" in response.content.decode()
        assert response.context["scope"] == Scope()


def test_the_api_serves_each_figure_as_json_and_csv(carol, api_client_for, history):
    api = api_client_for(carol)
    query = {"since": WEEK_1.isoformat(), "until": (WEEK_1 + timedelta(days=14)).isoformat()}
    body = api.get("/api/v1/metrics/dora/", {**query, "team": "botany"}).json()
    assert body["figure"] == "dora" and body["team"] == "botany"
    assert body["rows"][0]["deployments"] == 3
    assert "lead_time" in body["definitions"]

    csv = api.get("/api/v1/metrics/dora/", {**query, "format": "csv"})
    assert csv["Content-Type"].startswith("text/csv")
    header, week_1, week_2 = csv.content.decode().splitlines()
    assert header.startswith("period_start,deployments,lead_time_p50_hours")
    assert week_1.startswith("2026-10-05,4,6.0,108.0,2,0.5,")
    assert week_2 == "2026-10-12,1,,,0,0.0,1,1.0"

    for figure in ("deployments", "approvals", "incidents", "health"):
        assert api.get(f"/api/v1/metrics/{figure}/", query).status_code == 200


def test_the_api_names_the_bad_parameter(carol, api_client_for, client):
    api = api_client_for(carol)
    assert api.get("/api/v1/metrics/dora/", {"period": "year"}).json() == {
        "period": ['"year" is not a valid choice.']
    }
    for query, field in [
        ({"since": "2026-10-05", "until": "2026-10-01"}, "until"),
        ({"until": "9999-12-31T00:00:00Z"}, "until"),
        ({"since": "0001-01-01T00:00:00Z"}, "since"),
        ({"since": "2001-01-01T00:00:00Z"}, "since"),  # more than five years
    ]:
        response = api.get("/api/v1/metrics/dora/", query)
        assert response.status_code == 400, query
        assert list(response.json()) == [field]
    assert api.get("/api/v1/metrics/velocity/").status_code == 404
    assert client.get("/api/v1/metrics/dora/").status_code in (401, 403)


def test_dashboard_queries_do_not_grow_with_the_data(client, carol, api_client_for, history):
    client.force_login(carol)
    api = api_client_for(carol)
    api.get("/api/v1/metrics/dora/")  # the token's first use writes its last-used time

    def count(url):
        with CaptureQueriesContext(connection) as queries:
            client.get(url) if url.startswith("/dash") else api.get(url)
        return len(queries)

    october = "since=2026-10-01&until=2026-10-31"
    urls = [f"/dashboards/?{october}", f"/api/v1/metrics/dora/?{october}",
            f"/api/v1/metrics/incidents/?{october}"]  # fmt: skip
    before = [count(url) for url in urls]
    version = history["third"].version
    for number in range(20):
        Deployment.objects.create(
            version=version, target=history["third"].target, state=State.SUPERSEDED,
            reason="more", requested_by=version.registered_by,
            finished_at=history["third"].finished_at,
        )  # fmt: skip
        Incident.objects.create(
            title=f"more {number}", source="manual", opened_at=history["third"].finished_at
        )
    assert [count(url) for url in urls] == before
    assert dora(Scope("month", since=at(1), until=at(31)))["summary"]["deployments"] == 25


def test_a_range_without_data_says_so_instead_of_drawing_empty_charts(client, carol):
    client.force_login(carol)
    page = client.get("/dashboards/").content.decode()
    assert page.count("No data in this range.") == 8 and 'class="plotly-graph-div"' not in page
