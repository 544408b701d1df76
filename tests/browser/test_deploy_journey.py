"""The deployment journey in a real browser: request, approve, watch the live log, call
the endpoint, roll back."""

import httpx
import pytest
from playwright.sync_api import expect

from deployments import services
from deployments.choices import DeploymentState as State
from deployments.models import Deployment
from mlops_portal.core.roles import Role
from tests.conftest import wait_until
from tests.factories import UserFactory, iris_artifact, register_iris_version, validated

pytestmark = [pytest.mark.browser, pytest.mark.worker, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def stage(celery_worker_process):
    """Iris v1 live on a production target (approval required, rollbacks skip it); v2 ready."""
    alice = UserFactory(username="alice", role=Role.DATA_SCIENTIST)
    bob = UserFactory(username="bob", role=Role.MLOPS_ENGINEER)
    iris = services.create_model(alice, name="iris")
    v1, v2 = (validated(register_iris_version(alice, iris)) for _ in "12")
    target = services.create_target(
        bob, name="iris-prod", environment="production", rollback_skips_approval=True
    )
    first = services.request_deployment(alice, version=v1, target=target, reason="Baseline")
    services.approve_deployment(bob, first)
    wait_until(lambda: Deployment.objects.get(pk=first.pk).state == State.SUCCEEDED, timeout=60)
    return alice, bob, v2


def log_out(page):
    page.get_by_test_id("user-menu").click()
    page.get_by_role("button", name="Log out").click()


def test_request_approve_watch_call_and_roll_back(page, live_server, log_in, screenshot, stage):
    alice, bob, v2 = stage
    log_in(alice)
    page.goto(f"{live_server.url}{v2.get_absolute_url()}")
    page.get_by_role("link", name="Request deployment").click()
    page.select_option("#id_target", label="iris-prod")
    page.fill("#id_reason", "v2 is more accurate offline")
    page.get_by_role("button", name="Request deployment").click()
    expect(page.get_by_test_id("deployment-state")).to_have_text("Requested")
    deployment_url = page.url
    log_out(page)

    log_in(bob)
    page.goto(deployment_url)
    expect(page.get_by_test_id("evidence-metrics")).to_be_visible()
    page.fill("#decision-comment", "Evidence looks fine")
    page.get_by_role("button", name="Approve").click()
    expect(page.get_by_test_id("job-log")).to_contain_text(
        "Starting the model server", timeout=30_000
    )
    expect(page.get_by_test_id("deployment-state")).to_have_text("Succeeded", timeout=60_000)
    expect(page.get_by_test_id("duration")).to_be_visible()
    endpoint = page.get_by_test_id("endpoint").inner_text()
    rows = iris_artifact()[3]
    answer = httpx.post(f"{endpoint}/predict", json={"instances": rows}, timeout=5)
    assert answer.status_code == 200 and answer.json()["version"] == 2

    page.fill("#rollback-reason", "Predictions drifted after release")
    page.get_by_role("button", name="Roll back").click()
    expect(page.locator(".badge", has_text="rollback of")).to_be_visible()
    expect(page.get_by_test_id("deployment-state")).to_have_text("Succeeded", timeout=60_000)
    restored = page.get_by_test_id("endpoint").inner_text()
    assert httpx.get(f"{restored}/health", timeout=5).json()["version"] == 1
    screenshot("rolled-back")
