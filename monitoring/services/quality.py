"""Feedback and live quality: ground-truth labels that arrive after the prediction are
joined to the logged predictions (LoggedPrediction.label), rolled up per version and hour
(LiveQuality), and measured for alert rules (live_accuracy, live_mae).

A version is a classifier (its live metric is accuracy: the share of labelled predictions
equal to their label) or a regressor (mean absolute error), as its registration metrics say
(`task_of`)."""

import math
from datetime import timedelta

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Count, F, FloatField, Q, Sum
from django.db.models.functions import Abs, Cast, TruncHour
from django.utils import timezone

from mlops_portal.core import outbox
from mlops_portal.core.policy import require
from monitoring.choices import ModelTask, RuleMetric
from monitoring.models import LiveQuality, LoggedPrediction

MAX_LABELS = 1000  # per feedback request
REGRESSION_METRICS = ("mae", "rmse", "mse", "r2", "mape")
ROLL_UP_DAYS = 31  # hours older than this are not recomputed (their rows may be pruned)


def task_of(version) -> str:
    """Classification unless the version's registration metrics are a regressor's (mae,
    rmse, mse, r2, mape) and not accuracy."""
    names = {name.lower() for name in (version.metrics or {})}
    if "accuracy" not in names and names & set(REGRESSION_METRICS):
        return ModelTask.REGRESSION
    return ModelTask.CLASSIFICATION


def offline_metric(version) -> tuple[str, float] | None:
    """The registration metric the live one is charted beside: (name, value) or None."""
    metrics = {name.lower(): value for name, value in (version.metrics or {}).items()}
    wanted = ("accuracy",) if task_of(version) == ModelTask.CLASSIFICATION else ("mae",)
    for name in wanted:
        if isinstance(metrics.get(name), int | float):
            return name, float(metrics[name])
    return None


# --- feedback ----------------------------------------------------------------------------


def record_feedback(actor, deployment, labels) -> int:
    """Record ground-truth labels for predictions `deployment` answered and the portal
    logged: `labels` is a list of {"prediction_id", "row" (default 0), "label"}. All or
    nothing: an unknown prediction (not sampled, not collected yet, or pruned) or a bad
    label refuses the whole batch with a ValidationError naming it. A label given again
    replaces the earlier one. Returns how many rows were labelled; the version's live
    quality is rolled up again after the commit."""
    require(actor, "prediction.feedback", deployment)
    wanted = _parse_labels(labels)
    regression = task_of(deployment.version) == ModelTask.REGRESSION
    now = timezone.now()
    with transaction.atomic():
        found = {
            (row.prediction_id, row.row): row
            for row in LoggedPrediction.objects.select_for_update()
            .filter(deployment=deployment, prediction_id__in={pid for pid, _ in wanted})
            .order_by("pk")
        }
        missing = [f"{pid}[{row}]" for pid, row in wanted if (pid, row) not in found]
        if missing:
            shown = ", ".join(missing[:10]) + (
                f" and {len(missing) - 10} more" if len(missing) > 10 else ""
            )
            raise ValidationError({"labels": [
                f"No logged prediction {shown} for deployment #{deployment.pk}: only sampled "
                "predictions are logged (the response's \"logged\" says so), and they are "
                "collected within seconds. Nothing was recorded."
            ]})  # fmt: skip
        changed = []
        for (pid, row_index), label in wanted.items():
            row = found[(pid, row_index)]
            row.label = _label_for(row.prediction, label, regression, f"{pid}[{row_index}]")
            row.labelled_at = now
            changed.append(row)
        LoggedPrediction.objects.bulk_update(changed, ["label", "labelled_at"], batch_size=500)
        outbox.enqueue("monitoring.tasks.roll_up_live_quality", [deployment.version_id])
    return len(changed)


def _parse_labels(labels) -> dict[tuple[str, int], object]:
    """{(prediction id, row): label}, or a ValidationError naming the bad item."""
    if not isinstance(labels, list) or not labels:
        raise ValidationError({"labels": ['Send a non-empty list of {"prediction_id", "label"}.']})
    if len(labels) > MAX_LABELS:
        raise ValidationError({"labels": [f"At most {MAX_LABELS} labels per request."]})
    wanted = {}
    for index, item in enumerate(labels):
        where = f"labels[{index}]"
        if not isinstance(item, dict):
            raise ValidationError({"labels": [f"{where} must be an object."]})
        pid, row, label = item.get("prediction_id"), item.get("row", 0), item.get("label")
        if not isinstance(pid, str) or not 0 < len(pid) <= 64:
            raise ValidationError({"labels": [f"{where}.prediction_id must be the id a "
                                              "prediction answered with."]})  # fmt: skip
        if not isinstance(row, int) or isinstance(row, bool) or row < 0:
            raise ValidationError({"labels": [f"{where}.row must be a whole number ≥ 0."]})
        if not _scalar(label):
            raise ValidationError({"labels": [f"{where}.label must be a class (text, whole "
                                              "number, true/false) or a number."]})  # fmt: skip
        wanted[(pid, row)] = label
    return wanted


def _scalar(value) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, str | int | bool) and (not isinstance(value, str) or len(value) <= 200)


def _label_for(prediction, label, regression: bool, where: str):
    """The label as stored: a regressor's must be a number; a whole-number float given
    for a whole-number class is that class (1.0 → 1), so equality compares like with like."""
    if regression:
        if isinstance(label, bool) or not isinstance(label, int | float):
            raise ValidationError({"labels": [f"{where}: this model is a regressor; the label "
                                              "must be a number."]})  # fmt: skip
        return label
    if isinstance(label, float) and label.is_integer() and isinstance(prediction, int):
        return int(label)
    return label


# --- the roll-up ----------------------------------------------------------------------------


def roll_up(version_ids=None, now=None) -> int:
    """Recompute the hourly LiveQuality of `version_ids` (default: every version with a
    label in the last ROLL_UP_DAYS), in one aggregate query per task; return the hours
    written. Feedback for old predictions lands in old hours, so each run recomputes
    them all rather than adding to them."""
    from deployments.models import ModelVersion

    since = (now or timezone.now()) - timedelta(days=ROLL_UP_DAYS)
    labelled = LoggedPrediction.objects.filter(logged_at__gte=since, label__isnull=False)
    if version_ids is not None:
        labelled = labelled.filter(version_id__in=version_ids)
    ids = set(labelled.order_by().values_list("version_id", flat=True).distinct())
    versions = ModelVersion.objects.filter(pk__in=ids).only("pk", "metrics")
    regressors = [v.pk for v in versions if task_of(v) == ModelTask.REGRESSION]
    hours = list(_hours(labelled.exclude(version_id__in=regressors), regression=False))
    hours += _hours(labelled.filter(version_id__in=regressors), regression=True)
    LiveQuality.objects.bulk_create(
        [LiveQuality(**hour) for hour in hours], update_conflicts=True,
        unique_fields=["version", "hour"], update_fields=["labelled", "correct", "absolute_error"],
    )  # fmt: skip
    return len(hours)


def _hours(rows, regression: bool):
    """Per (version, hour): labelled, correct and (regressors) the summed absolute error."""
    totals = {"labelled": Count("pk"), "correct": Count("pk", filter=Q(label=F("prediction")))}
    if regression:
        error = Abs(Cast("label", FloatField()) - Cast("prediction", FloatField()))
        totals["absolute_error"] = Sum(error)
    grouped = (
        rows.annotate(hour=TruncHour("logged_at")).order_by()
        .values("version_id", "hour").annotate(**totals)
    )  # fmt: skip
    for hour in grouped:
        yield {"absolute_error": None, **hour}


def version_hours(version_id: int, since, until=None) -> list[LiveQuality]:
    """A version's LiveQuality hours from `since`, oldest first (the version page)."""
    hours = LiveQuality.objects.filter(version_id=version_id, hour__gte=since)
    if until is not None:
        hours = hours.filter(hour__lte=until)
    return list(hours.order_by("hour"))


# --- alert rules -----------------------------------------------------------------------------


def measure(metric: str, deployment_id: int, start, now) -> dict | None:
    """Live accuracy (%) or MAE of the deployment's predictions logged in (start, now] that
    have a label; None when none has one yet (or, for MAE, when the model is a classifier)."""
    from deployments.models import ModelVersion

    version = ModelVersion.objects.filter(deployments__pk=deployment_id).only("metrics").first()
    regression = version is not None and task_of(version) == ModelTask.REGRESSION
    if metric == RuleMetric.LIVE_MAE and not regression:
        return None
    rows = LoggedPrediction.objects.filter(
        deployment_id=deployment_id, logged_at__gt=start, logged_at__lte=now,
        label__isnull=False,
    )  # fmt: skip
    if metric == RuleMetric.LIVE_ACCURACY:
        totals = rows.aggregate(
            labelled=Count("pk"), correct=Count("pk", filter=Q(label=F("prediction")))
        )
        if not totals["labelled"]:
            return None
        value = totals["correct"] / totals["labelled"] * 100
    else:
        error = Abs(Cast("label", FloatField()) - Cast("prediction", FloatField()))
        totals = rows.aggregate(labelled=Count("pk"), absolute_error=Sum(error))
        if not totals["labelled"]:
            return None
        value = totals["absolute_error"] / totals["labelled"]
    return {"deployment": deployment_id, **totals, "value": value}
