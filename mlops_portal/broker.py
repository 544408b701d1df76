"""Kombu's Redis transport, keeping one Redis client per channel instead of one per message.

Kombu builds a new `redis.Redis` for every command it sends outside a pipeline, publishing
included, and each one fills a table of ~170 response callbacks: about a quarter of what
enqueueing a job costs the web process. The client is a thin, thread-safe handle on the
channel's connection pool, so one per pool serves every publish the same way."""

from kombu.transport import redis


class Channel(redis.Channel):
    _client_pool = None  # the pool the kept client was made for
    _kept_client = None

    def _create_client(self, asynchronous=False):
        if asynchronous:  # the worker's polling client is already made once (Channel.client)
            return super()._create_client(asynchronous=True)
        # After a fork or a reconnection kombu swaps in a new pool; the client follows it.
        pool = self.pool
        if self._client_pool is not pool:
            self._kept_client, self._client_pool = super()._create_client(), pool
        return self._kept_client


class Transport(redis.Transport):
    Channel = Channel
