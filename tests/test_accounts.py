"""Login, roles, /healthz, API tokens (page, service and API), error pages."""

import subprocess
import sys

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse

from mlops_portal.celery import app as celery_app
from mlops_portal.models import ApiToken
from tests.conftest import ROOT


@pytest.mark.parametrize("path", ["/", "/models/", "/tokens/", "/api/docs/", "/api/schema/"])
def test_it_sends_anonymous_browsers_to_login(client, db, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/login/?next=")


def test_it_answers_anonymous_api_calls_with_401_json(client, db):
    response = client.get("/api/v1/models/")
    assert response.status_code == 401
    assert response.json() == {"detail": "Authentication credentials were not provided."}


def test_it_logs_in_with_the_form(client, alice):
    response = client.post(reverse("login"), {"username": "alice", "password": "password"})
    assert response.status_code == 302
    today = client.get("/")
    assert b"Today" in today.content
    assert b"Data scientist" in today.content  # role badge in the header


def test_it_rejects_a_wrong_password_with_a_message(client, alice):
    response = client.post(reverse("login"), {"username": "alice", "password": "nope"})
    assert response.status_code == 200
    assert b"didn't match" in response.content


def test_it_logs_out_with_post(client, alice):
    client.force_login(alice)
    client.post(reverse("logout"))
    assert client.get("/").status_code == 302


def test_the_role_groups_exist_after_migrating(db):
    names = set(Group.objects.values_list("name", flat=True))
    assert {"viewer", "data_scientist", "mlops_engineer"} <= names


def test_healthz_reports_database_and_broker_without_login(client, db):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "checks": {"database": "ok", "broker": "ok"},
        "broker": "redis",
    }


def test_healthz_is_503_when_the_broker_is_down(client, db, monkeypatch):
    monkeypatch.setattr(celery_app.conf, "broker_url", "redis://127.0.0.1:1/0")
    response = client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "degraded"
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["broker"].startswith("error")


def test_the_404_page_keeps_the_portal_layout(client, alice):
    client.force_login(alice)
    response = client.get("/no-such-page/")
    assert response.status_code == 404
    assert b"Not found" in response.content
    assert b"navbar" in response.content


# --- API tokens ------------------------------------------------------------------------


def test_the_tokens_page_shows_a_new_secret_once_and_stores_only_its_hash(client, alice):
    client.force_login(alice)
    response = client.post(reverse("token-list"), {"name": "training-pipeline"})
    secret = response.context["new_secret"]
    assert secret.startswith("mlp_")
    assert secret.encode() in response.content
    token = ApiToken.objects.get(user=alice)
    assert token.digest != secret and secret not in token.digest
    assert secret.encode() not in client.get(reverse("token-list")).content


def test_the_tokens_page_shows_a_field_error_for_a_duplicate_name(client, alice):
    client.force_login(alice)
    client.post(reverse("token-list"), {"name": "ci"})
    response = client.post(reverse("token-list"), {"name": "ci"})
    assert response.context["form"].errors["name"] == [
        "You already have an active token named 'ci'."
    ]


@pytest.mark.parametrize("keyword", ["Token", "Bearer"])
def test_a_token_authenticates_api_calls(client, alice, keyword):
    client.force_login(alice)
    secret = client.post(reverse("token-list"), {"name": "cli"}).context["new_secret"]
    client.logout()
    response = client.get("/api/v1/models/", headers={"Authorization": f"{keyword} {secret}"})
    assert response.status_code == 200
    assert ApiToken.objects.get(user=alice).last_used_at is not None


def test_a_revoked_token_stops_working(client, alice):
    client.force_login(alice)
    secret = client.post(reverse("token-list"), {"name": "cli"}).context["new_secret"]
    token = ApiToken.objects.get(user=alice)
    client.post(reverse("token-revoke", args=[token.pk]))
    client.logout()
    response = client.get("/api/v1/models/", headers={"Authorization": f"Token {secret}"})
    assert response.status_code == 401
    assert response.json() == {"detail": "Invalid or revoked token."}


def test_nobody_can_revoke_someone_elses_token(client, alice, dave):
    client.force_login(alice)
    client.post(reverse("token-list"), {"name": "mine"})
    token = ApiToken.objects.get(user=alice)
    client.force_login(dave)
    assert client.post(reverse("token-revoke", args=[token.pk])).status_code == 404
    token.refresh_from_db()
    assert token.is_active


def test_the_tokens_api_creates_lists_and_revokes(api_client_for, alice):
    api = api_client_for(alice)
    created = api.post("/api/v1/tokens/", {"name": "nightly"}, format="json")
    assert created.status_code == 201
    secret = created.json()["secret"]
    listed = api.get("/api/v1/tokens/").json()
    assert listed["count"] == 2
    assert all("secret" not in row for row in listed["results"])
    assert api.delete(f"/api/v1/tokens/{created.json()['id']}/").status_code == 204
    api.credentials(HTTP_AUTHORIZATION=f"Token {secret}")
    assert api.get("/api/v1/tokens/").status_code == 401


def test_the_tokens_api_names_the_field_on_bad_input(api_client_for, alice):
    response = api_client_for(alice).post("/api/v1/tokens/", {"name": "  "}, format="json")
    assert response.status_code == 400
    assert "name" in response.json()


def test_check_deploy_is_clean_with_production_values():
    env = {
        "PATH": "/usr/bin:/bin",
        "DJANGO_SETTINGS_MODULE": "mlops_portal.settings",
        "DJANGO_DEBUG": "false",
        "SECRET_KEY": "prod-" + "k3y-With-Enough-Entropy-" * 3,
        "ALLOWED_HOSTS": "portal.example.com",
        "DATABASE_URL": "sqlite:////tmp/mlops-check-deploy.sqlite3",
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_start_up_refuses_to_run_without_a_secret_key_when_debug_is_off():
    env = {
        "PATH": "/usr/bin:/bin",
        "DJANGO_DEBUG": "false",
        "DJANGO_SETTINGS_MODULE": "mlops_portal.settings",
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "SECRET_KEY must be set when DJANGO_DEBUG is off" in result.stderr
