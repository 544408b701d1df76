"""A data scientist's journey in a real browser (Debian's Chromium via Playwright)."""

import json

import pytest
from playwright.sync_api import expect

from mlops_portal.core.roles import Role
from tests.factories import UserFactory, iris_artifact

pytestmark = [pytest.mark.browser, pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def test_a_data_scientist_registers_a_version_and_watches_it_become_ready(
    page, live_server, celery_worker_process, log_in, screenshot, tmp_path
):
    alice = UserFactory(username="alice", role=Role.DATA_SCIENTIST)
    artifact, metrics, _, sample = iris_artifact()
    artifact_path = tmp_path / "iris.joblib"
    artifact_path.write_bytes(artifact)

    log_in(alice)
    page.get_by_role("link", name="Models", exact=True).click()
    page.get_by_role("link", name="New model").click()
    page.fill("#id_name", "iris")
    page.fill("#id_team", "botany")
    page.get_by_role("button", name="Create model").click()

    expect(page.get_by_role("heading", name="Register version 1 of iris")).to_be_visible()
    page.set_input_files("#id_artifact", str(artifact_path))
    page.fill("#id_sample_input", json.dumps(sample))
    page.fill("#id_metrics", json.dumps(metrics))
    page.get_by_role("button", name="Register version").click()

    expect(page).to_have_url(f"{live_server.url}/models/iris/versions/1/")
    status = page.get_by_test_id("version-status")
    expect(status).to_have_text("Ready", timeout=30_000)  # htmx polls until the worker is done
    expect(page.get_by_test_id("status-detail")).to_contain_text("predicted 3 sample rows")
    screenshot("version-ready")

    page.get_by_test_id("user-menu").click()
    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(f"{live_server.url}/login/")
