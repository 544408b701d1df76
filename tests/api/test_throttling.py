"""Request rates per API token and per user: 429 with Retry-After past the limit."""

import pytest
import redis
from django.core.exceptions import ImproperlyConfigured
from rest_framework.test import APIClient

from mlops_portal.core import tokens
from mlops_portal.env import env_rate


def token_client(user, name) -> APIClient:
    _, secret = tokens.create_token(user, name)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {secret}")
    return client


def test_a_token_over_its_rate_gets_429_with_retry_after(settings, alice):
    settings.API_THROTTLE_TOKEN_RATE = "3/minute"
    api = token_client(alice, "busy")
    assert [api.get("/api/v1/models/").status_code for _ in range(3)] == [200, 200, 200]
    refused = api.get("/api/v1/models/")
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert refused.json()["detail"].startswith("Request was throttled.")
    # Another token of the same user has its own count.
    assert token_client(alice, "other").get("/api/v1/models/").status_code == 200


def test_a_user_over_its_rate_gets_429_on_every_token_and_its_session(settings, alice, dave):
    settings.API_THROTTLE_USER_RATE = "4/hour"
    first, second = token_client(alice, "a"), token_client(alice, "b")
    session = APIClient()
    session.force_login(alice)
    statuses = [client.get("/api/v1/models/").status_code for client in (first, second) * 2]
    assert statuses == [200, 200, 200, 200]
    assert first.get("/api/v1/models/").status_code == 429
    throttled = session.get("/api/v1/models/")
    assert throttled.status_code == 429
    assert int(throttled.headers["Retry-After"]) <= 3600
    assert token_client(dave, "d").get("/api/v1/models/").status_code == 200


def test_the_rates_are_counted_in_the_shared_redis_cache(settings, alice):
    settings.CACHES = {
        "default": {
            "BACKEND": "mlops_portal.core.cache.RedisCache",
            "LOCATION": settings.REDIS_URL,
            "KEY_PREFIX": "throttle-test",
        }
    }
    settings.API_THROTTLE_TOKEN_RATE = "2/minute"
    from django.core.cache import caches

    caches["default"].clear()
    api = token_client(alice, "redis")
    assert [api.get("/api/v1/models/").status_code for _ in range(3)] == [200, 200, 429]
    # Atomic increments in Redis itself (one script, one round trip), with the window's expiry.
    raw = redis.Redis.from_url(settings.REDIS_URL)
    (key,) = raw.keys("throttle-test:*throttle:token:*")
    assert (raw.get(key), 0 < raw.ttl(key) <= 61) == (b"3", True)
    caches["default"].clear()


def test_the_rate_limit_fails_open_when_the_cache_is_down(settings, alice):
    settings.CACHES = {
        "default": {
            "BACKEND": "mlops_portal.core.cache.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
            "OPTIONS": {"socket_connect_timeout": 0.2},
        }
    }
    settings.API_THROTTLE_TOKEN_RATE = "1/minute"
    api = token_client(alice, "down")
    assert [api.get("/api/v1/models/").status_code for _ in range(2)] == [200, 200]


@pytest.mark.parametrize("value", ["600", "10/fortnight", "0/minute", "many/minute"])
def test_a_bad_rate_stops_start_up_naming_the_variable(monkeypatch, value):
    monkeypatch.setenv("API_THROTTLE_TOKEN_RATE", value)
    with pytest.raises(ImproperlyConfigured, match="API_THROTTLE_TOKEN_RATE must be a rate"):
        env_rate("API_THROTTLE_TOKEN_RATE", "600/minute")


def test_off_lifts_a_limit(monkeypatch):
    monkeypatch.setenv("API_THROTTLE_USER_RATE", "off")
    assert env_rate("API_THROTTLE_USER_RATE", "1200/minute") is None
    monkeypatch.setenv("API_THROTTLE_USER_RATE", "50/Hour")
    assert env_rate("API_THROTTLE_USER_RATE", "1200/minute") == "50/Hour"
