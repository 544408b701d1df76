"""Targets and deployments pages."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from deployments import services
from deployments.choices import DeploymentState as State
from deployments.models import Deployment, Target
from tests.factories import register_iris_version


def make_live(alice, bob, version, target):
    deployment = services.request_deployment(alice, version=version, target=target, reason="x")
    if deployment.state == State.REQUESTED:
        services.approve_deployment(bob, deployment)
    Deployment.objects.filter(pk=deployment.pk).update(state=State.RUNNING)
    deployment.refresh_from_db()
    services.complete_deployment(deployment, "http://127.0.0.1:9")
    return deployment


def test_engineers_create_targets_through_the_form(client, bob):
    client.force_login(bob)
    response = client.post(
        "/targets/new/",
        {"name": "churn-prod", "environment": "production", "backend": "local",
         "backend_settings": "", "requires_approval": "", "verification_window_seconds": 60},
    )  # fmt: skip
    assert response.status_code == 302
    assert Target.objects.get(name="churn-prod").requires_approval is True


def test_a_bad_backend_setting_shows_on_its_field(client, bob):
    client.force_login(bob)
    response = client.post(
        "/targets/new/",
        {"name": "cd", "environment": "staging", "backend": "webhook",
         "backend_settings": '{"url": "https://cd.example/hook"}',
         "verification_window_seconds": 60},
    )  # fmt: skip
    assert response.status_code == 200
    assert "secret is required" in " ".join(response.context["form"].errors["backend_settings"])


def test_data_scientists_cannot_open_the_target_form(client, alice):
    client.force_login(alice)
    assert client.get("/targets/new/").status_code == 403


def test_the_request_form_offers_only_ready_versions(client, alice, iris, ready_version, staging):
    register_iris_version(alice, iris)  # v2, not validated
    client.force_login(alice)
    form = client.get("/deployments/new/?model=iris").context["form"]
    assert list(form.fields["version"].queryset) == [ready_version]
    response = client.post(
        "/deployments/new/",
        {"version": ready_version.pk, "target": staging.pk, "reason": "Try it in staging"},
    )
    deployment = Deployment.objects.get()
    assert response["Location"] == f"/deployments/{deployment.pk}/"
    assert deployment.state == State.QUEUED


def test_the_approval_page_shows_metrics_against_the_live_version(
    client, alice, bob, ready_version, second_version, production
):
    make_live(alice, bob, ready_version, production)
    candidate = services.request_deployment(
        alice, version=second_version, target=production, reason="Higher accuracy"
    )
    client.force_login(bob)
    response = client.get(candidate.get_absolute_url())
    rows = {row["name"]: row for row in response.context["evidence"]["metric_rows"]}
    assert rows["accuracy"]["a"] == 0.9 and rows["accuracy"]["b"] == 0.95
    assert rows["accuracy"]["delta"] == pytest.approx(0.05)
    page = response.content.decode()
    assert "+0.05" in page
    assert ">Approve</button>" in page


def test_the_requester_sees_no_approve_button_on_their_own_request(
    client, bob, ready_version, production
):
    deployment = services.request_deployment(
        bob, version=ready_version, target=production, reason="mine"
    )
    client.force_login(bob)
    page = client.get(deployment.get_absolute_url()).content.decode()
    assert ">Approve</button>" not in page
    assert "Waiting for another MLOps engineer to approve." in page


def test_approving_and_commenting_through_the_page(client, alice, bob, ready_version, production):
    deployment = services.request_deployment(
        alice, version=ready_version, target=production, reason="Ship"
    )
    client.force_login(bob)
    client.post(f"/deployments/{deployment.pk}/comment/", {"body": "Checking dashboards"})
    response = client.post(f"/deployments/{deployment.pk}/approve/", {"comment": "Go"}, follow=True)
    assert "is queued" in response.content.decode()
    deployment.refresh_from_db()
    assert deployment.state == State.QUEUED
    client.force_login(alice)
    page = client.get(deployment.get_absolute_url()).content.decode()
    assert "Checking dashboards" in page
    assert "requested → approved" in page and "approved → queued" in page


def test_a_conflicting_click_shows_a_message_not_an_error(
    client, alice, bob, ready_version, production
):
    deployment = services.request_deployment(
        alice, version=ready_version, target=production, reason="Ship"
    )
    services.cancel_deployment(alice, deployment)
    client.force_login(bob)
    response = client.post(f"/deployments/{deployment.pk}/approve/", {}, follow=True)
    assert response.status_code == 200
    assert "it cannot become approved" in response.content.decode()


def test_the_live_panel_polls_until_the_deployment_is_final(client, alice, ready_version, staging):
    deployment = services.request_deployment(
        alice, version=ready_version, target=staging, reason="x"
    )
    deployment.log_lines.create(message="Starting the model server")
    client.force_login(alice)
    partial = client.get(deployment.get_absolute_url(), headers={"HX-Request": "true"})
    html = partial.content.decode()
    assert html.lstrip().startswith('<div id="deployment-live"')
    assert 'hx-trigger="every 2s"' in html and "Starting the model server" in html


def test_the_deployment_list_filters_with_constant_queries(client, alice, ready_version, staging):
    client.force_login(alice)
    services.request_deployment(alice, version=ready_version, target=staging, reason="x")

    def count():
        with CaptureQueriesContext(connection) as queries:
            assert client.get("/deployments/").status_code == 200
        return len(queries)

    few = count()
    for _ in range(10):
        services.request_deployment(alice, version=ready_version, target=staging, reason="x")
    assert count() == few
    assert client.get("/deployments/?state=failed").context["page"].paginator.count == 0
    assert client.get("/deployments/?target=iris-staging").context["page"].paginator.count == 11


def test_the_version_and_target_pages_show_where_it_runs(
    client, alice, bob, ready_version, production
):
    live = make_live(alice, bob, ready_version, production)
    client.force_login(alice)
    version_page = client.get(ready_version.get_absolute_url())
    assert list(version_page.context["deployments"]) == [live]
    target_page = client.get(production.get_absolute_url())
    assert target_page.context["live"] == live
    assert list(target_page.context["timeline"]) == [live]


def test_the_approval_page_shows_open_incidents_and_asks_for_an_override(
    client, alice, bob, ready_version, production
):
    from monitoring.services import incidents

    incidents.open_incident(bob, title="Latency SLO burn", severity="sev1", target=production)
    deployment = services.request_deployment(
        alice, version=ready_version, target=production, reason="fix"
    )
    client.force_login(bob)
    page = client.get(deployment.get_absolute_url()).content.decode()
    assert "Latency SLO burn" in page
    assert 'name="override_reason"' in page
    refused = client.post(f"/deployments/{deployment.pk}/approve/", {}, follow=True)
    assert "needs a written override reason" in refused.content.decode()
    client.post(f"/deployments/{deployment.pk}/approve/", {"override_reason": "It is the fix"})
    deployment.refresh_from_db()
    assert deployment.state == State.QUEUED


def test_a_live_version_whose_server_died_is_redeployed_from_its_page(
    client, alice, bob, carol, ready_version, staging
):
    live = make_live(alice, bob, ready_version, staging)  # no model server runs for it
    client.force_login(alice)
    html = client.get(f"/deployments/{live.pk}/").content.decode()
    assert "The model server is not running" in html
    form = html.split('data-testid="redeploy"')[1].split("</form>")[0]
    reason = form.split('name="reason"')[1].split(">")[1].split("<")[0]
    response = client.post(
        "/deployments/new/",
        {"version": ready_version.pk, "target": staging.pk, "reason": reason},
    )
    again = Deployment.objects.latest("pk")
    assert response["Location"] == f"/deployments/{again.pk}/"
    assert (again.version, again.target, again.requested_by) == (ready_version, staging, alice)
    assert again.reason == "Redeploy: the model server stopped."
    client.force_login(carol)  # a viewer gets no such form
    assert 'data-testid="redeploy"' not in client.get(f"/deployments/{live.pk}/").content.decode()


@pytest.fixture
def model_server():
    """A stand-in for the model server on 127.0.0.1: answers /predict with one 0 per row,
    and records what it was sent."""
    import http.server
    import json
    import threading

    received = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            received.append((self.path, body))
            answer = json.dumps({"predictions": [0] * len(body["instances"])}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    server.url, server.received = f"http://127.0.0.1:{server.server_port}", received
    yield server
    server.shutdown()
    server.server_close()


def test_predict_is_tried_from_the_deployment_page(
    client, alice, bob, carol, ready_version, staging, model_server
):
    live = make_live(alice, bob, ready_version, staging)
    Deployment.objects.filter(pk=live.pk).update(endpoint=model_server.url)
    client.force_login(alice)
    page = client.get(f"/deployments/{live.pk}/").content.decode()
    assert f"Try it: POST {model_server.url}/predict" in page
    htmx = {"HX-Request": "true"}
    answer = client.post(f"/deployments/{live.pk}/try/", {"instances": "[[5.1, 3.5, 1.4, 0.2]]"},
                         headers=htmx).content.decode()  # fmt: skip
    assert "HTTP 200" in answer and "&quot;predictions&quot;: [\n    0\n  ]" in answer
    assert model_server.received == [("/predict", {"instances": [[5.1, 3.5, 1.4, 0.2]]})]
    bad = client.post(f"/deployments/{live.pk}/try/", {"instances": "[[1, 2"}, headers=htmx)
    assert "Not valid JSON" in bad.content.decode() and len(model_server.received) == 1
    client.force_login(carol)  # a viewer: no form, and the URL refuses
    viewer_page = client.get(f"/deployments/{live.pk}/").content.decode()
    assert 'data-testid="try-predict"' not in viewer_page
    assert client.post(f"/deployments/{live.pk}/try/", {"instances": "[[1.0]]"}).status_code == 403
    assert len(model_server.received) == 1
