"""Logged traffic for drift tests: rows written to LoggedPrediction as the prediction-log
collector writes them (one row per input row, the model's own predictions)."""

import io
import uuid
from datetime import timedelta

import joblib
import numpy
from django.core.files.base import ContentFile
from sklearn.datasets import load_iris

from monitoring.models import LoggedPrediction
from tests.factories import iris_artifact

IRIS_COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def iris_reference_csv() -> ContentFile:
    """The iris data set (150 rows) as a CSV upload with a header row."""
    lines = [",".join(IRIS_COLUMNS)]
    lines += [",".join(f"{v:g}" for v in row) for row in load_iris().data]
    return ContentFile("\n".join(lines).encode(), name="reference.csv")


def iris_traffic(n: int, seed: int, shift: dict | None = None) -> numpy.ndarray:
    """`n` inputs like the iris data (rows drawn from it, a little noise); `shift` adds
    to columns by name, e.g. {"petal_length": 3.0}."""
    rng = numpy.random.default_rng(seed)
    data = load_iris().data
    rows = data[rng.integers(0, len(data), n)] + rng.normal(0, 0.05, (n, 4))
    for name, amount in (shift or {}).items():
        rows[:, IRIS_COLUMNS.index(name)] += amount
    return rows.round(2)


def log_traffic(deployment, rows, start, end) -> int:
    """Write `rows` as logged predictions of `deployment`, spread over [start, end), with
    the iris model's predictions for them; return how many."""
    model = joblib.load(io.BytesIO(iris_artifact()[0]))
    predictions = model.predict(rows).tolist()
    step = (end - start) / len(rows)
    pairs = enumerate(zip(rows.tolist(), predictions, strict=True))
    logged = [_logged(deployment, start + step * i, row, p) for i, (row, p) in pairs]
    LoggedPrediction.objects.bulk_create(logged, batch_size=2000)
    return len(rows)


def _logged(deployment, at, features, prediction) -> LoggedPrediction:
    return LoggedPrediction(
        deployment=deployment, version_id=deployment.version_id,
        prediction_id=uuid.uuid4().hex, row=0, logged_at=at, features=features,
        prediction=prediction,
    )  # fmt: skip


HOUR = timedelta(hours=1)
