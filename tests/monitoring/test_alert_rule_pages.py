"""The alert-rules page: list with state, last value and mute; create, edit, mute and
unmute through the same services as the API; engineers write, others read."""

import pytest
from auditlog.models import LogEntry
from django.urls import reverse

from monitoring.models import AlertRule
from monitoring.services import alerts


@pytest.fixture
def rules(bob, iris):
    def make(i):
        return alerts.create_rule(bob, name=f"rule {i:02}", model=iris, metric="drift_max",
                                  threshold=0.25, for_minutes=60)  # fmt: skip

    return [make(i) for i in range(3)]


def test_it_lists_rules_with_state_last_value_and_mute_in_constant_queries(
    client, bob, rules, django_assert_max_num_queries
):
    AlertRule.objects.filter(pk=rules[0].pk).update(state="firing", last_value=0.4321)
    alerts.set_muted(bob, rules[1], True, "retraining this week")
    client.force_login(bob)
    client.get(reverse("rule-list"))  # warm the session and the user's row
    with django_assert_max_num_queries(8):
        page = client.get(reverse("rule-list")).content.decode()
    assert "Firing" in page and "0.43" in page
    assert "retraining this week" in page
    assert "drift_max &gt; 0.25 for 60 min" in page
    assert 'href="/alert-rules/new/"' in page  # an engineer may add rules


def test_the_list_needs_the_same_queries_for_more_rules(
    client, bob, iris, rules, django_assert_num_queries
):
    client.force_login(bob)
    client.get(reverse("rule-list"))
    with django_assert_num_queries(_count_queries(client)) as few:
        client.get(reverse("rule-list"))
    for i in range(10):
        alerts.create_rule(bob, name=f"more {i}", model=iris, metric="error_rate", threshold=5)
    with django_assert_num_queries(len(few.captured_queries)):
        client.get(reverse("rule-list"))


def _count_queries(client) -> int:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        client.get(reverse("rule-list"))
    return len(captured.captured_queries)


def test_an_engineer_creates_a_feature_drift_rule_through_the_form(client, bob, iris):
    client.force_login(bob)
    response = client.post(reverse("rule-create"), {
        "name": "petal drift", "model": iris.pk, "metric": "drift_feature",
        "feature": "petal_length", "comparison": ">", "threshold": "0.25",
        "for_minutes": "60", "severity": "sev2", "enabled": "on",
    })  # fmt: skip
    assert response.status_code == 302
    rule = AlertRule.objects.get(name="petal drift")
    assert (rule.model, rule.feature, rule.severity) == (iris, "petal_length", "sev2")
    assert rule.condition == "drift_feature(petal_length) > 0.25 for 60 min"


def test_a_feature_rule_without_a_feature_is_a_field_error(client, bob, iris):
    client.force_login(bob)
    response = client.post(reverse("rule-create"), {
        "name": "drift", "model": iris.pk, "metric": "drift_feature", "comparison": ">",
        "threshold": "0.25", "for_minutes": "60", "severity": "sev3",
    })  # fmt: skip
    assert response.status_code == 200
    assert response.context["form"].errors["feature"] == [
        "Name the feature whose drift this rule watches."
    ]
    assert not AlertRule.objects.exists()


def test_no_scope_or_both_is_a_field_error(client, bob, iris):
    client.force_login(bob)
    response = client.post(reverse("rule-create"), {
        "name": "errors", "metric": "error_rate", "comparison": ">", "threshold": "5",
        "for_minutes": "5", "severity": "sev3",
    })  # fmt: skip
    assert "Give a model or a target (one of them)." in response.context["form"].errors["model"]


def test_an_engineer_edits_a_rule_but_not_its_scope(client, bob, rules, iris):
    client.force_login(bob)
    response = client.post(reverse("rule-edit", args=[rules[0].pk]), {
        "name": "renamed", "metric": "drift_prediction", "comparison": ">=",
        "threshold": "0.3", "for_minutes": "120", "severity": "sev1", "enabled": "on",
    })  # fmt: skip
    assert response.status_code == 302
    rule = AlertRule.objects.get(pk=rules[0].pk)
    assert (rule.name, rule.metric, rule.threshold, rule.model) == (
        "renamed", "drift_prediction", 0.3, iris,
    )  # fmt: skip


def test_mute_needs_a_reason_which_is_on_the_change_record(client, bob, rules):
    client.force_login(bob)
    url = reverse("rule-action", args=[rules[0].pk, "mute"])
    response = client.post(url, {"reason": ""}, follow=True)
    assert "Say why, so the next on-call knows." in response.content.decode()
    assert not AlertRule.objects.get(pk=rules[0].pk).muted

    client.post(url, {"reason": "known drift: new market"})
    rule = AlertRule.objects.get(pk=rules[0].pk)
    assert rule.muted and rule.mute_reason == "known drift: new market"
    change = LogEntry.objects.get_for_object(rule).latest("timestamp")
    assert change.actor == bob
    assert change.changes_dict["mute_reason"] == ["", "known drift: new market"]

    client.post(reverse("rule-action", args=[rules[0].pk, "unmute"]))
    assert not AlertRule.objects.get(pk=rules[0].pk).muted


def test_a_viewer_reads_the_page_but_may_not_write(client, carol, rules):
    client.force_login(carol)
    page = client.get(reverse("rule-list")).content.decode()
    assert "rule 00" in page
    assert "New rule" not in page and 'method="post"' not in page.split("<main")[-1]
    assert client.get(reverse("rule-create")).status_code == 403
    assert client.get(reverse("rule-edit", args=[rules[0].pk])).status_code == 403
    form = {"name": "x", "metric": "error_rate", "threshold": "1", "for_minutes": "5"}
    assert client.post(reverse("rule-create"), form).status_code == 403
    mute = reverse("rule-action", args=[rules[0].pk, "mute"])
    assert client.post(mute, {"reason": "because"}).status_code == 403
    assert not AlertRule.objects.get(pk=rules[0].pk).muted


def test_the_monitoring_nav_links_the_page(client, carol):
    client.force_login(carol)
    page = client.get(reverse("check-list")).content.decode()
    assert 'href="/alert-rules/"' in page


def test_the_api_takes_a_drift_rule_and_names_a_bad_feature(api_client_for, bob, iris):
    client = api_client_for(bob)
    response = client.post("/api/v1/alert-rules/", {
        "name": "drift", "model": "iris", "metric": "drift_feature", "threshold": 0.25,
    }, format="json")  # fmt: skip
    assert response.status_code == 400
    assert response.json() == {"feature": ["Name the feature whose drift this rule watches."]}
    response = client.post("/api/v1/alert-rules/", {
        "name": "drift", "model": "iris", "metric": "drift_feature", "feature": "age",
        "threshold": 0.25, "for_minutes": 60,
    }, format="json")  # fmt: skip
    assert response.status_code == 201
    assert response.json()["feature"] == "age"
    assert response.json()["condition"] == "drift_feature(age) > 0.25 for 60 min"
