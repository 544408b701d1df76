"""Who may do what, tested once over everything: every API write and every page form, as
every persona, against one expected-outcome table (NetBox's generic permission tests).

A cell is `OK` (allowed: the row's effect is seen), or the refusal the persona gets: `401`
(API, anonymous), `403`, `LOGIN` (a page redirects to the login form) or `MSG` (the page
redirects back to the object with the refusal as an error message). A refused request
writes nothing anywhere: the whole database is compared before and after.

Two checks keep the table complete: every API route with a write method and every page
URL must have a row (or be listed as a page that accepts no form), so a new endpoint
without a row fails here."""

from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from django.apps import apps
from django.contrib.messages import get_messages
from django.db import transaction
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone
from rest_framework.test import APIClient

from deployments import services as deployments
from deployments.choices import DeploymentState, VersionStatus
from deployments.models import Deployment, ModelAlias, ModelVersion, RegisteredModel, Target
from docs_app import services as docs
from docs_app.models import Page
from mlops_portal.core import tokens as accounts
from mlops_portal.core.roles import Role
from mlops_portal.models import ApiToken, NotificationChannel
from monitoring.models import AlertRule, HealthCheck, Incident, LoggedPrediction
from tests.factories import UserFactory

OK, LOGIN, MSG = "ok", "login", "msg"
PERSONAS = ("anonymous", "viewer", "ds_owner", "ds_other", "engineer", "superuser", "no_role")


def cells(anonymous, viewer, ds_owner, ds_other, engineer, superuser, no_role) -> dict:
    return dict(zip(PERSONAS, (anonymous, viewer, ds_owner, ds_other, engineer, superuser,
                               no_role), strict=True))  # fmt: skip


# The outcomes of the usual rules, for API rows (anonymous 401) and page rows (login).
def api(authors=None, operators=None, owner=None, everyone=None) -> dict:
    if everyone:
        return cells(401, OK, OK, OK, OK, OK, OK)
    if owner:
        return cells(401, 403, OK, 403, OK, OK, 403)
    if operators:
        return cells(401, 403, 403, 403, OK, OK, 403)
    return cells(401, 403, OK, OK, OK, OK, 403)  # authors


def page(rule, refused=403) -> dict:
    """`rule` is "authors", "owner", "operators" or "everyone"; `refused` how a page says no
    to someone whose role may do it, but not to this object (a message). A role that may
    never do it always gets 403: a viewer, a user without a role, a data scientist at an
    engineers' action."""
    table = api(**{rule: True})
    by_role = {"viewer", "no_role"} | ({"ds_owner", "ds_other"} if rule == "operators" else set())
    return {p: LOGIN if o == 401 else ((403 if p in by_role else refused) if o == 403 else o)
            for p, o in table.items()}  # fmt: skip


@dataclass
class Row:
    """One write: `url(world, user)`, the body, and `effect(world)`, a value that changes
    when the write happens."""

    name: str  # the URL name it covers
    method: str
    url: object
    body: dict | None
    effect: object
    expected: dict
    fmt: str = "json"
    extra: dict = field(default_factory=dict)


# --- the world every cell starts from -----------------------------------------------------


@pytest.fixture(scope="module")
def built_world(django_db_setup, django_db_blocker):
    """The world, built once for the module inside a transaction that is rolled back at
    its end; each test runs in a savepoint of it (pytest-django's `db`), as Django's
    `TestCase.setUpTestData` does. About 470 cells would otherwise build it 470 times."""
    with django_db_blocker.unblock():
        outer = transaction.atomic()
        outer.__enter__()
        made = build_world()
    yield made
    with django_db_blocker.unblock():
        transaction.set_rollback(True)
        outer.__exit__(None, None, None)


@pytest.fixture
def world(built_world, db):
    return built_world


def build_world():
    """Alice owns model churn (v1, v2 ready); v2 is live on staging after v1; Alice asked
    for v2 on production; a check, an open incident, a two-revision page, a channel."""
    users = {
        "viewer": UserFactory(username="carol", role=Role.VIEWER),
        "ds_owner": UserFactory(username="alice", role=Role.DATA_SCIENTIST),
        "ds_other": UserFactory(username="dave", role=Role.DATA_SCIENTIST),
        "engineer": UserFactory(username="bob", role=Role.MLOPS_ENGINEER),
        "superuser": UserFactory(username="root", role=None, is_superuser=True),
        "no_role": UserFactory(username="nora", role=None),
    }
    alice, bob = users["ds_owner"], users["engineer"]
    model = deployments.create_model(alice, name="churn")
    v1, v2 = (
        ModelVersion.objects.create(
            model=model, number=number, status=VersionStatus.READY, registered_by=alice,
            artifact_uri=f"http://127.0.0.1:9/v{number}.joblib", sample_input=[[1.0]],
        )
        for number in (1, 2)
    )  # fmt: skip
    RegisteredModel.objects.filter(pk=model.pk).update(latest_version_number=2)
    ModelAlias.objects.create(model=model, alias="old", version=v1, updated_by=alice)
    staging = deployments.create_target(bob, name="staging", environment="staging")
    production = deployments.create_target(bob, name="production", environment="production")
    hooked = deployments.create_target(
        bob, name="hooked", environment="staging", backend="webhook",
        backend_settings={"url": "http://127.0.0.1:9/hook", "secret": "s" * 32},
    )  # fmt: skip
    now = timezone.now()

    def deployment(version, target, state, finished_at=None):
        return Deployment.objects.create(
            version=version, target=target, state=state, reason="r", requested_by=alice,
            finished_at=finished_at,
        )  # fmt: skip

    deployment(v1, staging, DeploymentState.SUPERSEDED, now - timedelta(days=1))
    live = deployment(v2, staging, DeploymentState.SUCCEEDED, now)
    pending = deployment(v2, production, DeploymentState.REQUESTED)
    running_hook = deployment(v2, hooked, DeploymentState.RUNNING)
    canary = Deployment.objects.create(
        version=v1, target=staging, state=DeploymentState.RUNNING, reason="r",
        requested_by=alice, strategy="canary", canary_steps=[10, 50], canary_step_seconds=60,
        canary_weight=10,
    )  # fmt: skip
    check = HealthCheck.objects.create(
        name="churn", url="http://127.0.0.1:9/", created_by=bob, expected_statuses=[200],
        state="up",
    )  # fmt: skip
    incident = Incident.objects.create(
        title="churn answers 500s", source="manual", opened_at=now, target=staging
    )
    rule = AlertRule.objects.create(name="churn errors", model=model, metric="error_rate",
                                    threshold=5, created_by=bob, muted=True,
                                    mute_reason="maintenance")  # fmt: skip
    LoggedPrediction.objects.create(deployment=live, version=v2, prediction_id="p1",
                                    logged_at=now, features=[1.0], prediction=0)  # fmt: skip
    page_ = docs.create_page(alice, title="Runbook", slug="runbook", body="one")
    docs.save_page(alice, page_, base_revision=1, title="Runbook", body="two")
    channel = NotificationChannel.objects.create(
        name="ops", kind="chat", url="http://127.0.0.1:9/chat", events=["incident.opened"],
        created_by=bob,
    )  # fmt: skip
    tokens = {name: accounts.create_token(user, "mine")[0] for name, user in users.items()}
    return {
        "users": users, "model": model, "v1": v1, "staging": staging, "live": live,
        "pending": pending, "hook": running_hook, "check": check, "incident": incident,
        "canary": canary,
        "page": page_, "channel": channel, "tokens": tokens, "rule": rule,
    }  # fmt: skip


def fresh(obj):
    return type(obj).objects.get(pk=obj.pk)


def count(model, **filters):
    return lambda w: model.objects.filter(**filters).count()


def state_of(key):
    return lambda w: fresh(w[key]).state


def canary_step_of(key):
    """A canary's step moves to DECIDING when someone takes the decision by hand."""
    return lambda w: fresh(w[key]).canary_step


def events_of(key, kind):
    return lambda w: fresh(w[key]).events.filter(kind=kind).count()


def w_pk(key):
    return ("pk", key)  # resolved against the world when the request is made


def own_token(w, user):
    token = w["tokens"].get(_persona_of(w, user)) or w["tokens"]["viewer"]
    return token.pk


def _persona_of(w, user):
    return next((name for name, u in w["users"].items() if u == user), None)


D, INC, C = "/api/v1/deployments/", "/api/v1/incidents/", "/api/v1/checks/"
RULES = "/api/v1/alert-rules/"
VERSION = {"artifact_uri": "http://127.0.0.1:9/v3.joblib", "sample_input": [[1.0]]}
PAGE = {"title": "Runbook", "body": "three", "base_revision": 2}
TARGET_FORM = {"environment": "staging", "backend_settings": "{}", "queue_policy": "queue",
               "verification_window_seconds": 60, "description": "edited"}  # fmt: skip
CHECK_FORM = {"name": "churn 2", "url": "http://127.0.0.1:9/", "method": "GET",
              "interval_seconds": 30, "timeout_seconds": 5, "expected_statuses": "[200]",
              "failures_before_down": 3}  # fmt: skip
RULE_FORM = {"name": "churn drift", "model": ("pk", "model"), "metric": "drift_max",
             "comparison": ">", "threshold": 0.25, "for_minutes": 60, "severity": "sev3",
             "enabled": "on"}  # fmt: skip
CHANNEL_FORM = {"name": "ops-2", "kind": "chat", "url": "http://127.0.0.1:9/c",
                "events": ["incident.opened"], "enabled": "on"}  # fmt: skip

API_ROWS = [
    Row("api:token-list", "post", lambda w, u: "/api/v1/tokens/", {"name": "ci"},
        count(ApiToken), api(everyone=True)),
    Row("api:token-detail", "delete", lambda w, u: f"/api/v1/tokens/{own_token(w, u)}/", None,
        count(ApiToken, revoked_at__isnull=False), api(everyone=True)),
    Row("api:model-list", "post", lambda w, u: "/api/v1/models/", {"name": "fraud"},
        count(RegisteredModel), api(authors=True)),
    Row("api:model-detail", "patch", lambda w, u: "/api/v1/models/churn/",
        {"description": "edited"}, lambda w: fresh(w["model"]).description, api(owner=True)),
    Row("api:model-version-list", "post", lambda w, u: "/api/v1/models/churn/versions/",
        VERSION, count(ModelVersion), api(owner=True)),
    Row("api:model-version-detail", "patch", lambda w, u: "/api/v1/models/churn/versions/1/",
        {"description": "edited"}, lambda w: fresh(w["v1"]).description, api(owner=True)),
    Row("api:model-aliases", "post", lambda w, u: "/api/v1/models/churn/aliases/",
        {"alias": "champion", "version": 2}, count(ModelAlias), api(owner=True)),
    Row("api:model-remove-alias", "delete", lambda w, u: "/api/v1/models/churn/aliases/old/",
        None, count(ModelAlias), api(owner=True)),
    Row("api:target-list", "post", lambda w, u: "/api/v1/targets/",
        {"name": "canary", "environment": "staging"}, count(Target), api(operators=True)),
    Row("api:target-detail", "patch", lambda w, u: "/api/v1/targets/staging/",
        {"description": "edited"}, lambda w: fresh(w["staging"]).description,
        api(operators=True)),
    Row("api:deployment-list", "post", lambda w, u: D,
        {"model": "churn", "version": 1, "target": "production", "reason": "try"},
        count(Deployment), api(authors=True)),
    Row("api:deployment-approve", "post", lambda w, u: f"{D}{w['pending'].pk}/approve/",
        {"comment": "ok"}, state_of("pending"), api(operators=True)),
    Row("api:deployment-reject", "post", lambda w, u: f"{D}{w['pending'].pk}/reject/",
        {"comment": "no"}, state_of("pending"), api(operators=True)),
    Row("api:deployment-cancel", "post", lambda w, u: f"{D}{w['pending'].pk}/cancel/",
        {"reason": "later"}, state_of("pending"), api(owner=True)),
    Row("api:deployment-rollback", "post", lambda w, u: f"{D}{w['live'].pk}/rollback/",
        {"reason": "bad"}, count(Deployment), api(operators=True)),
    Row("api:deployment-comments", "post", lambda w, u: f"{D}{w['pending'].pk}/comments/",
        {"body": "looks good"}, events_of("pending", "comment"), api(authors=True)),
    Row("api:deployment-promote", "post", lambda w, u: f"{D}{w['canary'].pk}/promote/",
        {"comment": "ok"}, canary_step_of("canary"), api(operators=True)),
    Row("api:deployment-abort", "post", lambda w, u: f"{D}{w['canary'].pk}/abort/",
        {"reason": "slow"}, canary_step_of("canary"), api(operators=True)),
    # The CD system's callback: the signature is the credential, whoever calls.
    Row("api:deployment-callback", "post", lambda w, u: f"{D}{w['hook'].pk}/callback/",
        {"status": "succeeded"}, state_of("hook"), cells(*[401] * 7)),
    Row("api:deployment-feedback", "post", lambda w, u: f"{D}{w['live'].pk}/feedback/",
        {"labels": [{"prediction_id": "p1", "label": 1}]},
        count(LoggedPrediction, label__isnull=False), api(authors=True)),
    Row("api:check-list", "post", lambda w, u: C,
        {"name": "churn 2", "url": "http://127.0.0.1:9/"}, count(HealthCheck),
        api(operators=True)),
    Row("api:check-detail", "patch", lambda w, u: f"{C}{w['check'].pk}/", {"name": "renamed"},
        lambda w: fresh(w["check"]).name, api(operators=True)),
    Row("api:check-detail", "delete", lambda w, u: f"{C}{w['check'].pk}/", None,
        count(HealthCheck), api(operators=True)),
    Row("api:check-pause", "post", lambda w, u: f"{C}{w['check'].pk}/pause/", None,
        state_of("check"), api(operators=True)),
    Row("api:check-resume", "post", lambda w, u: f"{C}{w['check'].pk}/resume/", None,
        state_of("check"), api(operators=True)),
    Row("api:check-snooze", "post", lambda w, u: f"{C}{w['check'].pk}/snooze/",
        {"hours": 1, "reason": "maintenance"}, lambda w: fresh(w["check"]).snooze_reason,
        api(operators=True)),
    Row("api:incident-list", "post", lambda w, u: INC, {"title": "slow"}, count(Incident),
        api(authors=True)),
    Row("api:alert-rule-list", "post", lambda w, u: RULES,
        {"name": "slow", "model": "churn", "metric": "latency_p95", "threshold": 300},
        count(AlertRule), api(operators=True)),
    Row("api:alert-rule-detail", "patch", lambda w, u: f"{RULES}{w['rule'].pk}/",
        {"threshold": 9}, lambda w: fresh(w["rule"]).threshold, api(operators=True)),
    Row("api:alert-rule-detail", "delete", lambda w, u: f"{RULES}{w['rule'].pk}/", None,
        count(AlertRule), api(operators=True)),
    Row("api:alert-rule-mute", "post", lambda w, u: f"{RULES}{w['rule'].pk}/mute/",
        {"reason": "load test"}, lambda w: fresh(w["rule"]).mute_reason, api(operators=True)),
    Row("api:alert-rule-unmute", "post", lambda w, u: f"{RULES}{w['rule'].pk}/unmute/", None,
        lambda w: fresh(w["rule"]).muted, api(operators=True)),
    Row("api:incident-acknowledge", "post", lambda w, u: f"{INC}{w['incident'].pk}/acknowledge/",
        {"note": ""}, state_of("incident"), api(operators=True)),
    Row("api:incident-mitigate", "post", lambda w, u: f"{INC}{w['incident'].pk}/mitigate/",
        {"note": ""}, state_of("incident"), api(operators=True)),
    Row("api:incident-resolve", "post", lambda w, u: f"{INC}{w['incident'].pk}/resolve/",
        {"note": ""}, state_of("incident"), api(operators=True)),
    Row("api:incident-severity", "post", lambda w, u: f"{INC}{w['incident'].pk}/severity/",
        {"severity": "sev1"}, lambda w: fresh(w["incident"]).severity, api(operators=True)),
    Row("api:incident-notes", "post", lambda w, u: f"{INC}{w['incident'].pk}/notes/",
        {"note": "looking"}, events_of("incident", "note"), api(authors=True)),
    Row("api:page-list", "post", lambda w, u: "/api/v1/pages/", {"title": "On-call"},
        count(Page), api(authors=True)),
    Row("api:page-detail", "patch", lambda w, u: "/api/v1/pages/runbook/", PAGE,
        lambda w: fresh(w["page"]).revision_number, api(authors=True)),
    Row("api:page-detail", "delete", lambda w, u: "/api/v1/pages/runbook/", None,
        count(Page), api(authors=True)),
    # Rendering a preview writes nothing: every logged-in user may, and nothing changes.
    Row("api:page-preview", "post", lambda w, u: "/api/v1/pages/preview/", {"body": "# Hi"},
        None, api(everyone=True)),
]  # fmt: skip

E = "/deployments/"
PAGE_FORM = {"title": "Runbook", "body": "three", "base_revision": 2}
PAGE_ROWS = [
    Row("token-list", "post", lambda w, u: "/tokens/", {"name": "ci"}, count(ApiToken),
        page("everyone")),
    Row("token-revoke", "post", lambda w, u: f"/tokens/{own_token(w, u)}/revoke/", {},
        count(ApiToken, revoked_at__isnull=False), {**page("everyone")}),
    Row("notification-list", "post", lambda w, u: "/notifications/",
        {"events": ["incident.opened"]},
        lambda w: sorted(str(p.email_events) for p in apps.get_model(
            "mlops_portal", "Profile").objects.all()), page("everyone")),
    Row("channel-list", "post", lambda w, u: "/notifications/channels/", CHANNEL_FORM,
        count(NotificationChannel), page("operators")),
    Row("channel-edit", "post", lambda w, u: f"/notifications/channels/{w['channel'].pk}/",
        {**CHANNEL_FORM, "name": "ops-renamed"}, lambda w: fresh(w["channel"]).name,
        page("operators")),
    # Following is one's own subscription; every role may, a user without a role may not.
    Row("follow", "post", lambda w, u: "/follow/targets/staging/", {},
        lambda w: w["staging"].followers.count(),
        {**page("everyone"), "no_role": MSG}),
    Row("model-create", "post", lambda w, u: "/models/new/", {"name": "fraud"},
        count(RegisteredModel), page("authors")),
    Row("model-edit", "post", lambda w, u: "/models/churn/edit/", {"description": "edited"},
        lambda w: fresh(w["model"]).description, page("owner")),
    Row("model-alias", "post", lambda w, u: "/models/churn/aliases/",
        {"alias": "champion", "version": "2"}, count(ModelAlias), page("owner")),
    Row("version-create", "post", lambda w, u: "/models/churn/versions/new/",
        {"artifact_uri": "http://127.0.0.1:9/v3.joblib", "flavor": "sklearn",
         "sample_input": "[[1.0]]"}, count(ModelVersion), page("owner")),
    Row("version-edit", "post", lambda w, u: "/models/churn/versions/1/edit/",
        {"description": "edited"}, lambda w: fresh(w["v1"]).description, page("owner")),
    Row("version-archive", "post", lambda w, u: "/models/churn/versions/1/archive/",
        {"archived": "1"}, lambda w: fresh(w["v1"]).archived, page("owner")),
    Row("target-create", "post", lambda w, u: "/targets/new/",
        {**TARGET_FORM, "name": "canary", "backend": "local"},
        count(Target), page("operators")),
    Row("target-edit", "post", lambda w, u: "/targets/staging/edit/", TARGET_FORM,
        lambda w: fresh(w["staging"]).description, page("operators")),
    Row("deployment-request", "post", lambda w, u: "/deployments/new/",
        {"version": w_pk("v1"), "target": w_pk("staging"), "reason": "try"},
        count(Deployment), page("authors")),
    Row("deployment-action", "post", lambda w, u: f"{E}{w['pending'].pk}/approve/", {},
        state_of("pending"), page("operators", MSG), extra={"verb": "approve"}),
    Row("deployment-action", "post", lambda w, u: f"{E}{w['pending'].pk}/reject/",
        {"comment": "no"}, state_of("pending"), page("operators", MSG),
        extra={"verb": "reject"}),
    Row("deployment-action", "post", lambda w, u: f"{E}{w['pending'].pk}/cancel/", {},
        state_of("pending"), page("owner", MSG), extra={"verb": "cancel"}),
    Row("deployment-action", "post", lambda w, u: f"{E}{w['live'].pk}/rollback/",
        {"reason": "bad"}, count(Deployment), page("operators", MSG),
        extra={"verb": "rollback"}),
    Row("deployment-action", "post", lambda w, u: f"{E}{w['canary'].pk}/promote/", {},
        canary_step_of("canary"), page("operators"), extra={"verb": "promote"}),
    Row("deployment-action", "post", lambda w, u: f"{E}{w['canary'].pk}/abort/",
        {"reason": "slow"}, canary_step_of("canary"), page("operators"),
        extra={"verb": "abort"}),
    Row("deployment-action", "post", lambda w, u: f"{E}{w['pending'].pk}/comment/",
        {"body": "hi"}, events_of("pending", "comment"), page("authors", MSG),
        extra={"verb": "comment"}),
    Row("check-create", "post", lambda w, u: "/checks/new/", CHECK_FORM, count(HealthCheck),
        page("operators")),
    Row("check-edit", "post", lambda w, u: f"/checks/{w['check'].pk}/edit/", CHECK_FORM,
        lambda w: fresh(w["check"]).name, page("operators")),
    Row("check-action", "post", lambda w, u: f"/checks/{w['check'].pk}/pause/", {},
        state_of("check"), page("operators", MSG), extra={"verb": "pause"}),
    Row("check-action", "post", lambda w, u: f"/checks/{w['check'].pk}/resume/", {},
        state_of("check"), page("operators", MSG), extra={"verb": "resume"}),
    Row("check-action", "post", lambda w, u: f"/checks/{w['check'].pk}/snooze/",
        {"hours": 1, "reason": "maintenance"}, lambda w: fresh(w["check"]).snooze_reason,
        page("operators", MSG), extra={"verb": "snooze"}),
    Row("rule-create", "post", lambda w, u: "/alert-rules/new/", RULE_FORM, count(AlertRule),
        page("operators")),
    Row("rule-edit", "post", lambda w, u: f"/alert-rules/{w['rule'].pk}/edit/", RULE_FORM,
        lambda w: fresh(w["rule"]).name, page("operators")),
    Row("rule-action", "post", lambda w, u: f"/alert-rules/{w['rule'].pk}/mute/",
        {"reason": "load test"}, lambda w: fresh(w["rule"]).mute_reason, page("operators"),
        extra={"verb": "mute"}),
    Row("rule-action", "post", lambda w, u: f"/alert-rules/{w['rule'].pk}/unmute/", {},
        lambda w: fresh(w["rule"]).muted, page("operators"), extra={"verb": "unmute"}),
    Row("rule-action", "post", lambda w, u: f"/alert-rules/{w['rule'].pk}/delete/", {},
        count(AlertRule), page("operators"), extra={"verb": "delete"}),
    Row("incident-create", "post", lambda w, u: "/incidents/new/",
        {"title": "slow", "severity": "sev3"}, count(Incident), page("authors")),
    *[
        Row("incident-action", "post", lambda w, u, v=verb: f"/incidents/{w['incident'].pk}/{v}/",
            {"note": "n", "severity": "sev1"}, effect, page(rule, MSG), extra={"verb": verb})
        for verb, effect, rule in [
            ("acknowledge", state_of("incident"), "operators"),
            ("mitigate", state_of("incident"), "operators"),
            ("resolve", state_of("incident"), "operators"),
            ("severity", lambda w: fresh(w["incident"]).severity, "operators"),
            ("note", events_of("incident", "note"), "authors"),
        ]
    ],
    Row("page-create", "post", lambda w, u: "/docs/new/", {"title": "On-call", "body": "x"},
        count(Page), page("authors")),
    Row("page-edit", "post", lambda w, u: "/docs/runbook/edit/", PAGE_FORM,
        lambda w: fresh(w["page"]).revision_number, page("authors")),
    Row("page-restore", "post", lambda w, u: "/docs/runbook/restore/1/", {},
        lambda w: fresh(w["page"]).revision_number, page("authors", MSG)),
    Row("page-attach", "post", lambda w, u: "/docs/runbook/attach/", "image",
        lambda w: fresh(w["page"]).attachments.count(), page("authors"), fmt="multipart"),
    Row("postmortem-create", "post", lambda w, u: f"/docs/postmortem/{w['incident'].pk}/", {},
        count(Page), page("authors", MSG)),
    # The live preview renders the text it is sent; it writes nothing.
    Row("page-preview", "post", lambda w, u: "/docs/preview/", {"body": "# Hi"}, None,
        page("everyone")),
]  # fmt: skip


# Pages that accept no form: a POST to them (as a superuser) must change nothing.
READ_ONLY_PAGES = {
    "today": "/", "healthz": "/healthz", "search": "/search/?q=churn",
    "readyz": "/readyz", "metrics": "/metrics", "ops-banner": "/ops/banner/",
    "changes": "/changes/", "dashboard": "/dashboards/", "model-list": "/models/",
    "model-detail": "/models/churn/", "version-compare": "/models/churn/compare/",
    "version-detail": "/models/churn/versions/1/", "target-list": "/targets/",
    "target-detail": "/targets/staging/", "deployment-list": "/deployments/",
    "deployment-detail": "/deployments/{pending}/", "check-list": "/checks/",
    "check-detail": "/checks/{check}/", "incident-list": "/incidents/",
    "rule-list": "/alert-rules/",
    "incident-detail": "/incidents/{incident}/", "model-card": "/models/churn/card/",
    "page-list": "/docs/", "page-detail": "/docs/runbook/",
    "page-history": "/docs/runbook/history/", "page-diff": "/docs/runbook/diff/?a=1&b=2",
    "page-print": "/docs/runbook/print/", "attachment": "/docs/attachments/1/x.png",
    "api-schema": "/api/schema/", "api-docs": "/api/docs/", "favicon": "/favicon.ico",
    # Trying /predict writes nothing (the page test checks a viewer gets 403).
    "deployment-try": "/deployments/{live}/try/",
}  # fmt: skip
# Not the portal's forms: Django's own login, logout and admin.
# Heartbeat pings need no login: the uuid in the URL is the secret (README).
# A signed artifact link needs no login: its signed, expiring token is the credential
# (tests/storage/test_signed_urls.py).
OUTSIDE = {"login", "logout", "ping", "ping-start", "ping-fail", "ping-exit", "artifact-signed"}


# --- the matrix ------------------------------------------------------------------------------


def snapshot() -> dict:
    """Every row of the portal's tables (and the change records), minus columns that a read
    may touch (a token's last use)."""
    volatile = {"last_used_at", "last_today_visit_at"}
    tables = {}
    for label in ("deployments", "monitoring", "docs_app", "mlops_portal", "auditlog"):
        for model in apps.get_app_config(label).get_models(include_auto_created=True):
            names = [f.attname for f in model._meta.concrete_fields if f.attname not in volatile]
            tables[model._meta.label] = list(model.objects.order_by("pk").values_list(*names))
    return tables


def client_for(persona, world, api_client: bool):
    user = world["users"].get(persona)
    if api_client:
        client = APIClient()
        if user is not None:
            _, secret = accounts.create_token(user, "matrix")
            client.credentials(HTTP_AUTHORIZATION=f"Token {secret}")
        return client, user
    client = Client()
    if user is not None:
        client.force_login(user)
    return client, user


def send(client, row, world, user):
    url = row.url(world, user)
    body = row.body
    if isinstance(body, dict):
        body = {k: (world[v[1]].pk if isinstance(v, tuple) else v) for k, v in body.items()}
    if body == "image":
        from django.core.files.uploadedfile import SimpleUploadedFile

        gif = b"GIF89a\x01\x00\x01\x00\x00\x00\x00;"
        body = {"file": SimpleUploadedFile("dot.gif", gif, content_type="image/gif")}
    if isinstance(client, APIClient):
        return getattr(client, row.method)(url, body, format=row.fmt)
    return client.post(url, body or {})


def row_id(row):
    return f"{row.method.upper()} {row.name} {row.extra.get('verb', '')}".strip()


MATRIX = [
    pytest.param(row, persona, api_row, id=f"{row_id(row)} as {persona}")
    for rows, api_row in ((API_ROWS, True), (PAGE_ROWS, False))
    for row in rows
    for persona in PERSONAS
]


@pytest.mark.parametrize(("row", "persona", "api_row"), MATRIX)
def test_persona_may_or_may_not(world, row, persona, api_row):
    client, user = client_for(persona, world, api_row)
    expected = row.expected[persona]
    # The whole database is compared where nothing may change (it costs ~40 queries).
    before = snapshot() if expected != OK or row.effect is None else None
    effect_before = row.effect(world) if row.effect else None
    response = send(client, row, world, user)
    if expected == OK:
        assert response.status_code < 400, response.content[:300]
        if row.effect is not None:
            assert row.effect(world) != effect_before, "allowed, but nothing was written"
        else:
            assert snapshot() == before
        return
    if expected == LOGIN:
        assert response.status_code == 302 and response["Location"].startswith("/login/")
    elif expected == MSG:
        assert response.status_code == 302, response.status_code
        errors = [m for m in get_messages(response.wsgi_request) if m.level_tag == "error"]
        assert errors, "refused without saying why"
    else:
        assert response.status_code == expected, response.content[:300]
    assert snapshot() == before, "refused, but something was written"


def test_a_viewers_api_write_is_refused_before_its_body_is_read(world):
    """A viewer sending an empty body gets the 403 naming who may, not a 400 about fields."""
    client, _ = client_for("viewer", world, True)
    response = client.post(f"{D}{world['pending'].pk}/comments/", {}, format="json")
    assert response.status_code == 403
    assert response.json() == {"detail": "Only data scientists or MLOps engineers may "
                                          "comment on deployments."}  # fmt: skip


# --- the table covers every write ---------------------------------------------------------


def _patterns(resolver, prefix="", namespace=""):
    for entry in resolver.url_patterns:
        if isinstance(entry, URLResolver):
            ns = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
            yield from _patterns(entry, prefix + str(entry.pattern), ns)
        elif isinstance(entry, URLPattern) and entry.name:
            yield f"{namespace}{entry.name}", prefix + str(entry.pattern), entry.callback


WRITE_METHODS = {"post", "put", "patch", "delete"}


def api_writes() -> set[tuple[str, str]]:
    """(url name, method) of every API route that accepts a write."""
    found = set()
    for name, _, callback in _patterns(get_resolver()):
        if not name.startswith("api:") or not hasattr(callback, "cls"):
            continue
        actions = getattr(callback, "actions", None)
        if actions is not None:  # a viewset route: method → action
            methods = {m for m in actions if m in WRITE_METHODS}
        else:
            cls = callback.cls
            methods = {m for m in WRITE_METHODS if hasattr(cls, m)}
        found |= {(name, method) for method in methods}
    return found


def test_every_api_write_has_a_row():
    rows = {(row.name, row.method) for row in API_ROWS}
    assert api_writes() - rows == set(), "an API write without a row in the matrix"
    assert rows - api_writes() == set(), "a row for a route that does not exist"


def test_every_page_is_in_the_table_or_accepts_no_form():
    pages = {
        name for name, route, _ in _patterns(get_resolver())
        if not name.startswith(("api:", "admin:")) and name not in OUTSIDE
    }  # fmt: skip
    covered = {row.name for row in PAGE_ROWS} | set(READ_ONLY_PAGES)
    assert pages - covered == set(), "a page without a row and not listed as read-only"
    assert covered - pages == set()


@pytest.mark.parametrize("name", sorted(READ_ONLY_PAGES))
def test_a_post_to_a_read_only_page_changes_nothing(world, name):
    client, _ = client_for("superuser", world, False)
    url = READ_ONLY_PAGES[name].format(**{k: getattr(v, "pk", v) for k, v in world.items()})
    client.get(url)  # what a read records (the Today visit) is not the POST's doing
    before = snapshot()
    client.post(url, {"name": "x", "title": "x", "body": "x", "note": "x"})
    assert snapshot() == before


# --- viewers see no write control ------------------------------------------------------------

VIEWER_PAGES = [
    "/", "/dashboards/", "/changes/", "/search/?q=churn", "/models/churn/compare/",
    "/models/churn/card/", "/docs/runbook/diff/?a=1&b=2", "/models/", "/models/churn/",
    "/models/churn/versions/1/", "/targets/",
    "/targets/staging/", "/deployments/", "/deployments/{pending}/", "/deployments/{live}/",
    "/checks/", "/checks/{check}/", "/incidents/", "/incidents/{incident}/", "/docs/",
    "/docs/runbook/", "/docs/runbook/history/", "/notifications/channels/",
]  # fmt: skip
# A viewer's own things: logging out, and following a model or target (their subscription).
PERSONAL_FORMS = ("/logout/", "/follow/")


def test_every_write_a_viewer_may_not_do_answers_403():
    """The table says so (the matrix above checks the table against every real request):
    a viewer's refused write is a 403 everywhere, never a redirect with a message. What a
    viewer may write is their own: tokens, email choices, following."""
    # (The deploy callback answers a CD system's signature, not a user: 401 to everyone.)
    writes = [row for row in (*API_ROWS, *PAGE_ROWS) if row.name != "api:deployment-callback"]
    refused = {(row.name, row.method, row.extra.get("verb")): row.expected["viewer"]
               for row in writes if row.expected["viewer"] != OK}  # fmt: skip
    assert refused and set(refused.values()) == {403}, refused
    allowed = {row.name for row in writes if row.expected["viewer"] == OK}
    assert allowed <= {"token-list", "token-revoke", "notification-list", "follow",
                       "page-preview", "api:token-list", "api:token-detail",
                       "api:page-preview"}, allowed  # fmt: skip


@pytest.mark.parametrize("path", VIEWER_PAGES)
def test_a_viewer_sees_no_write_control(world, path):
    import re

    client, _ = client_for("viewer", world, False)
    url = path.format(**{k: getattr(v, "pk", v) for k, v in world.items()})
    html = client.get(url).content.decode()
    posts = re.findall(r"<form[^>]*method=\"post\"[^>]*>", html)
    actions = [re.search(r'action="([^"]*)"', form) for form in posts]
    foreign = [m.group(1) if m else "(this page)" for m in actions
               if not (m and m.group(1).startswith(PERSONAL_FORMS))]  # fmt: skip
    assert foreign == []
    assert "hx-post" not in html
    for label in ("Write the postmortem", "Comment</button>", "Add note", "New model",
                  "Register version", "Request deployment", "Request a deployment", ">Edit<",
                  "New check", "Open an incident", "New page", "Restore<", "Archive<",
                  *(f">{verb}</button>" for verb in (
                      "Approve", "Reject", "Roll back", "Pause", "Acknowledge", "Resolve",
                      "Mitigated", "Attach image", "Cancel this request", "Change severity",
                      "Delete", "Redeploy", "Snooze (no incidents)")),
                  'data-testid="missing-pages"'):  # fmt: skip
        assert label not in html, label


def test_every_api_action_names_a_policy_rule():
    """A typo in a viewset's `action_policy` would be a KeyError on the first request."""
    from mlops_portal.core.policy import RULES

    named = {
        action
        for _, _, callback in _patterns(get_resolver())
        if hasattr(callback, "cls")
        for action in getattr(callback.cls, "action_policy", {}).values()
    }
    assert named and named <= set(RULES)


def test_the_policy_refuses_anonymous_users_and_lets_nobody_approve_their_own_request(world):
    from django.contrib.auth.models import AnonymousUser

    from mlops_portal.core.policy import can

    assert not can(AnonymousUser(), "follow")
    root = world["users"]["superuser"]
    Deployment.objects.filter(pk=world["pending"].pk).update(requested_by=root)
    assert not can(root, "deployment.approve", fresh(world["pending"]))
    assert can(root, "deployment.approve")
