"""Who is told about what, delivery at most once with retries, channels, and the digest."""

from datetime import time, timedelta

import pytest
from celery.schedules import crontab
from django.core import mail
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.test import override_settings
from django.utils import timezone

from deployments import services as deployments
from deployments.backends import webhook
from mlops_portal import services
from mlops_portal.choices import DeliveryStatus, NotificationEvent
from mlops_portal.env import env_time
from mlops_portal.models import Delivery, Notification, NotificationChannel, OutboxMessage
from mlops_portal.overview import notifications
from mlops_portal.overview.tasks import deliver_notification_task
from monitoring.services import incidents
from tests.conftest import Sent, wait_until

Event = NotificationEvent
DELIVER = "mlops_portal.tasks.deliver_notification_task"
SECRET = "channel-signing-secret"


def addresses(event: str) -> list[str]:
    return sorted(
        Delivery.objects.filter(notification__event=event, user__isnull=False).values_list(
            "address", flat=True
        )
    )


def test_each_role_has_sensible_defaults(alice, bob, carol):
    people = [alice, bob, carol]
    assert notifications.subscribed(people, Event.DEPLOYMENT_NEEDS_APPROVAL) == [bob]
    assert notifications.subscribed(people, Event.DEPLOYMENT_FAILED) == [alice, bob]
    assert notifications.subscribed(people, Event.INCIDENT_OPENED) == [alice, bob, carol]
    assert notifications.subscribed(people, Event.INCIDENT_ACKNOWLEDGED) == [alice, bob]


def test_a_users_choice_replaces_the_defaults_of_their_role(alice, bob):
    services.set_email_events(bob, [Event.INCIDENT_OPENED])
    assert notifications.subscribed([bob], Event.DEPLOYMENT_NEEDS_APPROVAL) == []
    assert notifications.subscribed([bob], Event.INCIDENT_OPENED) == [bob]

    with pytest.raises(ValidationError) as refused:
        services.set_email_events(alice, ["deployment.exploded"])
    assert "events" in refused.value.message_dict

    services.reset_email_events(bob)
    assert notifications.subscribed([bob], Event.DEPLOYMENT_NEEDS_APPROVAL) == [bob]


def test_people_without_an_address_or_inactive_are_not_mailed(bob, erin):
    erin.email = ""
    erin.save()
    bob.is_active = False
    bob.save()
    assert notifications.subscribed([bob, erin], Event.INCIDENT_OPENED) == []


def test_a_request_for_production_asks_the_engineers_but_not_the_requester(
    alice, bob, erin, ready_version, production, django_capture_on_commit_callbacks, sent_tasks
):
    with django_capture_on_commit_callbacks() as callbacks:
        deployment = deployments.request_deployment(
            alice, version=ready_version, target=production, reason="Better recall."
        )
    assert addresses(Event.DEPLOYMENT_NEEDS_APPROVAL) == ["bob@example.com", "erin@example.com"]
    notification = Notification.objects.get(event=Event.DEPLOYMENT_NEEDS_APPROVAL)
    assert notification.url == deployment.get_absolute_url()
    assert "Better recall." in notification.body
    assert sent_tasks == []  # deliveries are queued only once the request has committed
    for callback in callbacks:
        callback()
    queued = notification.deliveries.order_by("pk")
    assert sent_tasks == [Sent(DELIVER, (delivery.pk,), "notifications") for delivery in queued]

    # Erin approves: Alice, who asked, hears about the outcome; the engineers do not.
    deployments.approve_deployment(erin, deployment)
    deployments.fail_deployment(deployment, "Port already in use.")
    assert addresses(Event.DEPLOYMENT_FAILED) == ["alice@example.com"]
    assert "Port already in use." in Notification.objects.get(event=Event.DEPLOYMENT_FAILED).body


def test_the_same_event_is_announced_once(alice):
    first = notifications.announce(Event.INCIDENT_OPENED, key="k-1", title="t", users=[alice])
    again = notifications.announce(Event.INCIDENT_OPENED, key="k-1", title="t", users=[alice])
    assert first is not None and again is None
    assert Delivery.objects.count() == 1


def test_a_delivery_is_sent_at_most_once(alice):
    notifications.announce(
        Event.VALIDATION_FAILED, key="v-1", title="iris v2 failed validation", users=[alice]
    )
    delivery = Delivery.objects.get()
    assert notifications.deliver(delivery.pk) is None
    assert notifications.deliver(delivery.pk) is None  # the job delivered a second time

    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["alice@example.com"]
    assert mail.outbox[0].subject == "[MLOps Portal] iris v2 failed validation"
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.SENT, 1)


@override_settings(NOTIFICATION_MAX_ATTEMPTS=2, NOTIFICATION_RETRY_SECONDS=3)
def test_an_unreachable_channel_is_retried_then_fails_with_its_reason(bob, alice):
    services.save_channel(
        bob, name="#ml-alerts", kind="chat", url="http://127.0.0.1:9/hook",
        events=[Event.INCIDENT_OPENED],
    )  # fmt: skip
    incident = incidents.open_incident(alice, title="Scores are all zero")
    delivery = Delivery.objects.get(channel__name="#ml-alerts")

    assert notifications.deliver(delivery.pk) == 3  # retry in 3 s
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.RETRYING
    assert delivery.last_error == "Could not reach #ml-alerts: ConnectError"  # not its URL

    assert notifications.deliver(delivery.pk) is None  # a duplicate job, ahead of its backoff
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.RETRYING, 1)

    Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())
    assert notifications.deliver(delivery.pk) is None  # second and last attempt
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.FAILED, 2)
    incident.refresh_from_db()
    assert incident.state == "open" and incident.events.count() == 1  # the incident stands


def test_a_refusal_or_a_disabled_channel_fails_at_once(bob, alice, chat_server):
    channel = services.save_channel(
        bob, name="#ml", kind="chat", url=chat_server.url, events=[Event.INCIDENT_OPENED]
    )
    chat_server.statuses = [404]
    incidents.open_incident(alice, title="First")
    refused = Delivery.objects.get()
    notifications.deliver(refused.pk)
    refused.refresh_from_db()
    assert (refused.status, refused.attempts) == (DeliveryStatus.FAILED, 1)
    assert refused.last_error == "#ml refused the message: HTTP 404"

    incidents.open_incident(alice, title="Second")
    disabled = Delivery.objects.exclude(pk=refused.pk).get()
    services.save_channel(bob, channel, enabled=False)  # after the event, before the send
    notifications.deliver(disabled.pk)
    disabled.refresh_from_db()
    assert disabled.status == DeliveryStatus.FAILED
    assert disabled.last_error == "The channel #ml is disabled."
    assert len(chat_server.requests) == 1


def test_the_sweeper_resends_lost_messages_and_fails_lost_sends(alice, outbox_jobs):
    for key in ("waiting", "lost", "fresh"):
        notifications.announce(Event.INCIDENT_OPENED, key=key, title=key, users=[alice])
    waiting, lost, fresh = (Delivery.objects.get(notification__key=k) for k in
                            ("waiting", "lost", "fresh"))  # fmt: skip
    assert [args for _, args in outbox_jobs(DELIVER)] == [(waiting.pk,), (lost.pk,), (fresh.pk,)]
    OutboxMessage.objects.all().delete()
    long_ago = timezone.now() - timedelta(minutes=30)
    Delivery.objects.filter(pk=waiting.pk).update(created_at=long_ago)
    Delivery.objects.filter(pk=lost.pk).update(status=DeliveryStatus.SENDING, claimed_at=long_ago)

    assert notifications.sweep_deliveries() == {"failed": 1, "resent": 1}
    assert outbox_jobs() == [
        (DELIVER, (waiting.pk,))
    ]  # a pending delivery whose message never came
    lost.refresh_from_db()
    assert lost.status == DeliveryStatus.FAILED  # maybe sent: never twice
    fresh.refresh_from_db()
    assert fresh.status == DeliveryStatus.PENDING


def test_chat_messages_escape_what_people_wrote():
    notification = Notification(
        event=Event.INCIDENT_OPENED, title="<!channel> Scores & <https://evil.example|docs>",
        body="@channel @Here look", url="/incidents/7/",
    )  # fmt: skip
    text = notifications.chat_payload(notification)["text"]
    assert "<!channel>" not in text and "<https://evil.example" not in text
    assert text.startswith("*&lt;!channel&gt; Scores &amp; &lt;https://evil.example|docs&gt;*")
    assert "@channel" not in text and "@Here" not in text
    assert text.endswith("/incidents/7/|Open in the MLOps Portal>")  # our own link stays


def test_incidents_reach_owners_and_followers_of_the_target_and_model(
    alice, bob, carol, dave, ready_version, production
):
    services.set_following(carol, production, True)
    incidents.open_incident(
        bob, title="p99 latency doubled", target=production, version=ready_version
    )
    # Bob created the target, Alice owns the model, Carol follows the target; Dave is not
    # involved.
    assert addresses(Event.INCIDENT_OPENED) == [
        "alice@example.com",
        "bob@example.com",
        "carol@example.com",
    ]


def test_validation_failures_tell_who_registered_the_version(alice, iris):
    from tests.factories import register_iris_version

    version = register_iris_version(alice, iris, sample_input=[[1.0, 2.0]])  # 2 of 4 features
    deployments.validate_version(version.pk)
    assert addresses(Event.VALIDATION_FAILED) == ["alice@example.com"]


def test_channels_are_for_engineers_and_keep_their_secret(alice, bob):
    from django.core.exceptions import PermissionDenied

    with pytest.raises(PermissionDenied):
        services.save_channel(alice, name="mine", kind="chat", url="http://x.test", events=[])
    with pytest.raises(ValidationError) as refused:
        services.save_channel(bob, name="", kind="chat", url="ftp://x.test/", events=[])
    assert set(refused.value.message_dict) == {"name", "url", "events"}

    channel = services.save_channel(
        bob, name="receiver", kind="webhook", url="https://hooks.example/portal",
        secret=SECRET, events=[Event.INCIDENT_OPENED],
    )  # fmt: skip
    services.save_channel(bob, channel, name="receiver", secret="", enabled=False)
    channel.refresh_from_db()
    assert channel.secret == SECRET  # a blank secret on edit keeps the saved one
    assert channel.enabled is False


def test_a_channel_cannot_listen_to_the_daily_digest(bob):
    with pytest.raises(ValidationError) as refused:
        services.save_channel(
            bob, name="#ml", kind="chat", url="https://chat.example/hook",
            events=[Event.INCIDENT_OPENED, Event.DAILY_DIGEST],
        )  # fmt: skip
    assert refused.value.message_dict["events"] == ["Channels cannot receive: digest.daily."]
    assert not NotificationChannel.objects.exists()


# --- through a real worker --------------------------------------------------------------


@pytest.mark.worker
@override_settings(NOTIFICATION_RETRY_SECONDS=1)
def test_deliveries_through_a_real_worker(
    notification_worker, chat_server, alice, bob, iris, ready_version, production
):
    """Mail lands in the outbox, the chat webhook is retried after a 500, the generic
    webhook is signed, and a job delivered again sends nothing twice."""
    receiver = type(chat_server)()  # a second stand-in: the signed JSON receiver
    try:
        chat_server.statuses = [500]
        services.save_channel(
            bob, name="#ml-alerts", kind="chat", url=chat_server.url,
            events=[Event.INCIDENT_OPENED],
        )  # fmt: skip
        services.save_channel(
            bob, name="pagerduty-bridge", kind="webhook", url=receiver.url, secret=SECRET,
            events=[Event.INCIDENT_OPENED],
        )  # fmt: skip
        incident = incidents.open_incident(
            bob, title="iris answers 500s", target=production, version=ready_version,
            severity="sev2",
        )  # fmt: skip

        wait_until(
            lambda: Delivery.objects.exclude(status=DeliveryStatus.SENT).count() == 0, timeout=30
        )
        deliveries = {d.address: d for d in Delivery.objects.all()}
        assert deliveries["#ml-alerts"].attempts == 2  # the 500, then the retry
        assert deliveries["pagerduty-bridge"].attempts == 1

        assert sorted(m.to[0] for m in mail.outbox) == ["alice@example.com", "bob@example.com"]
        assert "[SEV2] Incident #" in mail.outbox[0].subject
        assert incident.get_absolute_url() in mail.outbox[0].body

        first, retried = chat_server.payloads()
        assert first == retried
        assert retried["text"].startswith(f"*[SEV2] Incident #{incident.pk} opened")
        assert f"{incident.get_absolute_url()}|Open in the MLOps Portal>" in retried["text"]

        [(headers, body)] = receiver.requests
        assert webhook.verify(SECRET, body, headers[notifications.SIGNATURE_HEADER]) is None
        assert headers[notifications.EVENT_HEADER] == Event.INCIDENT_OPENED
        sent = receiver.payloads()[0]
        assert sent["data"]["incident"] == incident.pk
        assert sent["data"]["target"] == "iris-production"

        # The broker delivers every job once more: nothing is sent twice.
        for delivery in Delivery.objects.all():
            deliver_notification_task.delay(delivery.pk)
        wait_until(lambda: _queue_is_empty(), timeout=10)
        assert len(chat_server.requests) == 2 and len(receiver.requests) == 1
        assert len(mail.outbox) == 2
    finally:
        receiver.shutdown()
        receiver.server_close()


def _queue_is_empty() -> bool:
    import redis
    from django.conf import settings

    return redis.Redis.from_url(settings.CELERY_BROKER_URL).llen("notifications") == 0


# --- the daily digest -------------------------------------------------------------------


def test_the_digest_is_scheduled_daily_at_the_configured_time(settings, monkeypatch):
    entry = settings.CELERY_BEAT_SCHEDULE["daily-digest"]
    assert entry["task"] == "mlops_portal.tasks.send_daily_digests_task"
    assert entry["schedule"] == crontab(hour=7, minute=0)

    monkeypatch.setenv("NOTIFICATIONS_DIGEST_TIME", "06:45")
    assert env_time("NOTIFICATIONS_DIGEST_TIME", "07:00") == time(6, 45)
    monkeypatch.setenv("NOTIFICATIONS_DIGEST_TIME", "quarter to seven")
    with pytest.raises(ImproperlyConfigured, match="HH:MM"):
        env_time("NOTIFICATIONS_DIGEST_TIME", "07:00")


def test_the_digest_says_what_today_shows_once_a_day_and_nothing_when_all_is_clear(
    alice, bob, carol
):
    assert notifications.send_daily_digests() == 0  # nothing to say to anyone

    incidents.open_incident(alice, title="Drift on churn features", severity="sev3")
    assert notifications.send_daily_digests() == 3  # every role gets the digest by default
    assert notifications.send_daily_digests() == 0  # once a day

    digest = Notification.objects.get(event=Event.DAILY_DIGEST, deliveries__user=carol)
    assert digest.title.startswith("Today, ")
    assert "Drift on churn features" in digest.body
    assert "Incidents: open, and opened since" in digest.body

    tomorrow = timezone.now() + timedelta(days=1)
    assert notifications.send_daily_digests(now=tomorrow) == 3  # still open the next day


def test_following_a_target_from_its_page(client, carol, production):
    client.force_login(carol)
    assert "Follow</button>" in client.get("/targets/iris-production/").content.decode()
    response = client.post("/follow/targets/iris-production/", {"following": "1"})
    assert response.status_code == 302
    assert list(production.followers.all()) == [carol]
    assert "Unfollow</button>" in client.get("/targets/iris-production/").content.decode()

    client.post("/follow/targets/iris-production/", {"following": "0"})
    assert not production.followers.exists()
    history = client.get("/changes/", {"kind": "deployments.target"}).content.decode()
    assert "add carol" in history and "delete carol" in history  # both on record
    assert client.post("/follow/nothing/iris-production/").status_code == 404


def test_the_notifications_page_lists_my_deliveries_and_saves_my_choice(client, alice, bob):
    notifications.announce(Event.INCIDENT_OPENED, key="k", title="Drift on iris", users=[alice])
    client.force_login(alice)
    page = client.get("/notifications/").content.decode()
    assert "Drift on iris" in page and "Pending" in page

    client.post("/notifications/", {"events": [Event.DEPLOYMENT_FAILED]})
    assert notifications.subscribed([alice], Event.INCIDENT_OPENED) == []
    [record] = client.get("/api/v1/changes/", {"user": "alice"}).json()["results"]
    assert record["changes"]["email_events"] == [
        "the defaults of the role",
        "['deployment.failed']",
    ]
    refused = client.post("/notifications/", {"events": ["deployment.exploded"]})
    assert "is not one of the available choices" in refused.content.decode()

    client.force_login(bob)
    assert "Drift on iris" not in client.get("/notifications/").content.decode()
    assert "Drift on iris" in client.get("/notifications/?all=1").content.decode()


def test_only_engineers_add_channels_from_the_page(client, alice, bob):
    form = {"name": "#ml", "kind": "chat", "url": "https://chat.example/hooks/1",
            "events": [Event.INCIDENT_OPENED], "enabled": "on"}  # fmt: skip
    client.force_login(alice)
    assert "Add channel" not in client.get("/notifications/channels/").content.decode()
    client.post("/notifications/channels/", form)
    assert not NotificationChannel.objects.exists()

    client.force_login(bob)
    bad = client.post("/notifications/channels/", {**form, "url": "not a url"})
    assert "Enter a valid URL." in bad.content.decode()
    client.post("/notifications/channels/", {**form, "kind": "webhook", "secret": SECRET})
    channel = NotificationChannel.objects.get()
    assert channel.secret == SECRET
    edit = client.get(f"/notifications/channels/{channel.pk}/").content.decode()
    assert SECRET not in edit and "https://chat.example/hooks/1" in edit

    # A chat webhook's URL is its credential: engineers only, and never in the history.
    client.force_login(alice)
    assert client.get(f"/notifications/channels/{channel.pk}/").status_code == 403
    assert client.post(f"/notifications/channels/{channel.pk}/", {"delete": "1"}).status_code == 403
    assert NotificationChannel.objects.exists()
    history = client.get("/changes/").content.decode()
    assert "#ml" in history and "chat.example" not in history and SECRET not in history


def test_the_navbar_bell_counts_unread_notifications_until_the_page_is_opened(client, alice, bob):
    from mlops_portal.models import Notification

    client.force_login(alice)
    assert "unread</span>" not in client.get("/models/").content.decode()
    for number in (1, 2):
        notice = Notification.objects.create(event="deployment.failed", key=f"k{number}",
                                             title=f"Deployment #{number} failed")  # fmt: skip
        Delivery.objects.create(notification=notice, user=alice, medium="email",
                                address="alice@example.com")  # fmt: skip
        Delivery.objects.create(notification=notice, user=bob, medium="email",
                                address="bob@example.com")  # fmt: skip
    html = client.get("/models/").content.decode()
    assert 'aria-label="Notifications, 2 unread"' in html
    assert '2<span class="visually-hidden"> unread</span>' in html
    page = client.get("/notifications/").content.decode()
    assert page.count('data-testid="new"') == 2  # what the bell counted is marked new
    assert 'aria-label="Notifications, 0 unread"' in client.get("/models/").content.decode()
    assert client.get("/notifications/").content.decode().count('data-testid="new"') == 0
    client.force_login(bob)  # bob has not looked yet
    assert 'aria-label="Notifications, 2 unread"' in client.get("/models/").content.decode()
