"""Every HTML page carries the Content-Security-Policy, and none needs what it refuses: no
inline <script>, no event handler attribute, scripts only from our own static files."""

from html.parser import HTMLParser

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from deployments import services as deploy
from docs_app import services as docs
from monitoring.services import checks, incidents
from tests.factories import register_iris_version, validated

REQUIRED = {
    "script-src": "'self'",
    "object-src": "'none'",
    "base-uri": "'self'",
    "frame-ancestors": "'none'",
    "default-src": "'self'",
}


def directives(header: str) -> dict[str, str]:
    parts = (part.strip().split(None, 1) for part in header.split(";") if part.strip())
    return {part[0]: part[1] if len(part) > 1 else "" for part in parts}


class ScriptAudit(HTMLParser):
    """Collects what a strict CSP would block: inline scripts and on* attributes."""

    def __init__(self):
        super().__init__()
        self.inline_scripts, self.handlers, self.sources = 0, [], []

    def handle_starttag(self, tag, attrs):
        names = dict(attrs)
        self.handlers += [f"<{tag} {name}>" for name in names if name.startswith("on")]
        if tag == "script":
            if names.get("src"):
                self.sources.append(names["src"])
            elif names.get("type") != "application/json":
                self.inline_scripts += 1


def audit(html: str) -> ScriptAudit:
    found = ScriptAudit()
    found.feed(html)
    return found


@pytest.fixture
def portal(alice, bob):
    """One of everything an engineer looks at."""
    model = deploy.create_model(alice, name="iris", team="botany")
    version = validated(register_iris_version(alice, model, metrics={"accuracy": 0.9}))
    validated(register_iris_version(alice, model, metrics={"accuracy": 0.95}))
    target = deploy.create_target(bob, name="iris-staging", environment="staging")
    deployment = deploy.request_deployment(alice, version=version, target=target, reason="try")
    check = checks.create_check(bob, name="iris", url="http://127.0.0.1:9/health")
    incident = incidents.open_incident(bob, title="slow answers")
    page = docs.create_page(
        alice, title="Iris runbook", body="# Steps\n\n```mermaid\ngraph TD; A-->B\n```\n"
    )
    return {
        "Today": "/",
        "models": "/models/",
        "model detail": "/models/iris/?metric=accuracy",
        "version detail": f"/models/iris/versions/{version.number}/",
        "compare": "/models/iris/compare/?a=1&b=2",
        "deployments": "/deployments/",
        "deployment detail": f"/deployments/{deployment.pk}/",
        "targets": "/targets/",
        "target detail": f"/targets/{target.name}/",
        "monitoring": "/checks/",
        "check detail": f"/checks/{check.pk}/",
        "incidents": "/incidents/",
        "incident detail": f"/incidents/{incident.pk}/",
        "docs": "/docs/",
        "doc page": f"/docs/{page.slug}/",
        "doc edit": f"/docs/{page.slug}/edit/",
        "doc print": f"/docs/{page.slug}/print/",
        "changes": "/changes/",
        "search": "/search/?q=iris",
        "dashboards": "/dashboards/",
        "notifications": "/notifications/",
        "tokens": "/tokens/",
        "api docs": "/api/docs/",
        "not found": "/models/no-such-model/",
    }


def test_every_page_carries_the_policy_and_needs_no_inline_script(client, bob, portal):
    client.force_login(bob)
    for name, path in portal.items():
        response = client.get(path)
        assert response.status_code in (200, 404), (name, response.status_code)
        assert response["Content-Type"].startswith("text/html"), name
        policy = directives(response["Content-Security-Policy"])
        assert {key: policy.get(key) for key in REQUIRED} == REQUIRED, name
        assert "unsafe-inline" not in policy["script-src"]
        assert "unsafe-eval" not in response["Content-Security-Policy"]
        found = audit(response.content.decode())
        assert (found.inline_scripts, found.handlers) == (0, []), name
        assert all(src.startswith("/static/") or src.startswith("/api/docs/?")
                   for src in found.sources), (name, found.sources)  # fmt: skip


def test_charts_travel_as_data_for_the_static_script(client, bob, portal):
    client.force_login(bob)
    page = client.get("/dashboards/").content.decode()
    drawn = page.count('class="plotly-graph-div" data-figure="')
    assert drawn >= 1 and drawn + page.count("No data in this range.") == 8
    assert "/static/mlops_portal/charts.js" in page
    assert "Plotly.newPlot" not in page


def test_the_login_page_and_a_refusal_carry_it_too(client, carol):
    for response in (client.get("/login/"), client.post("/login/", {"username": "x"})):
        assert directives(response["Content-Security-Policy"])["script-src"] == "'self'"
        assert audit(response.content.decode()).inline_scripts == 0
    client.force_login(carol)
    refused = client.get("/targets/new/")
    assert refused.status_code == 403
    assert directives(refused["Content-Security-Policy"])["frame-ancestors"] == "'none'"


def test_swagger_ui_loads_its_start_up_script_from_a_url(client, bob):
    client.force_login(bob)
    page = client.get("/api/docs/").content.decode()
    (init,) = [src for src in audit(page).sources if src.startswith("/api/docs/?")]
    script = client.get(init.replace("&amp;", "&"))
    assert script.status_code == 200
    assert script["Content-Type"].startswith("application/javascript")
    assert "SwaggerUIBundle" in script.content.decode()


def test_attachments_keep_their_stricter_policy(client, alice):
    page = docs.create_page(alice, title="With picture", body="x")
    png = (
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00"
        b"\x00\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\x0f\x00\x00\x01\x01\x00\x05\x18\xd8N"
        b"\x00\x00\x00\x00IEND\xaeB`\x82"
    )
    attachment = docs.attach_image(alice, page, SimpleUploadedFile("dot.png", png))
    client.force_login(alice)
    response = client.get(f"/docs/attachments/{attachment.pk}/{attachment.name}")
    assert response["Content-Security-Policy"] == "default-src 'none'"
