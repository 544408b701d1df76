"""The Content-Security-Policy in Chromium: a script injected into one of our pages does not
run, and the pages that draw (charts, diagrams, Swagger UI, htmx polling, the metric picker)
work without the browser refusing anything."""

import pytest
from playwright.sync_api import expect

from deployments import services as deploy
from deployments.choices import DeploymentState
from deployments.models import Deployment
from docs_app import services as docs
from mlops_portal.core.roles import Role
from tests.factories import UserFactory, register_iris_version, validated

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# plotly.js, Mermaid and Swagger UI are megabytes of script to parse: on a busy 2-core
# machine that alone can take longer than Playwright's 5 s default.
DRAWN = 20_000

# Installed before any page script (Playwright's init scripts are not subject to the CSP):
# every violation the browser reports is kept for the test to read.
RECORD_VIOLATIONS = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__violations.push(event.violatedDirective + " " + (event.blockedURI || "inline"));
});
"""

INJECT = """() => {
  window.__ran = [];
  const script = document.createElement("script");
  script.textContent = "window.__ran.push('inline script')";
  document.body.appendChild(script);
  const image = document.createElement("img");
  image.setAttribute("onerror", "window.__ran.push('event handler')");
  image.src = "/static/no-such-image.png";
  document.body.appendChild(image);
}"""


def violations(page):
    return page.evaluate("() => window.__violations")


def test_an_injected_inline_script_does_not_run_on_our_page(page, live_server, log_in):
    page.add_init_script(RECORD_VIOLATIONS)
    log_in(UserFactory(username="bob", role=Role.MLOPS_ENGINEER))
    assert violations(page) == []  # Today, with its htmx polling, needs nothing refused

    page.evaluate(INJECT)  # (eval is not tried: Playwright's own evaluate may use it)
    page.wait_for_function("() => window.__violations.length >= 2")
    page.wait_for_timeout(300)  # the image's error event has had its chance to fire
    assert page.evaluate("() => window.__ran") == []
    refused = violations(page)
    assert any(v.startswith("script-src-elem inline") for v in refused), refused
    assert any(v.startswith("script-src-attr inline") for v in refused), refused


def test_charts_diagrams_swagger_and_the_metric_picker_work_under_the_policy(
    page, live_server, log_in
):
    alice = UserFactory(username="alice", role=Role.DATA_SCIENTIST)
    iris = deploy.create_model(alice, name="iris", team="botany")
    for accuracy, f1 in ((0.9, 0.8), (0.95, 0.85)):
        version = validated(
            register_iris_version(alice, iris, metrics={"accuracy": accuracy, "f1": f1})
        )
    # One production deployment, so the dashboards have data to draw (empty ones say so).
    bob = UserFactory(username="bob", role=Role.MLOPS_ENGINEER)
    production = deploy.create_target(bob, name="iris-production", environment="production")
    live = deploy.request_deployment(alice, version=version, target=production, reason="go")
    deploy.approve_deployment(bob, live)
    Deployment.objects.filter(pk=live.pk).update(state=DeploymentState.RUNNING)
    live.refresh_from_db()
    deploy.complete_deployment(live, "http://127.0.0.1:9")
    runbook = docs.create_page(
        alice, title="Iris runbook", body="```mermaid\ngraph LR\n  Client --> Model\n```\n"
    )
    page.add_init_script(RECORD_VIOLATIONS)
    log_in(alice)

    page.goto(f"{live_server.url}/dashboards/")
    expect(page.locator(".js-plotly-plot svg.main-svg").first).to_be_visible(timeout=DRAWN)
    # Eight charts, each drawn or saying its range has no data.
    assert page.locator(".js-plotly-plot").count() + page.locator(".chart-empty").count() == 8

    page.goto(f"{live_server.url}/models/iris/")
    chart = page.get_by_test_id("metric-chart")
    expect(chart.locator("svg.main-svg").first).to_be_visible(timeout=DRAWN)
    page.select_option("#metric", "f1")  # auto-submits, from portal.js
    expect(page).to_have_url(f"{live_server.url}/models/iris/?metric=f1", timeout=DRAWN)
    expect(chart).to_contain_text("f1 by version", timeout=DRAWN)

    page.goto(f"{live_server.url}{runbook.get_absolute_url()}")
    expect(page.locator("pre.mermaid svg")).to_be_visible(timeout=DRAWN)

    page.goto(f"{live_server.url}/api/docs/")
    expect(page.locator(".swagger-ui .opblock").first).to_be_visible(timeout=DRAWN)
    assert violations(page) == []
