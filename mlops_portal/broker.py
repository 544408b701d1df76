"""Kombu's Redis transport, keeping one Redis client per channel instead of one per message,
and a quick way to send a plain job that Celery has sent once already.

Kombu builds a new `redis.Redis` for every command it sends outside a pipeline, publishing
included, and each one fills a table of ~170 response callbacks: about a quarter of what
enqueueing a job costs the web process. The client is a thin, thread-safe handle on the
channel's connection pool, so one per pool serves every publish the same way.

`QuickSender` is for the outbox's hot path (one job per registered version): Celery's
`send_task` routes, builds headers, acquires a producer and encodes the message anew on
every call, about two thirds of what a job cost the web process. The first send of a task
goes through Celery as ever, and the transport keeps the message it pushed; later sends of
that task copy it with their own id, arguments, request id and time, and push it with the
same client to the same list. Anything that message cannot stand for (a countdown, another
publish signal handler than ours, a replaced `send_task`) goes through Celery."""

import base64
import os
import threading
import uuid

import orjson
from celery import Celery
from celery.signals import after_task_publish, before_task_publish
from kombu.transport import redis

# Celery's own send_task: a process where it is replaced (the tests record sends through
# it) does not go around it.
CELERY_SEND_TASK = Celery.send_task

_capture = threading.local()  # .pushed: where Channel._put notes what it pushes


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

    def _put(self, queue, message, **kwargs):
        pushed = getattr(_capture, "pushed", None)
        plain = "_publish_batch" not in kwargs and not (self._expires and queue in self._expires)
        if pushed is not None and plain:  # one LPUSH of this message: QuickSender can copy it
            key = self._q_for_pri(queue, self._get_message_priority(message, reverse=False))
            pushed.append((key, orjson.loads(orjson.dumps(message)), self._create_client()))
        return super()._put(queue, message, **kwargs)


class Transport(redis.Transport):
    Channel = Channel


class QuickSender:
    """Send jobs of one app, copying the message Celery pushed for the task's first job."""

    def __init__(self, app):
        self.app = app
        # (task, queue, process, thread) -> (list key, message, body after its args, client)
        self._sent_before: dict[tuple, tuple] = {}

    def send(
        self, task: str, args: list, queue: str, request_id: str, countdown: float = 0
    ) -> None:
        """Send `task(*args)` to `queue` ("" for its route) after `countdown` seconds, with
        `request_id` ("": a new one) for the job's log lines; raise what the broker raised."""
        key = (task, queue, os.getpid(), threading.get_ident())
        sent_before = self._sent_before.get(key)
        if countdown > 0 or sent_before is None or not self._usable():
            self._send_through_celery(key, task, args, queue, request_id, countdown)
            return
        list_key, message, body_rest, client = sent_before
        try:
            client.lpush(list_key, orjson.dumps(_copy(message, body_rest, args, request_id)))
        except Exception:
            del self._sent_before[key]  # after a broker error, Celery's way sets up anew
            raise

    def _send_through_celery(self, key, task, args, queue, request_id, countdown) -> None:
        """`send` through Celery's send_task, keeping the message it pushed when a later
        job of the task can copy it."""
        from mlops_portal.core import logs  # not at import: the broker loads early

        # No queue declaration (Redis queues need none; kombu would copy and bind the queue
        # on every publish to find it declared already) and the arguments' repr given, not
        # worked out with saferepr: a fifth of what sending a message cost the web process.
        options = {"declare": [], "argsrepr": repr(args), "kwargsrepr": "{}"}
        if request_id:
            options["headers"] = {logs.JOB_REQUEST_ID_HEADER: request_id}
        if queue:
            options["queue"] = queue
        if countdown > 0:  # a message of its own: its ETA is no other job's
            self.app.send_task(task, args=list(args), retry=False, countdown=countdown, **options)
            return
        _capture.pushed = pushed = []
        try:
            self.app.send_task(task, args=list(args), retry=False, **options)
        finally:
            _capture.pushed = None
        if len(pushed) != 1 or not self._usable():
            return
        list_key, message, client = pushed[0]
        if message["properties"].get("body_encoding") != "base64":
            return
        # The body is [args, kwargs, embed]: this job's args, the rest kept as sent.
        _args, *body_rest = orjson.loads(base64.b64decode(message["body"]))
        self._sent_before[key] = (list_key, message, body_rest, client)

    def _usable(self) -> bool:
        """Only our stamp (`mlops_portal.celery.stamp_message`) and Celery's own send_task,
        outside a running task (whose id Celery writes into the message as its parent):
        anything else could change a message from one send to the next."""
        return (
            self.app.current_worker_task is None
            and Celery.send_task is CELERY_SEND_TASK
            and len(before_task_publish.receivers) == 1
            and not after_task_publish.receivers
        )


def _copy(message: dict, body_rest: list, args: list, request_id: str) -> dict:
    """`message` with a new task id and delivery tag, `args` and `request_id`, stamped as
    Celery's send would have it stamped for this job."""
    from mlops_portal.celery import stamp_message  # not at import: the broker loads early
    from mlops_portal.core import logs

    task_id = str(uuid.uuid4())
    argsrepr = repr(args)
    headers = {
        **message["headers"],
        "id": task_id,
        "root_id": task_id,
        "argsrepr": argsrepr,
        logs.JOB_REQUEST_ID_HEADER: request_id,
    }
    stamp_message(headers=headers)  # the one receiver of before_task_publish (_usable)
    properties = {
        **message["properties"],
        "correlation_id": task_id,
        "argsrepr": argsrepr,
        "delivery_tag": str(uuid.uuid4()),
    }
    body = base64.b64encode(orjson.dumps([list(args), *body_rest])).decode()
    return {**message, "body": body, "headers": headers, "properties": properties}
