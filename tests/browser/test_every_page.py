"""Every page in the navigation, and the main detail pages, as each role (viewer, data
scientist, engineer) at 1440 px and at 390 px (a phone). On every page: nothing overflows the
viewport sideways, the console shows no error, no request leaves the portal's host, and
axe-core finds no violation of serious or critical impact. One screenshot per page and width
lands in test-artifacts/pages/.

One browser, one context per role (logged in once), one tab walking both widths; problems
are collected across the walk and reported together, so one run lists every page to fix."""

import time
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.utils import timezone

from deployments.models import Deployment, RegisteredModel
from docs_app import services as docs
from mlops_portal.core import tokens
from mlops_portal.core.roles import Role
from monitoring.models import ProbeResult
from monitoring.services import alerts, checks, incidents, rollups
from tests.conftest import ARTIFACTS_DIR, ROOT

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

AXE_JS = ROOT / "vendor-static" / "axe-core" / "axe.min.js"
WIDTHS = (1440, 390)
DRAWN = 20_000  # plotly.js and Mermaid are megabytes to parse on a busy 2-core machine
ROLES = {  # demo users (load_demo_data) and what each may open
    "viewer": ("carol", "carol-demo-2026"),
    "data-scientist": ("alice", "alice-demo-2026"),
    "engineer": ("bob", "bob-demo-2026"),
}

# Swagger UI (drf-spectacular-sidecar) nests its "copy operation id" button inside the
# operation's summary button: its own markup, which we serve unchanged.
NOT_OURS = {"api-docs": ["nested-interactive"]}

RUN_AXE = """async (skipped) => {
  const result = await axe.run(document, {resultTypes: ["violations"]});
  return result.violations
    .filter((v) => v.impact === "serious" || v.impact === "critical")
    .filter((v) => !skipped.includes(v.id))
    .map((v) => `${v.impact} ${v.id}: ${v.help} — ` +
                v.nodes.slice(0, 3).map((n) => n.target.join(" ")).join(" | "));
}"""

# Charts and diagrams are drawn after load; measure and audit what the user finally sees.
DRAWN_JS = """() =>
  [...document.querySelectorAll(".plotly-graph-div")].every((d) => d.querySelector("svg")) &&
  [...document.querySelectorAll("pre.mermaid")].every((d) => d.querySelector("svg")) &&
  (!document.getElementById("swagger-ui") || document.querySelector("#swagger-ui .opblock"))"""

OVERFLOW_JS = """() => {
  const width = window.innerWidth;
  if (document.documentElement.scrollWidth <= width) return null;
  const wide = [...document.querySelectorAll("body *")]
    .filter((e) => e.getBoundingClientRect().right > width + 1)
    .filter((e) => !e.parentElement || e.parentElement.getBoundingClientRect().right <= width + 1)
    .slice(0, 3)
    .map((e) => e.tagName.toLowerCase() + (e.id ? "#" + e.id : "") +
                (typeof e.className === "string" && e.className
                  ? "." + e.className.split(" ").join(".") : ""));
  return `${document.documentElement.scrollWidth} px wide: ${wide.join(", ")}`;
}"""


@pytest.fixture
def world(db):
    """The demo data of `make run`, plus what it lacks: a down check with results, an open
    incident, a doc page with a diagram and a missing link, an API token per user."""
    for role in Role:  # a transactional test before this one flushed the migrations' groups
        Group.objects.get_or_create(name=role)
    call_command("load_demo_data", stdout=open("/dev/null", "w"))
    bob = RegisteredModel.objects.get(name="iris-classifier").owner.__class__.objects.get(
        username="bob"
    )
    check = checks.create_check(bob, name="iris-production /health", url="http://127.0.0.1:9/h")
    now = timezone.now()
    ProbeResult.objects.bulk_create(
        ProbeResult(health_check=check, at=now - timedelta(seconds=60 * i), ok=i % 9 != 0,
                    status_code=200 if i % 9 else 503, latency_ms=20.0 + i % 7)
        for i in range(180)
    )  # fmt: skip
    rollups.roll_up_minutes(now - timedelta(hours=4), now)
    rollups.roll_up_hours(now - timedelta(hours=4), now)
    iris = RegisteredModel.objects.get(name="iris-classifier")
    alerts.create_rule(bob, name="iris inputs drift", model=iris, metric="drift_max",
                       threshold=0.25, for_minutes=60)  # fmt: skip
    muted = alerts.create_rule(bob, name="iris errors", model=iris, metric="error_rate",
                               threshold=5)  # fmt: skip
    alerts.set_muted(bob, muted, True, "retraining this week")
    incident = incidents.open_incident(
        bob,
        title="iris-production answers 503",
        severity="sev2",
        target=Deployment.objects.order_by("-pk").first().target,
    )
    page = docs.create_page(
        bob, title="Iris runbook",
        body="## Serving\n\n```mermaid\ngraph LR\n  Client --> Model\n```\n\n"
             "| step | who |\n|---|---|\n| deploy | bob |\n\nSee [[no-such-page]].\n",
    )  # fmt: skip
    for user in bob.__class__.objects.filter(username__in=["alice", "bob", "carol"]):
        tokens.create_token(user, f"{user.username}-laptop")
    deployment = Deployment.objects.order_by("-pk").first()
    return {
        "today": "/",
        "models": "/models/",
        "model": "/models/iris-classifier/",
        "version": "/models/iris-classifier/versions/3/",
        "compare": "/models/iris-classifier/compare/?a=1&b=3",
        "model-card": "/models/iris-classifier/card/",
        "deployments": "/deployments/",
        "deployment": f"/deployments/{deployment.pk}/",
        "targets": "/targets/",
        "target": "/targets/iris-production/",
        "checks": "/checks/",
        "check": f"/checks/{check.pk}/?range=24h",
        "incidents": "/incidents/",
        "incident": f"/incidents/{incident.pk}/",
        "alert-rules": "/alert-rules/",
        "docs": "/docs/",
        "doc-page": f"/docs/{page.slug}/",
        "doc-history": f"/docs/{page.slug}/history/",
        "dashboards": "/dashboards/",
        "changes": "/changes/",
        "search": "/search/?q=iris",
        "notifications": "/notifications/",
        "channels": "/notifications/channels/",
        "tokens": "/tokens/",
        "api-docs": "/api/docs/",
    }


WRITER_PAGES = {  # forms a viewer is refused (the role tests cover that)
    "register-version": "/models/iris-classifier/versions/new/",
    "request-deployment": "/deployments/new/?model=iris-classifier&version=3",
    "doc-edit": "/docs/iris-runbook/edit/",
    "new-incident": "/incidents/new/",
}
ENGINEER_PAGES = {"new-alert-rule": "/alert-rules/new/"}  # data scientists get 403 too


def walk(browser, base_url, role, pages) -> tuple[list[str], int]:
    """Open every page at both widths as `role`; return the problems found and the count
    of page views."""
    username, password = ROLES[role]
    context = browser.new_context(viewport={"width": WIDTHS[0], "height": 900})
    context.add_init_script(path=str(AXE_JS))  # init scripts are not subject to the CSP
    page = context.new_page()
    host = urlsplit(base_url).netloc
    problems, console, foreign = [], [], []
    page.on("console", lambda m: m.type == "error" and console.append(m.text))
    page.on("pageerror", lambda error: console.append(str(error)))

    def outside(request):
        url = urlsplit(request.url)
        if url.scheme in ("http", "https", "ws", "wss") and url.netloc != host:
            foreign.append(request.url)

    page.on("request", outside)
    page.goto(f"{base_url}/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base_url}/")

    folder = ARTIFACTS_DIR / "pages"
    folder.mkdir(parents=True, exist_ok=True)
    views = 0
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900 if width > 600 else 844})
        for name, path in pages.items():
            console.clear(), foreign.clear()
            where = f"{role} {name} @{width}px"
            response = page.goto(base_url + path, wait_until="load")
            views += 1
            if response is None or response.status != 200:
                problems.append(f"{where}: answered {response and response.status}")
                continue
            page.wait_for_function(DRAWN_JS, timeout=DRAWN)
            if overflow := page.evaluate(OVERFLOW_JS):
                problems.append(f"{where}: overflows, {overflow}")
            problems += [
                f"{where}: axe {v}" for v in page.evaluate(RUN_AXE, NOT_OURS.get(name, []))
            ]
            page.screenshot(path=str(folder / f"{role}-{name}-{width}.png"), full_page=True)
            problems += [f"{where}: console error {text}" for text in console]
            problems += [f"{where}: request to another host {url}" for url in foreign]
    context.close()
    return problems, views


def test_every_page_as_every_role_at_desktop_and_phone_width(browser, live_server, world):
    assert Path(AXE_JS).exists(), (
        "axe-core is missing: run `make vendor-static/axe-core/axe.min.js`"
    )
    started, problems, views = time.monotonic(), [], 0
    for role in ROLES:
        pages = world if role == "viewer" else {**world, **WRITER_PAGES}
        if role == "engineer":
            pages.update(ENGINEER_PAGES)
        found, count = walk(browser, live_server.url, role, pages)
        problems += found
        views += count
    elapsed = time.monotonic() - started
    print(f"\n{views} page views in {elapsed:.0f} s ({elapsed / views:.2f} s each)")
    if problems:
        pytest.fail(f"{len(problems)} problems:\n" + "\n".join(problems), pytrace=False)
