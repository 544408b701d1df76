"""Canary releases: the request's rules, the analysis' arithmetic, and recovery when a step
job is lost (the job's code run in this process, with real model servers and proxy)."""

from datetime import timedelta

import httpx
import pytest
from django.conf import settings
from django.utils import timezone

from deployments import canary_analysis as analysis
from deployments import services
from deployments.backends.local import is_model_server, is_proxy
from deployments.choices import DeploymentState as State
from deployments.models import Deployment
from deployments.services import canary

URL = "/api/v1/deployments/"
RULES = analysis.Rules(
    min_requests=20, max_error_rate_increase=1.0, max_p95_ratio=1.5, p95_floor_seconds=0.025
)


def canary_payload(**overrides):
    return {
        "model": "iris", "version": 1, "target": "iris-staging", "reason": "Canary",
        "strategy": "canary", "canary_steps": [10, 50], "canary_step_seconds": 60,
        **overrides,
    }  # fmt: skip


@pytest.mark.django_db
def test_a_canary_request_is_accepted_and_shown(api_client_for, alice, ready_version, staging):
    response = api_client_for(alice).post(URL, canary_payload(), format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["strategy"], body["canary_steps"], body["canary_step_seconds"]) == (
        "canary", [10, 50], 60,
    )  # fmt: skip
    assert body["canary_weight"] is None


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"canary_steps": [50, 10]}, "canary_steps", "must increase"),
        ({"canary_steps": [10, 10]}, "canary_steps", "must increase"),
        ({"canary_steps": []}, "canary_steps", "traffic percentages"),
        ({"canary_steps": [10, 100]}, "canary_steps", "less than or equal to 99"),
        ({"canary_step_seconds": 0}, "canary_step_seconds", "1 to 86400 seconds"),
        ({"strategy": "rolling"}, "strategy", "not a valid choice"),
        ({"target": "iris-cd"}, "strategy", "webhook backend, which cannot split traffic"),
    ],
)
def test_bad_canary_requests_get_a_400_naming_the_field(
    api_client_for, alice, ready_version, staging, webhook_target, overrides, field, message
):
    response = api_client_for(alice).post(URL, canary_payload(**overrides), format="json")
    assert response.status_code == 400, response.json()
    assert message in str(response.json()[field])
    assert not Deployment.objects.exists()


def test_the_analysis_reads_windows_and_p95_from_histograms():
    before = {"requests": 10.0, "errors": 0.0, "buckets": {"0.01": 10.0, "0.1": 10.0, "+Inf": 10.0}}
    after = {"requests": 110.0, "errors": 5.0,
             "buckets": {"0.01": 60.0, "0.1": 110.0, "+Inf": 110.0}}  # fmt: skip
    seen = analysis.window(before, after)
    assert (seen.requests, seen.errors, seen.error_rate) == (100.0, 5.0, 5.0)
    # 95 of 100 lie at or below: 50 in the first bucket, 45 of the 50 in (0.01, 0.1].
    assert seen.p95 == pytest.approx(0.01 + 0.09 * 45 / 50)
    assert analysis.quantile(0.95, {"+Inf": 0.0}) is None


@pytest.mark.parametrize(
    ("canary", "passed", "says"),
    [
        (analysis.Window(100, 1, 0.004), True, "Analysis passed"),
        (analysis.Window(100, 3, 0.004), False, "error rate 3.0 % is over the stable's 1.0 %"),
        (analysis.Window(100, 0, 0.2), False, "p95 200.0 ms is over 1.5 times"),
        (analysis.Window(100, 0, 0.02), True, "Analysis passed"),  # under the floor
        (analysis.Window(5, 5, 0.2), True, "Not judged: 5 canary requests"),
    ],
)
def test_the_analysis_rules(canary, passed, says):
    stable = analysis.Window(1000, 10, 0.01)
    verdict = analysis.judge(stable, canary, RULES)
    assert verdict.passed is passed
    assert says in verdict.summary


@pytest.mark.django_db(transaction=True)
def test_a_first_deployment_asked_as_a_canary_goes_all_at_once(alice, ready_version, staging):
    deployment = services.request_deployment(
        alice, version=ready_version, target=staging, reason="First",
        strategy="canary", canary_steps=[10], canary_step_seconds=5,
    )  # fmt: skip
    assert services.run_deployment(deployment.pk) == State.SUCCEEDED
    deployment.refresh_from_db()
    assert deployment.canary_weight is None
    assert "a first deployment goes all at once" in " ".join(
        deployment.log_lines.values_list("message", flat=True)
    )


@pytest.mark.django_db(transaction=True)
def test_a_canary_whose_step_job_is_lost_is_stopped_by_the_reconciler(
    alice, ready_version, second_version, staging
):
    stable = services.request_deployment(alice, version=ready_version, target=staging, reason="x")
    assert services.run_deployment(stable.pk) == State.SUCCEEDED
    stable.refresh_from_db()
    deployment = services.request_deployment(
        alice, version=second_version, target=staging, reason="Canary",
        strategy="canary", canary_steps=[10, 50], canary_step_seconds=30,
    )  # fmt: skip
    assert services.run_deployment(deployment.pk) == State.RUNNING  # its step job is sent
    deployment.refresh_from_db()
    assert deployment.canary_weight == 10
    proxy = deployment.backend_state["proxy_pid"]
    assert is_proxy(proxy) and is_model_server(deployment.backend_state["pid"])

    # Within its hold and lease, the reconciler leaves it alone.
    assert services.reconcile_deployments()["failed"] == 0
    # The step job never runs (its worker died): a hold and a lease later, it is stopped.
    later = timezone.now() + timedelta(seconds=30 + settings.DEPLOY_LEASE_SECONDS + 1)
    assert services.reconcile_deployments(now=later)["failed"] == 1
    deployment.refresh_from_db()
    assert deployment.state == State.FAILED and deployment.canary_weight is None
    assert "The canary's step job did not run" in deployment.failure_reason
    assert not is_proxy(proxy) and not is_model_server(deployment.backend_state["pid"])
    stable.refresh_from_db()
    assert stable.state == State.SUCCEEDED
    assert httpx.get(f"{stable.endpoint}/health").json()["version"] == 1
    # The step job delivered late finds nothing to decide.
    assert canary.run_step(deployment.pk, 0) is None


@pytest.mark.django_db
def test_the_request_form_takes_a_canary_and_shows_errors_on_its_fields(
    client, alice, ready_version, staging, webhook_target
):
    client.force_login(alice)
    fields = {"version": ready_version.pk, "reason": "Canary", "strategy": "canary",
              "canary_steps": "10, 50", "canary_step_seconds": 120}  # fmt: skip
    refused = client.post("/deployments/new/", {**fields, "target": webhook_target.pk})
    assert "cannot split traffic" in " ".join(refused.context["form"].errors["strategy"])
    wrong = client.post("/deployments/new/", {**fields, "target": staging.pk,
                                              "canary_steps": "50, ten"})  # fmt: skip
    assert "Whole percentages" in " ".join(wrong.context["form"].errors["canary_steps"])
    assert not Deployment.objects.exists()

    client.post("/deployments/new/", {**fields, "target": staging.pk})
    deployment = Deployment.objects.get()
    assert (deployment.strategy, deployment.canary_steps, deployment.canary_step_seconds) == (
        "canary", [10, 50], 120,
    )  # fmt: skip


@pytest.mark.django_db
def test_the_page_of_a_running_canary_offers_promote_and_abort_to_engineers_only(
    client, alice, bob, carol, ready_version, staging
):
    deployment = services.request_deployment(
        alice, version=ready_version, target=staging, reason="Canary",
        strategy="canary", canary_steps=[10, 50], canary_step_seconds=60,
    )  # fmt: skip
    Deployment.objects.filter(pk=deployment.pk).update(
        state=State.RUNNING, canary_weight=10, endpoint="http://127.0.0.1:9"
    )
    client.force_login(carol)
    assert "Promote now" not in client.get(deployment.get_absolute_url()).content.decode()
    assert client.post(f"/deployments/{deployment.pk}/promote/").status_code == 403

    client.force_login(bob)
    page = client.get(deployment.get_absolute_url()).content.decode()
    assert "Step 1 of 2: now <strong>10 %</strong> of the traffic" in page
    assert "Promote now" in page
    client.post(f"/deployments/{deployment.pk}/abort/", {"reason": "Latency."})
    deployment.refresh_from_db()
    assert deployment.canary_step == canary.DECIDING  # its job carries out the abort
    assert deployment.events.filter(message="Abort by hand: Latency.", actor=bob).exists()
