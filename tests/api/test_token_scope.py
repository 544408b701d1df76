"""API tokens with a scope (read-only or read-write) and an optional expiry."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from deployments.models import RegisteredModel
from mlops_portal.core import tokens
from mlops_portal.models import ApiToken


def client_with(secret) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {secret}")
    return client


def test_a_read_only_token_reads_and_its_writes_are_403(alice):
    _, secret = tokens.create_token(alice, "dashboard", scope="read")
    api = client_with(secret)
    assert api.get("/api/v1/models/").status_code == 200
    refused = api.post("/api/v1/models/", {"name": "churn"}, format="json")
    assert refused.status_code == 403
    assert refused.json() == {
        "detail": "This API token is read-only: it may read, not change anything. "
        "Use a read-write token."
    }
    assert not RegisteredModel.objects.exists()
    # Its own revocation is a write too; its user can still do it with a session.
    token = ApiToken.objects.get(user=alice)
    assert api.delete(f"/api/v1/tokens/{token.pk}/").status_code == 403


def test_a_read_write_token_writes_as_its_user_may(alice):
    _, secret = tokens.create_token(alice, "pipeline")
    assert client_with(secret).post("/api/v1/models/", {"name": "churn"}).status_code == 201


def test_an_expired_token_is_401_naming_the_expiry(alice):
    token, secret = tokens.create_token(
        alice, "short", expires_at=timezone.now() + timedelta(hours=1)
    )
    api = client_with(secret)
    assert api.get("/api/v1/models/").status_code == 200
    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    response = api.get("/api/v1/models/")
    assert response.status_code == 401
    assert response.json()["detail"].startswith("This token expired at ")
    assert response.headers["WWW-Authenticate"] == "Token"


def test_the_tokens_api_creates_a_read_only_expiring_token(api_client_for, alice):
    expires = (timezone.now() + timedelta(days=7)).replace(microsecond=0)
    created = api_client_for(alice).post(
        "/api/v1/tokens/",
        {"name": "nightly-read", "scope": "read", "expires_at": expires.isoformat()},
        format="json",
    )
    assert created.status_code == 201, created.json()
    body = created.json()
    assert (body["scope"], body["is_active"]) == ("read", True)
    token = ApiToken.objects.get(pk=body["id"])
    assert (token.scope, token.expires_at) == ("read", expires)
    assert client_with(body["secret"]).post("/api/v1/models/", {"name": "x"}).status_code == 403


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"name": "t", "scope": "admin"}, "scope"),
        ({"name": "t", "expires_at": "2001-01-01T00:00:00Z"}, "expires_at"),
    ],
)
def test_the_tokens_api_names_a_bad_scope_or_a_past_expiry(api_client_for, alice, payload, field):
    response = api_client_for(alice).post("/api/v1/tokens/", payload, format="json")
    assert response.status_code == 400
    assert field in response.json()
    assert ApiToken.objects.filter(user=alice).count() == 1  # the client's own


def test_the_tokens_page_creates_a_read_only_token_expiring_in_30_days(client, alice):
    client.force_login(alice)
    response = client.post(
        reverse("token-list"), {"name": "grafana", "scope": "read", "expires_in_days": "30"}
    )
    token = ApiToken.objects.get(user=alice)
    assert token.scope == "read"
    assert timedelta(days=29, hours=23) < token.expires_at - timezone.now() <= timedelta(days=30)
    page = response.content.decode()
    assert "Read only" in page and "Copy this secret now" in page


def test_an_expired_token_no_longer_blocks_its_name(alice):
    token, _ = tokens.create_token(alice, "ci", expires_at=timezone.now() + timedelta(hours=1))
    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now())
    assert tokens.create_token(alice, "ci")[0].name == "ci"
