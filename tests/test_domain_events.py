"""The domain-event dispatcher: in-transaction subscribers share the change's fate,
on-commit subscribers see only committed changes, and the apps are wired at start-up."""

import pytest
from django.db import transaction

from mlops_portal.core import events


@pytest.fixture
def heard(monkeypatch):
    """Subscribe test handlers to "check.down" without leaking them into other tests."""
    monkeypatch.setattr(events, "_subscribers", events.defaultdict(list))
    calls = []

    def in_step(check, before):
        calls.append(("in transaction", check))

    def after(check, before):
        calls.append(("on commit", check))

    events.subscribe("check.down", in_step)
    events.subscribe("check.down", after, on_commit=True)
    events.subscribe("check.down", after, on_commit=True)  # a second ready(): no-op
    return calls


@pytest.mark.django_db
def test_in_transaction_subscribers_run_at_once_and_on_commit_ones_after_commit(
    heard, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        with transaction.atomic():
            events.publish("check.down", check="c1", before="up")
            assert heard == [("in transaction", "c1")]
    assert heard == [("in transaction", "c1"), ("on commit", "c1")]


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_change_reaches_no_on_commit_subscriber(heard):
    with pytest.raises(RuntimeError), transaction.atomic():
        events.publish("check.down", check="c2", before="up")
        raise RuntimeError("the change fails")
    assert heard == [("in transaction", "c2")]


def test_an_unknown_event_name_is_refused():
    with pytest.raises(ValueError, match="Unknown domain event"):
        events.publish("deployment.exploded", deployment=None)


def test_the_apps_subscribe_in_their_ready():
    assert events.subscribers("deployment.started") == ["monitoring.integration.open_deploy_window"]
    live = events.subscribers("deployment.live")
    assert "monitoring.integration.watch_the_new_endpoint" in live
    assert any(name.endswith("announcements.deployment_ended") for name in live)
    assert any(name.endswith("announcements.incident_changed")
               for name in events.subscribers("incident.opened"))  # fmt: skip
