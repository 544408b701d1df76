"""A canary on its deployment page in a real browser: a viewer and a data scientist see its
step, its share and the analysis on the timeline but get no buttons (and a POST made by hand
is refused); an engineer promotes it with the page's button and sees it go live.

The real worker starts the canary (model servers and the weighted proxy of the local
backend); the test sends the proxy real predictions, then runs the first step's analysis
itself instead of waiting out a hold."""

import httpx
import pytest
from playwright.sync_api import expect

from deployments import services
from deployments.choices import DeploymentState as State
from deployments.models import Deployment
from deployments.services import canary
from tests.browser.test_every_page import AXE_JS, RUN_AXE
from tests.conftest import stop_model_servers, wait_until
from tests.factories import iris_artifact, register_iris_version, validated

pytestmark = [pytest.mark.browser, pytest.mark.worker, pytest.mark.django_db(transaction=True)]

PREDICTIONS = 300  # the proxy sends 1 in 10 to the canary: 30, over CANARY_MIN_REQUESTS


@pytest.fixture
def at_second_step(celery_worker_process, alice, bob):
    """iris v1 live on iris-staging; v2 a canary [10, 50] % (holds of 10 minutes) whose
    first step passed its analysis on real traffic: it takes 50 % now."""
    iris = services.create_model(alice, name="iris")
    v1, v2 = (validated(register_iris_version(alice, iris)) for _ in "12")
    target = services.create_target(bob, name="iris-staging", environment="staging")
    first = services.request_deployment(alice, version=v1, target=target, reason="Baseline")
    wait_until(lambda: Deployment.objects.get(pk=first.pk).state == State.SUCCEEDED, timeout=60)
    deployment = services.request_deployment(
        alice, version=v2, target=target, reason="v2 as a canary",
        strategy="canary", canary_steps=[10, 50], canary_step_seconds=600,
    )  # fmt: skip
    running = wait_until(lambda: weighing(deployment.pk, 10), timeout=60)
    rows = iris_artifact()[3]
    with httpx.Client(base_url=running.endpoint, timeout=5) as client:
        for _ in range(PREDICTIONS):
            assert client.post("/predict", json={"instances": rows}).status_code == 200
    assert canary.run_step(running.pk, 0) == State.RUNNING  # the job step 1's hold sends
    yield weighing(running.pk, 50)
    stop_model_servers()


def weighing(pk, weight):
    deployment = Deployment.objects.get(pk=pk)
    return deployment if deployment.canary_weight == weight else None


def test_only_an_engineer_decides_a_canary_and_promotes_it_from_the_page(
    page, live_server, log_in, screenshot, alice, bob, carol, at_second_step
):
    deployment = at_second_step
    url = f"{live_server.url}{deployment.get_absolute_url()}"
    card, timeline = page.get_by_test_id("canary"), page.get_by_test_id("timeline")

    for onlooker in (carol, alice):  # a viewer; the data scientist who asked for it
        page.context.clear_cookies()
        log_in(onlooker)
        page.goto(url)
        expect(card).to_contain_text("Canary: steps 10 % → 50 %, each held 600 s")
        expect(card.get_by_test_id("canary-now")).to_contain_text("Step 2 of 2: now 50 %")
        expect(timeline).to_contain_text("Step 1 (10 %): Analysis passed (canary: 30 requests")
        expect(card.get_by_role("button")).to_have_count(0)
        # The buttons' POST made by hand, with the page's CSRF token: refused for the role.
        token = page.locator("[name=csrfmiddlewaretoken]").first.input_value()
        for verb in ("promote", "abort"):
            forged = page.request.post(f"{url}{verb}/", form={"csrfmiddlewaretoken": token})
            assert forged.status == 403, (onlooker.username, verb)
            # The policy refused it (the token check would have said something else).
            assert "Only MLOps engineers may promote or abort canaries." in forged.text()
    assert weighing(deployment.pk, 50).canary_step == 1  # nobody took the decision

    page.context.clear_cookies()
    page.context.add_init_script(path=str(AXE_JS))
    log_in(bob)
    page.goto(url)
    assert page.evaluate(RUN_AXE, []) == []
    screenshot("canary")
    card.get_by_role("button", name="Promote now").click()
    promoting = f"Promoting the canary #{deployment.pk}: it takes all the traffic in a moment."
    expect(page.get_by_role("alert").filter(has_text=promoting)).to_be_visible()
    # The page polls its state and redraws itself once the promotion job is done.
    expect(page.get_by_test_id("deployment-state")).to_have_text("Succeeded", timeout=60_000)
    expect(card).to_contain_text("Not splitting traffic now.")
    expect(card.get_by_role("button")).to_have_count(0)
    expect(timeline).to_contain_text("Promote by hand.")
    expect(timeline).to_contain_text("Promoted by bob: no reason given.")
    endpoint = page.get_by_test_id("endpoint").inner_text()
    assert httpx.get(f"{endpoint}/health", timeout=5).json()["version"] == 2
    screenshot("promoted")
