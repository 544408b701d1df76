"""The prediction log: a sample of the requests a model server answers, with their
predictions, appended to a Redis stream that the portal's worker collects
(`monitoring.services.predictions.collect_predictions`).

Each answered request is sampled with probability `rate` (PREDICTION_SAMPLE_RATE). Sampling
only puts the request on a bounded in-memory queue; a background thread encodes the rows and
writes them with XADD … MAXLEN ~ maxlen, so `/predict` never waits for Redis. When the queue
is full (Redis slow or down) the entry is dropped and counted, never retried: the log is a
sample, and a model server must keep answering whatever happens to the portal's Redis.

One stream entry per request:

    deployment, version   the portal's ids (the server's --deployment-id, --version-id)
    prediction_id         what the response carried (body and X-Prediction-ID)
    at                    seconds since the epoch, when the server answered
    rows, predictions     JSON lists: the request's rows (features) and the model's outputs

No Django here (the model server imports none)."""

import json
import queue
import random
import threading
import time

DEFAULT_STREAM = "mlops:predictions"
DEFAULT_MAXLEN = 100_000
QUEUE_SIZE = 10_000
WRITE_BATCH = 200  # entries per pipeline round trip
RETRY_SECONDS = 1.0  # after a Redis error, before the next try


class PredictionLog:
    """Samples requests onto a bounded queue that a daemon thread writes to Redis.

    `counts(outcome, n)` is told of "sampled", "written" and "dropped" entries (the server's
    metrics); `client` is a redis.Redis, or None to open one from `url` lazily."""

    def __init__(self, *, url: str, stream: str, maxlen: int, rate: float, deployment_id: int,
                 version_id: int, counts=None, client=None,
                 queue_size: int = QUEUE_SIZE):  # fmt: skip
        self.url, self.stream, self.maxlen, self.rate = url, stream, maxlen, rate
        self.deployment_id, self.version_id = deployment_id, version_id
        self.counts = counts or (lambda outcome, n=1: None)
        self.client = client
        self.queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self.random = random.Random()
        self.thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        if self.enabled:
            self.thread.start()

    @property
    def enabled(self) -> bool:
        return self.rate > 0 and bool(self.url or self.client)

    def maybe_log(self, prediction_id: str, rows, predictions) -> bool:
        """Sample one answered request; True when it was queued for the log. `rows` are
        the request's instances, or a callable returning them (decoded in the thread)."""
        if not self.enabled or self.random.random() >= self.rate:
            return False
        entry = (prediction_id, time.time(), rows, predictions)
        try:
            self.queue.put_nowait(entry)
        except queue.Full:
            self.counts("dropped")
            return False
        self.counts("sampled")
        return True

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything queued so far is written or dropped (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while self.queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)
        return not self.queue.unfinished_tasks

    # --- the writer thread ---------------------------------------------------------------

    def _run(self) -> None:
        while True:
            batch = [self.queue.get()]
            while len(batch) < WRITE_BATCH:
                try:
                    batch.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            try:
                unencodable = self._write(batch)
                self.counts("written", len(batch) - unencodable)
                if unencodable:
                    self.counts("dropped", unencodable)
            except Exception:  # Redis down, slow or refusing: drop the batch, keep serving
                self.counts("dropped", len(batch))
                time.sleep(RETRY_SECONDS)
            finally:
                for _ in batch:
                    self.queue.task_done()

    def _write(self, batch) -> int:
        """XADD the batch in one round trip; return how many entries could not be encoded
        (a row or prediction that JSON cannot carry, e.g. NaN) and were left out."""
        client = self._client()
        pipeline = client.pipeline(transaction=False)
        unencodable = 0
        for prediction_id, at, rows, predictions in batch:
            try:
                rows = rows() if callable(rows) else rows
                fields = {
                    "deployment": self.deployment_id,
                    "version": self.version_id,
                    "prediction_id": prediction_id,
                    "at": f"{at:.6f}",
                    "rows": json.dumps(rows, allow_nan=False),
                    "predictions": json.dumps(predictions, allow_nan=False),
                }
            except Exception:  # NaN, a type JSON cannot carry, V2 inputs that do not decode
                unencodable += 1
                continue
            pipeline.xadd(self.stream, fields, maxlen=self.maxlen, approximate=True)
        pipeline.execute()
        return unencodable

    def _client(self):
        if self.client is None:
            import redis  # only when logging is on: the server starts without it otherwise

            self.client = redis.Redis.from_url(self.url, socket_connect_timeout=2, socket_timeout=5)
        return self.client


def from_environment(environ, deployment_id, version_id, counts=None) -> PredictionLog:
    """The log the local backend asks for through the environment: PREDICTION_SAMPLE_RATE
    (0 … 1; 0 or unset turns logging off), PREDICTION_LOG_URL (Redis), PREDICTION_LOG_STREAM,
    PREDICTION_LOG_MAXLEN. Off, too, when the server was started without a deployment id."""
    try:  # the portal checked both; a hand-started server with bad values logs nothing
        rate = float(environ.get("PREDICTION_SAMPLE_RATE") or 0)
        maxlen = int(environ.get("PREDICTION_LOG_MAXLEN") or DEFAULT_MAXLEN)
    except ValueError:
        rate, maxlen = 0.0, DEFAULT_MAXLEN
    if deployment_id is None or version_id is None:
        rate = 0.0
    return PredictionLog(
        url=environ.get("PREDICTION_LOG_URL", ""),
        stream=environ.get("PREDICTION_LOG_STREAM") or DEFAULT_STREAM,
        maxlen=maxlen,
        rate=min(max(rate, 0.0), 1.0),
        deployment_id=deployment_id or 0,
        version_id=version_id or 0,
        counts=counts,
    )
