"""A model endpoint stops; its check turns down, an incident opens by itself, an engineer
acknowledges and resolves it, and the check's chart shows the outage. Real worker, real
model server, real browser."""

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from deployments import services as deploy
from deployments.backends import backend_for
from deployments.models import Deployment
from mlops_portal.core.roles import Role
from monitoring.models import HealthCheck, Incident
from monitoring.tasks import dispatch_probes
from tests.conftest import wait_until
from tests.factories import UserFactory, register_iris_version, validated

pytestmark = [pytest.mark.browser, pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def probe_now(check):
    """One dispatcher run on the worker, as beat sends it, with the check due now."""
    before = HealthCheck.objects.get(pk=check.pk).last_probe_at
    HealthCheck.objects.filter(pk=check.pk).update(next_due_at=timezone.now())
    dispatch_probes.delay()
    return wait_until(lambda: HealthCheck.objects.get(pk=check.pk).last_probe_at != before)


def test_an_outage_opens_an_incident_that_an_engineer_runs_to_resolution(
    page, live_server, celery_worker_process, log_in, screenshot
):
    alice = UserFactory(username="alice", role=Role.DATA_SCIENTIST)
    bob = UserFactory(username="bob", role=Role.MLOPS_ENGINEER)
    iris = deploy.create_model(alice, name="iris")
    version = validated(register_iris_version(alice, iris))
    target = deploy.create_target(bob, name="iris-prod", environment="production",
                                  requires_approval=False)  # fmt: skip
    live = deploy.request_deployment(alice, version=version, target=target, reason="ship")
    wait_until(lambda: Deployment.objects.get(pk=live.pk).state == "succeeded", timeout=60)
    # The job points the check at the new server just after the state change commits.
    followed = HealthCheck.objects.filter(target=target, follows_target=True)
    check = wait_until(followed.first, timeout=10)
    HealthCheck.objects.filter(pk=check.pk).update(failures_before_down=2)
    probe_now(check)
    assert HealthCheck.objects.get(pk=check.pk).state == "up"

    live.refresh_from_db()
    backend_for(target).stop(live)  # the model endpoint goes away
    probe_now(check)
    probe_now(check)
    assert HealthCheck.objects.get(pk=check.pk).state == "down"
    # The worker stores the probe's state first and opens the incident just after.
    incident = wait_until(Incident.objects.filter(health_check=check).first, timeout=10)

    log_in(bob)
    page.get_by_role("link", name="Incidents", exact=True).click()
    page.get_by_role("link", name=incident.title).click()
    expect(page.get_by_test_id("incident-state")).to_have_text("Open")
    expect(page.get_by_test_id("likely-cause")).to_contain_text(f"deployment #{live.pk}")
    page.fill("#note", "Model server process is gone; restarting")
    page.get_by_role("button", name="Acknowledge").click()
    expect(page.get_by_test_id("incident-state")).to_have_text("Acknowledged")
    page.get_by_role("button", name="Resolve").click()
    expect(page.get_by_test_id("incident-state")).to_have_text("Resolved")
    expect(page.get_by_test_id("incident-timeline")).to_contain_text("failing probe(s)")

    page.goto(f"{live_server.url}/checks/{check.pk}/?range=1h")
    expect(page.get_by_test_id("check-state")).to_have_text("Down")
    availability = page.evaluate(
        "() => document.querySelector('.js-plotly-plot').data.find(t => t.type === 'bar').y"
    )
    assert 0 in availability and 100 in availability  # the outage beside the healthy probe
    screenshot("outage-chart")
