"""The model server's Prometheus metrics, kept with prometheus-client in a registry of
their own (never the process-wide default one), rendered in the 0.0.4 text format.

    model_server_info{model, version}                  1
    model_server_uptime_seconds                        seconds since the server started
    model_server_requests_total{path, status}          every answered request
    model_server_errors_total                          responses with status >= 400
    model_server_request_duration_seconds{le}          histogram of prediction times
    model_server_predictions_total{label}              predictions made, per class label
    model_server_prediction_log_total{outcome}         requests sampled into the prediction
                                                       log, written to it, or dropped

Unknown paths share path="other" (scanners cannot grow the series); V2 infer requests, whatever
the model name in their path, share path="/v2/infer". The histogram times predictions only
(/predict and V2 infer), whatever their status, since health checks would drown the latency
users see.
Prediction labels are the class a classifier returned; past MAX_LABELS distinct labels, or
for a regression's non-integer numbers, they are counted as label="other".

With several worker processes on one port (server.py --workers N), `share_between_processes`
switches prometheus-client to its multiprocess mode first: each worker writes its values to
memory-mapped files in a private directory, and a scrape, whichever worker answers it, sums
the files of all of them (a restarted worker's files stay, so counters never go down). Info
and uptime are computed when rendering, the same in both modes. The per-label cap counts
the labels one worker has seen.

The portal's scrape job reads these (monitoring.services.serving); it imports no Django.
"""

import os
import time

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, values
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.metrics_core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

# Seconds; Prometheus' default buckets plus finer ones, since small models answer in ~1 ms.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
MAX_LABELS = 50
OTHER = "other"
PREDICTION_PATHS = ("/predict", "/v2/infer")
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
# The directory of the multiprocess mode's files, once share_between_processes was called.
_shared_directory: str | None = None


def share_between_processes(directory: str) -> None:
    """Keep the values of every Metrics built from now on in files in `directory`, one per
    process, and render the sum of all of them. Call once, before any Metrics is built and
    before the worker processes are forked.

    prometheus-client picks its value class from PROMETHEUS_MULTIPROC_DIR when it is
    imported; this process imported it already, so the class is switched here as well (what
    prometheus-client's own tests do)."""
    global _shared_directory
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    values.ValueClass = values.MultiProcessValue()
    _shared_directory = directory


class Metrics:
    """The metrics of one server. Thread-safe: prometheus-client locks each value.

    `started` is time.monotonic() when the server started serving (now by default); with
    several workers, the first process's, so that every worker reports the same uptime."""

    def __init__(self, model: str, version: int, buckets: tuple[float, ...] = LATENCY_BUCKETS,
                 started: float | None = None):  # fmt: skip
        self.registry = CollectorRegistry(auto_describe=True)
        self.about = ServerInfo(model, version, time.monotonic() if started is None else started)
        self.requests = Counter(
            "model_server_requests", "HTTP requests answered, by path and status.",
            ["path", "status"], registry=self.registry,
        )  # fmt: skip
        self.errors = Counter(
            "model_server_errors", "HTTP responses with a status of 400 or more.",
            registry=self.registry,
        )  # fmt: skip
        self.duration = Histogram(
            "model_server_request_duration_seconds", "Time to answer POST /predict.",
            buckets=buckets, registry=self.registry,
        )  # fmt: skip
        self.predictions = Counter(
            "model_server_predictions", "Predictions made, by class label.",
            ["label"], registry=self.registry,
        )  # fmt: skip
        self.prediction_log = Counter(
            "model_server_prediction_log", "Requests sampled into the prediction log, "
            "written to it, or dropped (queue full, Redis down).",
            ["outcome"], registry=self.registry,
        )  # fmt: skip
        self._labels: set[str] = set()

    def observe(self, path: str, status: int, seconds: float) -> None:
        """Count one answered request; time it when it was a prediction."""
        self.requests.labels(path, str(status)).inc()
        if status >= 400:
            self.errors.inc()
        if path in PREDICTION_PATHS:
            self.duration.observe(seconds)

    def count_logged(self, outcome: str, n: int = 1) -> None:
        """Count prediction-log entries: "sampled", "written" or "dropped"."""
        self.prediction_log.labels(outcome).inc(n)

    def count_predictions(self, predictions) -> None:
        """Count a response's predictions by label (a flat list of classes or numbers)."""
        counts: dict[str, int] = {}
        for prediction in predictions:
            label = self._label_of(prediction)
            counts[label] = counts.get(label, 0) + 1
        for label, n in counts.items():
            self.predictions.labels(label).inc(n)

    def _label_of(self, prediction) -> str:
        if isinstance(prediction, bool):
            label = str(prediction).lower()
        elif isinstance(prediction, int) or (
            isinstance(prediction, float) and prediction.is_integer()
        ):
            label = str(int(prediction))
        elif isinstance(prediction, str):
            label = prediction[:64]
        else:  # a regression's value, a list of probabilities: not a class
            return OTHER
        if label not in self._labels:
            if len(self._labels) >= MAX_LABELS:
                return OTHER
            self._labels.add(label)
        return label

    def render(self) -> bytes:
        if _shared_directory is None:
            return generate_latest(self.registry) + generate_latest(self.about)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=_shared_directory)
        return generate_latest(registry) + generate_latest(self.about)


class ServerInfo:
    """model_server_info and model_server_uptime_seconds: the same in every worker, so
    computed when rendering rather than kept per process."""

    def __init__(self, model: str, version: int, started: float):
        self.model, self.version, self.started = model, str(version), started

    def collect(self):
        info = GaugeMetricFamily("model_server_info", "The model this server serves; always 1.",
                                 labels=["model", "version"])  # fmt: skip
        info.add_metric([self.model, self.version], 1)
        uptime = GaugeMetricFamily("model_server_uptime_seconds",
                                   "Seconds since the server started serving.",
                                   value=time.monotonic() - self.started)  # fmt: skip
        return [info, uptime]
