"""The webhook backend against a real local stand-in of a CD system."""

import json
import time
from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from deployments import services
from deployments.backends.webhook import SIGNATURE_HEADER, sign, verify
from deployments.choices import DeploymentState as State
from deployments.models import Deployment
from tests.deploy.conftest import WEBHOOK_SECRET


@pytest.fixture
def queued(alice, ready_version, webhook_target):
    """A queued deployment to the webhook target (its job is run in-process below)."""
    return services.request_deployment(
        alice, version=ready_version, target=webhook_target, reason="Ship it"
    )


def callback(client, deployment, body: dict, secret=WEBHOOK_SECRET, timestamp=None):
    raw = json.dumps(body).encode()
    return client.post(
        f"/api/v1/deployments/{deployment.pk}/callback/",
        data=raw,
        content_type="application/json",
        headers={SIGNATURE_HEADER: sign(secret, raw, timestamp)},
    )


def test_it_posts_a_signed_payload_and_takes_a_synchronous_answer(queued, cd_system):
    assert services.run_deployment(queued.pk) == State.SUCCEEDED
    queued.refresh_from_db()
    assert queued.endpoint == "https://cd.example/iris"
    headers, body = cd_system.requests[0]
    assert verify(WEBHOOK_SECRET, body, headers[SIGNATURE_HEADER]) is None
    payload = json.loads(body)
    assert (payload["model"], payload["version"], payload["target"]) == ("iris", 1, "iris-cd")
    assert payload["callback_url"].endswith(f"/api/v1/deployments/{queued.pk}/callback/")
    assert WEBHOOK_SECRET not in body.decode()
    log = " ".join(queued.log_lines.values_list("message", flat=True))
    assert WEBHOOK_SECRET not in log


def test_a_failure_answer_fails_the_deployment_with_its_reason(queued, cd_system):
    cd_system.answer = (200, {"status": "failed", "reason": "image pull backoff"})
    assert services.run_deployment(queued.pk) == State.FAILED
    queued.refresh_from_db()
    assert "image pull backoff" in queued.failure_reason


def test_an_http_error_fails_the_deployment(queued, cd_system):
    cd_system.answer = (500, {"error": "boom"})
    services.run_deployment(queued.pk)
    queued.refresh_from_db()
    assert queued.state == State.FAILED
    assert "answered HTTP 500" in queued.failure_reason


def test_an_accepted_deploy_finishes_with_the_signed_callback(queued, cd_system, client):
    cd_system.answer = (202, {"accepted": True})
    assert services.run_deployment(queued.pk) == State.RUNNING
    response = callback(client, queued, {"status": "succeeded", "endpoint": "https://x/iris"})
    assert response.status_code == 200, response.json()
    assert response.json()["state"] == State.SUCCEEDED
    replay = callback(client, queued, {"status": "succeeded", "endpoint": "https://x/iris"})
    assert replay.status_code == 409


@pytest.mark.parametrize(
    ("secret", "age", "reason"),
    [
        ("wrong-secret-wrong-secret", 0, "does not match"),
        (WEBHOOK_SECRET, 3600, "too old"),
    ],
)
def test_a_callback_with_a_bad_signature_is_refused(queued, cd_system, client, secret, age, reason):
    cd_system.answer = (202, {})
    services.run_deployment(queued.pk)
    response = callback(
        client, queued, {"status": "succeeded"}, secret=secret, timestamp=int(time.time()) - age
    )
    assert response.status_code == 401
    assert reason in response.json()["detail"]
    queued.refresh_from_db()
    assert queued.state == State.RUNNING


@override_settings(DEPLOY_LEASE_SECONDS=60)
def test_no_callback_within_the_timeout_fails_the_deployment(queued, cd_system, bob):
    services.update_target(
        bob,
        queued.target,
        backend_settings={"url": cd_system.url, "secret": "", "timeout_seconds": 600},
    )
    cd_system.answer = (202, {})
    services.run_deployment(queued.pk)
    handed_over = timezone.now()
    # The wait is the target's timeout_seconds (600), not the job lease (60).
    before = services.reconcile_deployments(now=handed_over + timedelta(seconds=590))
    assert before["failed"] == 0
    assert Deployment.objects.get(pk=queued.pk).state == State.RUNNING
    after = services.reconcile_deployments(now=handed_over + timedelta(seconds=601))
    assert after["failed"] == 1
    queued.refresh_from_db()
    assert queued.state == State.FAILED
    assert "No answer from the CD system" in queued.failure_reason


def test_the_target_api_never_shows_the_secret(api_client_for, bob, webhook_target):
    body = api_client_for(bob).get(f"/api/v1/targets/{webhook_target.name}/").json()
    assert body["backend_settings"]["secret"] == "********"
    assert WEBHOOK_SECRET not in json.dumps(body)


def test_the_target_page_never_shows_the_secret(client, bob, webhook_target):
    client.force_login(bob)
    for url in (webhook_target.get_absolute_url(), f"{webhook_target.get_absolute_url()}edit/"):
        assert WEBHOOK_SECRET not in client.get(url).content.decode()


def test_a_deployment_stuck_in_running_is_untouched_while_its_lease_is_fresh(queued):
    Deployment.objects.filter(pk=queued.pk).update(state=State.RUNNING)
    assert services.reconcile_deployments()["failed"] == 0
