"""The Today page: what needs each role's attention, most urgent first."""

from datetime import timedelta

import pytest
from django.core.files.base import ContentFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from deployments import services as deployments
from deployments.models import Deployment
from mlops_portal.models import Profile
from mlops_portal.overview.today import since_for
from monitoring.choices import CheckState
from monitoring.models import HealthCheck, Incident
from monitoring.services import checks, incidents
from tests.factories import register_iris_version, validated


@pytest.fixture
def morning(alice, bob):
    """A night's worth of trouble: two incidents, a check down, a request waiting for
    approval, a failed deployment and a version that failed validation."""
    iris = deployments.create_model(alice, name="iris", team="botany")
    version = validated(register_iris_version(alice, iris))
    production = deployments.create_target(bob, name="iris-prod", environment="production")
    staging = deployments.create_target(bob, name="iris-staging", environment="staging")
    waiting = deployments.request_deployment(
        alice, version=version, target=production, reason="Better recall."
    )
    failed = deployments.request_deployment(
        alice, version=version, target=staging, reason="Try it."
    )
    deployments.fail_deployment(failed, "Port already in use.")
    minor = incidents.open_incident(bob, title="Slow batch scoring", severity="sev3")
    major = incidents.open_incident(bob, title="iris-prod answers 500s", severity="sev1")
    check = checks.create_check(bob, name="iris-prod health", url="http://127.0.0.1:9/health")
    HealthCheck.objects.filter(pk=check.pk).update(
        state=CheckState.DOWN, first_failure_at=timezone.now()
    )
    broken = register_iris_version(alice, iris, artifact=ContentFile(b"x", name="m.joblib"))
    deployments.validate_version(broken.pk)
    return {"waiting": waiting, "failed": failed, "major": major, "minor": minor,
            "check": check, "broken": broken}  # fmt: skip


def sections(client):
    response = client.get("/")
    assert response.status_code == 200
    return {section.key: section.shown for section in response.context["sections"]}


def test_an_engineer_sees_incidents_checks_and_approvals_first(client, bob, morning):
    client.force_login(bob)
    shown = sections(client)
    assert list(shown) == ["incidents", "checks", "approvals", "failed"]
    assert shown["incidents"] == [morning["major"], morning["minor"]]  # by severity

    # An incident that opened and closed overnight is still news; an older one is not.
    overnight = incidents.open_incident(bob, title="Blip at 02:00", severity="sev1")
    incidents.resolve(bob, overnight, "Recovered by itself.")
    old = incidents.open_incident(bob, title="Last week's", severity="sev1")
    incidents.resolve(bob, old, "Fixed.")
    Incident.objects.filter(pk=old.pk).update(opened_at=timezone.now() - timedelta(days=7))
    shown = sections(client)
    assert shown["incidents"] == [morning["major"], morning["minor"], overnight]
    assert shown["approvals"] == [morning["waiting"]]
    assert shown["failed"] == [morning["failed"]]

    page = client.get("/").content.decode()
    for link in (
        morning["major"].get_absolute_url(),
        morning["check"].get_absolute_url(),
        morning["waiting"].get_absolute_url(),
    ):
        assert f'href="{link}"' in page  # one click from its page


def test_a_data_scientist_sees_their_requests_and_their_models(client, alice, morning):
    client.force_login(alice)
    shown = sections(client)
    assert list(shown) == ["incidents", "checks", "failed", "my-requests", "invalid", "versions"]
    assert shown["my-requests"] == [morning["waiting"]]
    assert shown["invalid"] == [morning["broken"]]
    assert morning["broken"] in shown["versions"]


def test_a_viewer_sees_the_trouble_but_no_one_elses_queue(client, carol, morning):
    client.force_login(carol)
    assert list(sections(client)) == ["incidents", "checks", "failed"]


def test_all_clear_says_so(client, carol):
    client.force_login(carol)
    response = client.get("/")
    assert response.context["sections"] == []
    assert b'data-testid="all-clear"' in response.content
    assert b"All clear." in response.content


def test_what_happened_is_counted_from_the_last_visit_or_at_least_a_day(client, alice, morning):
    three_days_ago = timezone.now() - timedelta(days=3)
    Deployment.objects.filter(pk=morning["failed"].pk).update(updated_at=three_days_ago)
    client.force_login(alice)
    assert "failed" not in sections(client)  # older than a day, and no visit since

    visit = Profile.objects.get(user=alice).last_today_visit_at
    assert timezone.now() - visit < timedelta(seconds=5)
    client.get("/")  # a reload minutes later writes nothing: only the day matters
    assert Profile.objects.get(user=alice).last_today_visit_at == visit
    assert since_for(alice) <= timezone.now() - timedelta(hours=24)  # even just after a visit
    Profile.objects.filter(user=alice).update(last_today_visit_at=three_days_ago)
    assert since_for(alice) == three_days_ago  # a long absence reaches further back
    assert "failed" in sections(client)


def test_the_page_refreshes_its_triage_with_htmx_keeping_its_since(client, bob, morning):
    client.force_login(bob)
    client.get("/")
    before = Profile.objects.get(user=bob).last_today_visit_at
    since = (timezone.now() - timedelta(hours=2)).isoformat()
    response = client.get("/", {"since": since}, headers={"HX-Request": "true"})
    body = response.content.decode()
    assert body.lstrip().startswith('<div id="triage"')
    assert "<nav" not in body  # the fragment only
    assert response.context["since"].isoformat() == since
    assert Profile.objects.get(user=bob).last_today_visit_at == before  # polls are no visit

    default = since_for(bob)
    for nonsense in ("2026-13-45T99:00", "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"):
        response = client.get("/", {"since": nonsense}, headers={"HX-Request": "true"})
        assert response.status_code == 200
        assert abs(response.context["since"] - default) < timedelta(seconds=5)


def test_the_page_makes_the_same_queries_however_much_happened(client, alice, bob, morning):
    client.force_login(bob)
    client.get("/")  # the profile row exists from here on

    with CaptureQueriesContext(connection) as few:
        client.get("/")
    iris = morning["waiting"].version
    for number in range(12):
        incidents.open_incident(bob, title=f"Incident {number}", severity="sev2")
        deployments.request_deployment(
            alice, version=iris, target=morning["waiting"].target, reason=f"Try {number}"
        )
    with CaptureQueriesContext(connection) as many:
        response = client.get("/")
    assert len(many) == len(few)
    shown = {section.key: section for section in response.context["sections"]}
    assert len(shown["incidents"].shown) == 8 and shown["incidents"].has_more
