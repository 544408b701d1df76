"""A live portal for the contract tests (the session's gunicorn and worker, `portal_gunicorn`):
the schema it serves, a token, and one object of every kind, so that operations with a path
parameter reach their code instead of a 404. Tests using it are `worker` and
`django_db(transaction=True)`."""

from dataclasses import dataclass, field

import httpx
import pytest

from deployments import services as registry
from deployments.services import aliases
from docs_app import services as docs
from mlops_portal.core import tokens
from mlops_portal.core.roles import Role
from monitoring.services import alerts, checks, incidents
from tests.factories import UserFactory, register_iris_version, validated


@dataclass
class Portal:
    """The live portal as a client sees it: its URL, the schema it serves, a token, and
    `paths`: a real value for each path parameter, by the path's first segment."""

    url: str
    token: str
    schema: dict = field(default_factory=dict)
    paths: dict = field(default_factory=dict)

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Token {self.token}"}, timeout=60
        )


def fetch_schema(url: str, token: str) -> dict:
    """The schema as a CI job gets it: /api/schema/ with a token, as JSON."""
    response = httpx.get(
        f"{url}/api/schema/",
        params={"format": "json"},
        headers={"Authorization": f"Token {token}"},
        timeout=60,
    )
    assert response.status_code == 200, response.text[:500]
    assert response.headers["content-type"].startswith("application/vnd.oai.openapi+json")
    return response.json()


@pytest.fixture
def admin(transactional_db):
    return UserFactory(username="root", role=None, is_superuser=True, is_staff=True)


@pytest.fixture
def live_portal(portal_gunicorn, admin) -> Portal:
    """The live portal, a superuser's token and the schema it serves. (Fuzzing sends some
    broken tokens on purpose: the portal runs with a bad-token limit no run reaches,
    tests/live.py.)"""
    _, secret = tokens.create_token(admin, "contract")
    portal = Portal(url=portal_gunicorn.url, token=secret)
    portal.schema = fetch_schema(portal.url, secret)
    return portal


@pytest.fixture
def portal(live_portal, admin) -> Portal:
    """The live portal with one object of every kind."""
    live_portal.paths = seed_world(admin)
    return live_portal


def seed_world(admin) -> dict:
    """One object of every kind (and a spare of each kind a DELETE may remove), made
    through the services; returns {the path segment before a parameter: {method or "*":
    value}}, or {"METHOD /path/{param}/": {param: value}} for one operation."""
    alice = UserFactory(username="alice", role=Role.DATA_SCIENTIST)
    bob = UserFactory(username="bob", role=Role.MLOPS_ENGINEER)
    model = registry.create_model(alice, name="iris", team="botany", tags=["flowers"])
    version = validated(register_iris_version(alice, model, description="First."))
    registry.create_target(bob, name="iris", environment="staging", requires_approval=False)
    production = registry.create_target(bob, name="iris-production", environment="production")
    deployment = registry.request_deployment(
        alice, version=version, target=production, reason="Contract tests."
    )
    registry.add_comment(alice, deployment, "Looks good.")
    webhook = registry.create_target(
        bob, name="iris-cd", environment="staging", backend="webhook",
        backend_settings={"url": "http://127.0.0.1:9/deploy", "secret": "s" * 32},
    )  # fmt: skip
    handed_over = registry.request_deployment(
        alice, version=version, target=webhook, reason="Through the CD system."
    )
    check = checks.create_check(bob, name="iris health", url="http://127.0.0.1:9/health")
    spare_check = checks.create_check(bob, name="spare", url="http://127.0.0.1:9/spare")
    incident = incidents.open_incident(bob, title="Iris is slow")
    page = docs.create_page(alice, title="Iris runbook", body="# Restart\nIt helps.",
                            linked_models=[model])  # fmt: skip
    spare_page = docs.create_page(alice, title="Scratch")
    spare_token, _ = tokens.create_token(admin, "spare")
    aliases.set_alias(alice, model, "champion", version.number)
    rule = alerts.create_rule(bob, name="iris errors", metric="error_rate", threshold=0.05,
                              model=model)  # fmt: skip
    spare_rule = alerts.create_rule(bob, name="spare", metric="error_rate", threshold=0.5,
                                    target=production)  # fmt: skip
    return {
        "models": {"*": model.name},
        "versions": {"*": str(version.number)},
        "targets": {"*": "iris"},
        "deployments": {"*": str(deployment.pk)},
        "checks": {"*": str(check.pk), "DELETE": str(spare_check.pk)},
        "incidents": {"*": str(incident.pk)},
        "pages": {"*": page.slug, "DELETE": spare_page.slug},
        "tokens": {"*": str(spare_token.pk)},
        "metrics": {"*": "dora"},
        "aliases": {"*": "champion"},
        "alert-rules": {"*": str(rule.pk), "DELETE": str(spare_rule.pk)},
        # Only a webhook target's deployment takes a callback (signed: 401 without it).
        "POST /api/v1/deployments/{id}/callback/": {"id": str(handed_over.pk)},
    }
