"""The portal's Redis cache backend keeps one redis-py client per server for the process,
against a real Redis; values and counters behave as with Django's own backend."""

from mlops_portal.core.cache import RedisCache


def cache_at(redis_url: str) -> RedisCache:
    return RedisCache(redis_url, {"KEY_PREFIX": "cache-test"})


def test_every_call_reuses_one_client_and_values_round_trip(settings):
    cache = cache_at(settings.REDIS_URL)
    cache.clear()
    first = cache._cache.get_client(write=True)
    cache.set("answer", {"n": 42}, timeout=30)
    assert cache.add("count", 0, timeout=30) and cache.incr("count") == 1
    assert cache.get("answer") == {"n": 42} and cache.get("count") == 1
    assert cache._cache.get_client(write=False) is first  # one server: one client for all
    cache.clear()


def test_the_settings_choose_it_for_a_redis_cache_url():
    from mlops_portal.settings import cache_settings

    assert (
        cache_settings("redis://127.0.0.1:6379/3")["BACKEND"]
        == "mlops_portal.core.cache.RedisCache"
    )
