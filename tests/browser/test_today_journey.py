"""An engineer's morning: Today shows a pending approval and an open incident, each one
click away; the dashboards draw their charts. A real browser against the live server."""

import pytest
from playwright.sync_api import expect

from deployments import services as deploy
from mlops_portal.core.roles import Role
from monitoring.services import incidents
from tests.factories import UserFactory, register_iris_version, validated

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_an_engineer_triages_the_morning_and_reads_the_dashboards(
    page, live_server, log_in, screenshot
):
    alice = UserFactory(username="alice", role=Role.DATA_SCIENTIST)
    bob = UserFactory(username="bob", role=Role.MLOPS_ENGINEER)
    iris = deploy.create_model(alice, name="iris", team="botany")
    version = validated(register_iris_version(alice, iris))
    production = deploy.create_target(bob, name="iris-prod", environment="production")
    request = deploy.request_deployment(
        alice, version=version, target=production, reason="Recall up 4 points."
    )
    incident = incidents.open_incident(
        alice, title="Predictions all zero since 03:00", severity="sev2", target=production
    )

    log_in(bob)
    expect(page.get_by_role("heading", name="Today")).to_be_visible()
    incidents_section = page.get_by_test_id("section-incidents")
    expect(incidents_section).to_contain_text("Predictions all zero since 03:00")
    expect(incidents_section).to_contain_text("SEV2")
    approvals = page.get_by_test_id("section-approvals")
    expect(approvals).to_contain_text("iris v1 → iris-prod")
    screenshot("today-engineer")

    approvals.get_by_role("link", name=f"#{request.pk} iris v1 → iris-prod").click()
    expect(page).to_have_url(f"{live_server.url}{request.get_absolute_url()}")
    expect(page.get_by_role("button", name="Approve")).to_be_visible()

    page.go_back()
    page.get_by_role("link", name=f"#{incident.pk} {incident.title}").click()
    expect(page).to_have_url(f"{live_server.url}{incident.get_absolute_url()}")
    expect(page.get_by_test_id("incident-state")).to_have_text("Open")

    page.goto(f"{live_server.url}/")
    page.get_by_role("link", name="Dashboards", exact=True).click()
    expect(page.get_by_role("heading", name="DORA metrics")).to_be_visible()
    page.wait_for_load_state("load")  # charts.js has drawn every figure
    charts = page.locator(".js-plotly-plot")
    expect(charts.first.locator("svg.main-svg").first).to_be_visible()
    # 4 DORA, outcomes, approvals, incidents, MTTA/MTTR: drawn, or "No data in this range".
    assert charts.count() >= 1
    assert charts.count() + page.locator(".chart-empty").count() == 8
    drawn = page.evaluate(
        "() => [...document.querySelectorAll('.js-plotly-plot')]"
        ".every(plot => plot.querySelector('svg.main-svg'))"
    )
    assert drawn  # Plotly drew every chart as SVG, from the portal's own plotly.js
    screenshot("dashboards")
