"""The deployments API as CI pipelines and scripts use it."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from deployments import services
from deployments.choices import DeploymentState as State
from deployments.models import Deployment, Target

URL = "/api/v1/deployments/"
RUN = "deployments.tasks.run_deployment_task"


def request_payload(**overrides):
    return {
        "model": "iris",
        "version": 1,
        "target": "iris-production",
        "reason": "Better",
        **overrides,
    }


def test_a_pipeline_requests_a_deployment(api_client_for, alice, ready_version, production):
    response = api_client_for(alice).post(URL, request_payload(), format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["model"], body["version"], body["target"]) == ("iris", 1, "iris-production")
    assert (body["state"], body["requested_by"]) == ("requested", "alice")


@pytest.mark.parametrize(
    ("overrides", "status", "key"),
    [
        ({"reason": ""}, 400, "reason"),
        ({"version": "one"}, 400, "version"),
        ({"target": "nowhere"}, 400, "target"),
        ({"model": "nothing"}, 400, "model"),
        ({"version": 9}, 400, "version"),
    ],
)
def test_bad_requests_get_a_clear_error(
    api_client_for, alice, ready_version, production, overrides, status, key
):
    response = api_client_for(alice).post(URL, request_payload(**overrides), format="json")
    assert response.status_code == status
    assert key in response.json()


def test_viewers_cannot_request(api_client_for, carol, ready_version, production):
    response = api_client_for(carol).post(URL, request_payload(), format="json")
    assert response.status_code == 403
    assert response.json() == {
        "detail": "Only data scientists or MLOps engineers may request deployments."
    }
    assert not Deployment.objects.exists()


def test_approve_reject_and_four_eyes_over_the_api(
    api_client_for, alice, bob, ready_version, production, outbox_jobs
):
    deployment_id = api_client_for(bob).post(URL, request_payload(), format="json").json()["id"]
    own = api_client_for(bob).post(f"{URL}{deployment_id}/approve/", {}, format="json")
    assert own.status_code == 403
    assert "another engineer must approve" in own.json()["detail"]
    by_scientist = api_client_for(alice).post(f"{URL}{deployment_id}/approve/", {}, format="json")
    assert by_scientist.status_code == 403
    assert by_scientist.json()["detail"] == "Only MLOps engineers may approve deployments."
    assert Deployment.objects.get(pk=deployment_id).state == State.REQUESTED

    other = api_client_for(alice).post(URL, request_payload(), format="json").json()["id"]
    approved = api_client_for(bob).post(
        f"{URL}{other}/approve/", {"comment": "LGTM"}, format="json"
    )
    assert approved.status_code == 200
    assert (approved.json()["state"], approved.json()["approved_by"]) == ("queued", "bob")
    again = api_client_for(bob).post(f"{URL}{other}/approve/", {}, format="json")
    assert again.status_code == 409
    assert outbox_jobs(RUN) == [(RUN, (other,))]  # one deploy job, for the approved request
    assert "queued" in again.json()["detail"]
    assert Deployment.objects.get(pk=other).events.filter(to_state=State.APPROVED).count() == 1


def test_the_requester_cancels_over_the_api(
    api_client_for, alice, ready_version, production, outbox_jobs
):
    api = api_client_for(alice)
    deployment_id = api.post(URL, request_payload(), format="json").json()["id"]
    response = api.post(f"{URL}{deployment_id}/cancel/", {"reason": "oops"}, format="json")
    assert response.json()["state"] == "cancelled"
    assert outbox_jobs(RUN) == []


def test_list_filters_and_constant_queries(api_client_for, alice, bob, ready_version, production):
    api = api_client_for(alice)
    api.post(URL, request_payload(), format="json")
    api.get(URL)  # warm-up: the token's last use is written once a minute

    def count():
        with CaptureQueriesContext(connection) as queries:
            assert api.get(URL).status_code == 200
        return len(queries)

    few = count()
    for _ in range(12):
        api.post(URL, request_payload(), format="json")
    assert count() == few
    assert api.get(URL + "?state=requested").json()["count"] == 13
    assert api.get(URL + "?state=succeeded").json()["count"] == 0
    assert api.get(URL + "?target=iris-production&model=iris").json()["count"] == 13
    assert api.get(URL + "?requested_by=bob").json()["count"] == 0


def test_logs_and_comments(api_client_for, alice, bob, ready_version, production):
    api = api_client_for(alice)
    deployment_id = api.post(URL, request_payload(), format="json").json()["id"]
    posted = api.post(
        f"{URL}{deployment_id}/comments/", {"body": "Ready when you are"}, format="json"
    )
    assert posted.status_code == 201
    comments = api_client_for(bob).get(f"{URL}{deployment_id}/comments/").json()
    assert [(c["actor"], c["message"]) for c in comments] == [("alice", "Ready when you are")]
    deployment = Deployment.objects.get(pk=deployment_id)
    first = deployment.log_lines.create(message="one")
    deployment.log_lines.create(message="two")
    lines = api.get(f"{URL}{deployment_id}/logs/?after={first.pk}").json()
    assert [line["message"] for line in lines] == ["two"]


def test_rollback_over_the_api(
    api_client_for, alice, bob, ready_version, second_version, production, outbox_jobs
):
    for version in (ready_version, second_version):
        deployment = services.request_deployment(
            alice, version=version, target=production, reason="x"
        )
        services.approve_deployment(bob, deployment)
        Deployment.objects.filter(pk=deployment.pk).update(state=State.RUNNING)
        deployment.refresh_from_db()
        services.complete_deployment(deployment, "http://127.0.0.1:9")
    api = api_client_for(bob)
    missing = api.post(f"{URL}{deployment.pk}/rollback/", {}, format="json")
    assert missing.status_code == 400
    assert "reason" in missing.json()
    response = api.post(f"{URL}{deployment.pk}/rollback/", {"reason": "p99 up"}, format="json")
    assert response.status_code == 201
    assert (response.json()["version"], response.json()["rollback_of"]) == (1, deployment.pk)
    rollback_id = response.json()["id"]
    assert (RUN, (rollback_id,)) not in outbox_jobs(RUN)  # production: it waits for approval


def test_targets_are_managed_by_engineers(api_client_for, alice, bob):
    payload = {"name": "churn-staging", "environment": "staging"}
    refused = api_client_for(alice).post("/api/v1/targets/", payload, format="json")
    assert refused.status_code == 403
    assert refused.json()["detail"] == "Only MLOps engineers may manage targets."
    assert not Target.objects.exists()
    created = api_client_for(bob).post("/api/v1/targets/", payload, format="json")
    assert created.status_code == 201
    assert created.json()["requires_approval"] is False
    bad = api_client_for(bob).post(
        "/api/v1/targets/",
        {"name": "cd", "environment": "staging", "backend": "webhook", "backend_settings": {}},
        format="json",
    )
    assert bad.status_code == 400
    assert "url is required" in " ".join(bad.json()["backend_settings"])
