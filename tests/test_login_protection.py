"""Login protection: lockout per user name and per address with the unlock time on the
login page, the throttle on bad API tokens (shared through Redis by every web worker), and
one log line per failed login or refused permission, never with a secret in it."""

import logging
import uuid
from datetime import timedelta

import pytest
import redis
from axes.models import AccessAttempt
from django.utils import timezone
from rest_framework.test import APIClient

from mlops_portal.core import tokens
from monitoring.services import incidents

WRONG = "not-the-password-9431"  # the factories' users have the password "password"
SECURITY = "mlops_portal.security"


def log_in(client, username, password, ip="198.51.100.1"):
    return client.post("/login/", {"username": username, "password": password}, REMOTE_ADDR=ip)


def fail(client, times, username, ips):
    for attempt in range(times):
        ip = ips[attempt % len(ips)]
        response = log_in(client, username, WRONG, ip=ip)
    return response


def logged_in_as(client):
    response = client.get("/tokens/")
    return response.context["user"].username if response.status_code == 200 else None


def unlock_time_of(username):
    last = AccessAttempt.objects.filter(username=username).latest("attempt_time").attempt_time
    return timezone.localtime(last + timedelta(minutes=15)).strftime("%H:%M")


def test_it_locks_a_user_name_after_five_failures_from_any_address(client, alice):
    spread = [f"198.51.100.{n}" for n in range(10, 15)]  # a new address each try
    for n in range(4):
        assert "didn't match" in log_in(client, "alice", WRONG, ip=spread[n]).content.decode()
    fifth = log_in(client, "alice", WRONG, ip=spread[4])
    assert fifth.status_code == 429

    right = log_in(client, "alice", "password", ip="198.51.100.99")  # yet another address
    page = right.content.decode()
    assert right.status_code == 429
    assert "Logging in is locked until" in page
    assert unlock_time_of("alice") in page
    assert "(in 15" in page or "(in 14" in page
    assert logged_in_as(client) is None


def test_it_locks_an_address_that_tries_many_user_names(client, bob):
    attacker = "203.0.113.7"
    for name in ("admin", "root", "ops", "alice", "carol"):
        log_in(client, name, WRONG, ip=attacker)

    refused = log_in(client, "bob", "password", ip=attacker)
    assert refused.status_code == 429
    assert "Logging in is locked until" in refused.content.decode()
    assert logged_in_as(client) is None

    elsewhere = log_in(client, "bob", "password", ip="198.51.100.20")
    assert elsewhere.status_code == 302 and elsewhere["Location"] == "/"
    assert logged_in_as(client) == "bob"


def test_the_lock_lifts_after_the_cool_off(client, alice, monkeypatch):
    fail(client, 5, "alice", ["198.51.100.30"])
    assert log_in(client, "alice", "password", ip="198.51.100.30").status_code == 429

    later = timezone.now() + timedelta(minutes=15, seconds=1)
    monkeypatch.setattr("axes.handlers.proxy.now", lambda: later)  # axes' clock
    response = log_in(client, "alice", "password", ip="198.51.100.30")
    assert response.status_code == 302
    assert logged_in_as(client) == "alice"


def test_a_success_before_the_limit_clears_the_count(client, alice):
    fail(client, 4, "alice", ["198.51.100.40"])
    assert log_in(client, "alice", "password", ip="198.51.100.40").status_code == 302
    client.post("/logout/")
    fail(client, 4, "alice", ["198.51.100.40"])
    assert log_in(client, "alice", "password", ip="198.51.100.40").status_code == 302


def test_each_failed_login_is_one_line_with_user_and_address_never_the_password(
    client, alice, caplog
):
    caplog.set_level(logging.DEBUG)
    fail(client, 6, "alice", ["198.51.100.50"])

    lines = [r.getMessage() for r in caplog.records if r.name == SECURITY]
    assert len(lines) == 6
    assert lines[0] == (
        "event=login_failed user=alice ip=198.51.100.50 method=POST path=/login/ locked_out=false"
    )
    assert lines[-1].endswith("locked_out=true")  # refused without checking the password
    assert all(WRONG not in r.getMessage() and WRONG not in str(r.__dict__)
               for r in caplog.records)  # fmt: skip
    assert WRONG not in str(list(AccessAttempt.objects.values()))  # what axes keeps


def test_a_crafted_user_name_cannot_forge_a_log_line(client, db, caplog):
    caplog.set_level(logging.WARNING, logger=SECURITY)
    log_in(client, "eve\nevent=login_ok user=admin", WRONG)
    (line,) = [r.getMessage() for r in caplog.records if r.name == SECURITY]
    assert "\n" not in line
    assert 'user="eve\\nevent=login_ok user=admin"' in line


# --- API tokens ---------------------------------------------------------------------------


def token_client(secret, ip):
    client = APIClient(REMOTE_ADDR=ip)
    client.credentials(HTTP_AUTHORIZATION=f"Token {secret}")
    return client


@pytest.fixture
def low_token_limit(settings):
    settings.API_TOKEN_FAILURE_LIMIT = 3
    return 3


def test_bad_tokens_from_one_address_get_429_and_good_tokens_elsewhere_still_work(
    api_client_for, alice, low_token_limit, caplog
):
    caplog.set_level(logging.WARNING, logger=SECURITY)
    guesser = token_client("mlp_guessed-secret-0001", "203.0.113.9")
    answers = [guesser.get("/api/v1/models/").status_code for _ in range(low_token_limit)]
    assert answers == [401, 401, 401]

    throttled = guesser.get("/api/v1/models/")
    assert throttled.status_code == 429
    assert int(throttled["Retry-After"]) > 0
    assert "invalid API token" in throttled.json()["detail"]

    good = api_client_for(alice)  # another address: 127.0.0.1
    assert good.get("/api/v1/models/").status_code == 200
    assert good.get("/api/v1/tokens/").json()["count"] == 1

    lines = [r.getMessage() for r in caplog.records if r.name == SECURITY]
    assert lines[0] == (
        "event=token_failed user=- ip=203.0.113.9 method=GET path=/api/v1/models/ reason=invalid"
    )
    assert len(lines) == 3  # the throttled request never reached the token check
    assert all("guessed-secret" not in line for line in lines)


def test_valid_tokens_never_count_towards_the_limit(api_client_for, alice, low_token_limit):
    good = api_client_for(alice)
    for _ in range(low_token_limit + 2):
        assert good.get("/api/v1/models/").status_code == 200


@pytest.fixture
def redis_cache(settings):
    """The production cache: Redis, under a key prefix of this test's own."""
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    settings.CACHES = {
        "default": {
            "BACKEND": "mlops_portal.core.cache.RedisCache",
            "LOCATION": settings.REDIS_URL,
            "KEY_PREFIX": prefix,
        }
    }
    client = redis.Redis.from_url(settings.REDIS_URL)
    yield client, prefix
    for key in client.scan_iter(f"{prefix}:*"):
        client.delete(key)


def test_the_failure_count_lives_in_redis_where_every_worker_reads_it(
    db, redis_cache, low_token_limit
):
    client, prefix = redis_cache
    guesser = token_client("mlp_guessed-secret-0002", "203.0.113.10")
    for _ in range(low_token_limit):
        guesser.get("/api/v1/models/")

    (key,) = list(client.scan_iter(f"{prefix}:*203.0.113.10*"))
    assert int(client.get(key)) == low_token_limit  # another process sees the same count
    assert 0 < client.ttl(key) <= 301
    assert guesser.get("/api/v1/models/").status_code == 429


@pytest.mark.parametrize("cache", ["redis", "memory"])
def test_a_good_token_from_an_address_over_the_limit_gets_429_too(
    request, alice, low_token_limit, cache
):
    """A good token reads the address's failures in the round trip that counts its rates,
    after the lookup; the answer is the same 429 as a guess gets, before it as after."""
    if cache == "redis":
        request.getfixturevalue("redis_cache")
    guesser = token_client("mlp_guessed-secret-0004", "203.0.113.12")
    for _ in range(low_token_limit):
        guesser.get("/api/v1/models/")
    _, secret = tokens.create_token(alice, "good")
    refused = token_client(secret, "203.0.113.12").get("/api/v1/models/")
    assert refused.status_code == 429
    assert "invalid API token" in refused.json()["detail"]
    assert token_client(secret, "203.0.113.13").get("/api/v1/models/").status_code == 200


def test_with_the_cache_down_tokens_are_still_checked_not_throttled(
    settings, api_client_for, alice, low_token_limit
):
    settings.CACHES = {
        "default": {
            "BACKEND": "mlops_portal.core.cache.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",  # nothing listens on port 1
            "OPTIONS": {"socket_connect_timeout": 0.5},
        }
    }
    guesser = token_client("mlp_guessed-secret-0003", "203.0.113.11")
    assert [guesser.get("/api/v1/models/").status_code for _ in range(4)] == [401] * 4
    assert api_client_for(alice).get("/api/v1/models/").status_code == 200


# --- refused permissions -------------------------------------------------------------------


def test_a_refused_page_action_is_one_line_without_a_traceback(client, carol, caplog):
    caplog.set_level(logging.INFO)
    client.force_login(carol)
    response = client.get("/targets/new/", REMOTE_ADDR="198.51.100.60")

    assert response.status_code == 403
    assert "Not allowed" in response.content.decode()
    (line,) = [r.getMessage() for r in caplog.records if r.name == SECURITY]
    assert line.startswith(
        "event=permission_denied user=carol ip=198.51.100.60 method=GET path=/targets/new/"
        " status=403 reason="
    )
    assert not [r for r in caplog.records if r.name == "django.request"]
    assert not [r for r in caplog.records if r.exc_info]


def test_a_refused_api_call_is_one_line(api_client_for, carol, caplog):
    caplog.set_level(logging.INFO)
    response = api_client_for(carol).post(
        "/api/v1/targets/", {"name": "x", "environment": "staging"}, format="json"
    )

    assert response.status_code == 403
    (line,) = [r.getMessage() for r in caplog.records if r.name == SECURITY]
    assert line.startswith(
        "event=permission_denied user=carol ip=127.0.0.1 method=POST path=/api/v1/targets/"
        " status=403"
    )
    assert not [r for r in caplog.records if r.name == "django.request"]


def test_a_viewers_refused_action_is_a_403_logged_once(client, bob, carol, caplog):
    incident = incidents.open_incident(bob, title="slow answers")
    caplog.set_level(logging.INFO)
    client.force_login(carol)
    response = client.post(f"/docs/postmortem/{incident.pk}/")

    assert response.status_code == 403
    assert "Only data scientists or MLOps engineers may write documentation." in (
        response.content.decode()
    )
    (line,) = [r.getMessage() for r in caplog.records if r.name == SECURITY]
    assert line.startswith(
        f"event=permission_denied user=carol ip=127.0.0.1 method=POST"
        f" path=/docs/postmortem/{incident.pk}/ status=403 reason="
    )
