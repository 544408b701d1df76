"""Drift: the hourly job that compares each live version's recent inputs and predictions
with its reference, and what the drift alert rules read.

For every version live on some target, the job reads the logged rows of the last
DRIFT_WINDOW_MINUTES (`LoggedPrediction`, one query, the JSON cast to text and parsed in one
go), and with at least DRIFT_MIN_ROWS of them scores every feature against the version's
`DriftReference` (PSI, plus KS or chi-squared: `monitoring.drift`) and the predictions
against the version's first scored window. The figures are `DriftScore` rows; the version
page charts them and the drift rules read them.

numpy, pandas and scipy (`monitoring.drift`) are imported by the job's functions only: the
web process reads the figures (pages, rules) and runs without the ML stack."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

import orjson
from django.conf import settings
from django.db import connection
from django.db.models import Max, TextField
from django.db.models.functions import Cast
from django.utils import timezone

from deployments import reference
from deployments.models import Deployment, ModelVersion
from monitoring.choices import (
    DriftMethod,
    DriftStatus,
    DriftSubject,
    ReferenceSource,
    RuleMetric,
)
from monitoring.models import DriftReference, DriftScore, LoggedPrediction

if TYPE_CHECKING:
    import numpy
    import pandas

TESTS = {"ks": DriftMethod.KS, "chi2": DriftMethod.CHI2}
SCALARS = {int, float, str, bool, type(None)}


# --- the job -----------------------------------------------------------------------------


def _maths():
    """The drift arithmetic (numpy, scipy), imported when the job first needs it."""
    from monitoring import drift

    return drift


def compute_drift(now=None) -> dict[str, int]:
    """The beat job: score every live version's last window; return how many versions were
    scored and how many skipped (too few rows, or no reference)."""
    now = (now or timezone.now()).replace(second=0, microsecond=0)
    version_ids = sorted(set(Deployment.objects.live().values_list("version_id", flat=True)))
    scored = sum(bool(score_version(version_id, now)) for version_id in version_ids)
    return {"drift_scored": scored, "drift_skipped": len(version_ids) - scored}


def score_version(version_id: int, now) -> int:
    """Score one version's window ending at `now`; return how many DriftScore rows were
    written (0: too few rows, no usable reference, or this window was already scored)."""
    start = now - timedelta(minutes=settings.DRIFT_WINDOW_MINUTES)
    features, predictions = window_rows(version_id, start, now)
    if len(features) < settings.DRIFT_MIN_ROWS:
        return 0
    ref = reference_for(ModelVersion.objects.get(pk=version_id))
    if ref is None or ref.error:
        return 0
    window = {"version_id": version_id, "window_start": start, "window_end": now}
    scores = _feature_scores(ref.features, features, window)
    scores += _prediction_scores(ref, predictions, window)
    written = DriftScore.objects.bulk_create(scores, ignore_conflicts=True)
    return len(written)


def window_rows(version_id: int, start, end) -> tuple[list, list]:
    """The features and predictions logged for a version in [start, end), in two lists.
    The JSON is read as text through the driver's cursor (no model or JSONField per row)
    and parsed by orjson in one call per column."""
    query = LoggedPrediction.objects.filter(
        version_id=version_id, logged_at__gte=start, logged_at__lt=end
    ).values_list(Cast("features", TextField()), Cast("prediction", TextField()))
    sql, params = query.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    if not rows:
        return [], []
    features, predictions = zip(*rows, strict=True)
    return orjson.loads(f"[{','.join(features)}]"), orjson.loads(f"[{','.join(predictions)}]")


def _feature_scores(summaries, features, window) -> list[DriftScore]:
    matrix = _matrix(features, len(summaries))
    scores = []
    for index, summary in enumerate(summaries):
        result = (
            _maths().score(summary, _column(matrix[:, index], summary)) if len(matrix) else None
        )
        if result is not None:
            scores += _rows(result, DriftSubject.FEATURE, summary["name"], window)
    return scores


def _prediction_scores(ref, predictions, window) -> list[DriftScore]:
    """Score the predictions against the first window's; the first window becomes it."""
    import numpy

    scalars = set(map(type, predictions)) <= SCALARS  # the usual case: no list to unwrap
    values = predictions if scalars else [_scalar(p) for p in predictions]
    if ref.prediction is None:
        ref.prediction = _maths().summarise("prediction", values)
        ref.save(update_fields=["prediction"])
        return []
    result = _maths().score(ref.prediction, numpy.asarray(values, dtype=object))
    return _rows(result, DriftSubject.PREDICTION, "", window) if result else []


def _rows(result, subject, feature, window) -> list[DriftScore]:
    common = {**window, "subject": subject, "feature": feature, "rows": result["rows"]}
    significant = (result["p_value"] or 0) < _maths().TEST_P_VALUE
    test_status = DriftStatus.DRIFT if significant else DriftStatus.OK
    return [
        DriftScore(method=DriftMethod.PSI, score=result["psi"],
                   status=DriftStatus(result["status"]), **common),
        DriftScore(method=TESTS[result["test"]], score=result["statistic"] or 0.0,
                   p_value=result["p_value"], status=test_status, **common),
    ]  # fmt: skip


def _matrix(rows, width) -> numpy.ndarray:
    """Rows of `width` values as a 2-D object array; rows of another width (not this
    model's) are left out. Checked with map() over the whole list (C speed) before any
    row is looked at in Python."""
    import numpy

    if set(map(type, rows)) != {list} or set(map(len, rows)) != {width}:
        rows = [row for row in rows if isinstance(row, list) and len(row) == width]
    if not rows:
        return numpy.empty((0, width), dtype=object)
    matrix = numpy.empty((len(rows), width), dtype=object)
    matrix[:] = rows
    return matrix


def _column(values, summary) -> numpy.ndarray:
    """A numeric feature's column as floats (NaN for a missing value, or for text where a
    number belongs); a categorical one as it is."""
    if summary["kind"] != _maths().NUMERIC:
        return values
    try:
        return values.astype(float)
    except (TypeError, ValueError):
        return _maths().as_numbers(values)


def _scalar(prediction):
    """A prediction as one value: a one-element list is its element, other lists and
    objects are their JSON text (a category)."""
    if isinstance(prediction, list) and len(prediction) == 1:
        prediction = prediction[0]
    if isinstance(prediction, list | dict):
        return orjson.dumps(prediction, option=orjson.OPT_SORT_KEYS).decode()
    return prediction


# --- the reference -----------------------------------------------------------------------


def reference_for(version: ModelVersion) -> DriftReference | None:
    """The version's reference summary, built on first use from its reference file (or its
    sample input) and kept; None when it has neither."""
    found = DriftReference.objects.filter(version_id=version.pk).first()
    if found is not None:
        return found
    try:
        frame, source = _reference_frame(version)
    except reference.ReferenceDataError as exc:
        return _store(version, ReferenceSource.FILE, 0, [], error=str(exc)[:500])
    if frame is None:
        return None
    types = _declared_types(version.signature, list(frame.columns))
    summaries = [
        _maths().summarise(str(name), frame[name].tolist(), types.get(str(name), ""))
        for name in frame.columns
    ]
    return _store(version, source, len(frame), summaries)


def _reference_frame(version) -> tuple[pandas.DataFrame | None, str]:
    import pandas

    if version.reference_data:
        with version.reference_data.open("rb") as handle:
            frame = reference.read_table(handle, version.reference_data.name)
        return reference.in_signature_order(frame, version.signature), ReferenceSource.FILE
    sample = version.sample_input
    if not sample or not isinstance(sample, list):
        return None, ""
    if isinstance(sample[0], dict):
        frame = pandas.DataFrame(sample)
    else:
        names = [c.get("name") for c in (version.signature or {}).get("inputs") or []]
        if len(names) != len(sample[0]) or not all(names):
            names = [f"feature_{i + 1}" for i in range(len(sample[0]))]
        frame = pandas.DataFrame(sample, columns=names)
    return frame, ReferenceSource.SAMPLE_INPUT


def _declared_types(signature, names) -> dict[str, str]:
    return {
        str(column.get("name")): str(column.get("type") or "")
        for column in (signature or {}).get("inputs") or []
        if column.get("name") in names
    }


def _store(version, source, rows, features, error="") -> DriftReference:
    ref, _ = DriftReference.objects.get_or_create(
        version_id=version.pk,
        defaults={"source": source, "rows": rows, "features": features, "error": error},
    )
    return ref


# --- reading -----------------------------------------------------------------------------


def latest_table(version_id: int) -> list[dict]:
    """The version's latest window: one row per feature (then the predictions) with its
    PSI, status, test and p-value; the most drifted first."""
    latest = DriftScore.objects.filter(version_id=version_id, method=DriftMethod.PSI).aggregate(
        end=Max("window_end")
    )["end"]
    if latest is None:
        return []
    rows: dict[tuple, dict] = {}
    for score in DriftScore.objects.filter(version_id=version_id, window_end=latest):
        key = (score.subject, score.feature)
        row = rows.setdefault(key, {"feature": score.feature or "prediction",
                                    "subject": score.subject, "window_end": latest,
                                    "rows": score.rows})  # fmt: skip
        if score.method == DriftMethod.PSI:
            row.update(psi=score.score, status=score.status)
        else:
            row.update(test=score.get_method_display(), statistic=score.score,
                       p_value=score.p_value)  # fmt: skip
    return sorted(rows.values(), key=lambda r: (r["subject"] != DriftSubject.FEATURE,
                                                -r.get("psi", 0)))  # fmt: skip


def psi_series(version_id: int, since) -> list[tuple]:
    """(window_end, feature or "prediction", PSI) since a time, oldest first."""
    return [
        (end, feature or "prediction", value)
        for end, feature, value in DriftScore.objects.filter(
            version_id=version_id, method=DriftMethod.PSI, window_end__gte=since
        )
        .order_by("window_end", "feature")
        .values_list("window_end", "feature", "score")
    ]


def measure_rule(rule, deployment_id: int, now) -> dict | None:
    """A drift rule's value on one deployment's version: the PSI (of its feature, of the
    most drifted feature, or of the predictions) that held over every window ending in the
    last `for_minutes` (their lowest), or, with none that recent, of the latest window if
    it is at most two DRIFT_INTERVAL_SECONDS old. None without such a window."""
    version_id = Deployment.objects.values_list("version_id", flat=True).get(pk=deployment_id)
    stale = timedelta(seconds=2 * settings.DRIFT_INTERVAL_SECONDS)
    span = timedelta(minutes=rule.for_minutes)
    scores = DriftScore.objects.filter(
        version_id=version_id, method=DriftMethod.PSI, window_end__gt=now - max(stale, span),
        window_end__lte=now,
    )  # fmt: skip
    if rule.metric == RuleMetric.DRIFT_PREDICTION:
        scores = scores.filter(subject=DriftSubject.PREDICTION)
    else:
        scores = scores.filter(subject=DriftSubject.FEATURE)
    if rule.metric == RuleMetric.DRIFT_FEATURE:
        scores = scores.filter(feature=rule.feature)
    windows = list(scores.values("window_end").annotate(value=Max("score")).order_by("-window_end"))
    if not windows:
        return None
    recent = [w["value"] for w in windows if w["window_end"] > now - span]
    value = min(recent) if recent else windows[0]["value"]
    return {"deployment": deployment_id, "version": version_id, "value": value,
            "windows": len(recent) or 1, "window_end": windows[0]["window_end"].isoformat(),
            "minutes": rule.for_minutes}  # fmt: skip
