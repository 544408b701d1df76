"""Django's Redis cache, with one redis-py client per server kept for the life of the
process, where Django's RedisCacheClient builds a new `redis.Redis` for every cache call.
Measured with bench/instructions.py the saving is small (the token failure check's one
GET per API request); the rate limits keep their own script (core/api/throttling.py). A
client is thread-safe, and the pool under it reconnects after a fork, as before."""

from django.core.cache.backends.redis import RedisCache as DjangoRedisCache
from django.core.cache.backends.redis import RedisCacheClient


class ReusedClientRedisCacheClient(RedisCacheClient):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._clients = {}

    def get_client(self, key=None, *, write=False):
        index = self._get_connection_pool_index(write)
        client = self._clients.get(index)
        if client is None:
            if index not in self._pools:
                self._pools[index] = self._pool_class.from_url(
                    self._servers[index], **self._pool_options
                )
            client = self._clients[index] = self._client(connection_pool=self._pools[index])
        return client


class RedisCache(DjangoRedisCache):
    def __init__(self, server, params):
        super().__init__(server, params)
        self._class = ReusedClientRedisCacheClient
