"""Monitoring's cards on other apps' pages, so those apps need not import monitoring."""

from datetime import timedelta

from django import template
from django.utils import timezone

from monitoring import serving_series
from monitoring.behaviour import production_stats
from monitoring.charts import drift_chart, live_quality_chart, serving_chart
from monitoring.choices import ModelTask
from monitoring.models import AlertRule, DriftReference
from monitoring.services import drift, quality

register = template.Library()


@register.inclusion_tag("monitoring/_production_scorecard.html")
def production_scorecard(version) -> dict:
    """How `version` behaved while live on production targets (the version page)."""
    return {"production": production_stats(version)}


@register.inclusion_tag("monitoring/_serving_panel.html")
def deployment_serving(deployment) -> dict:
    """The deployment page: its serving metrics over the last day, and its first hour
    beside the previous version's last day."""
    points = serving_series.deployment_points(deployment.pk)
    comparison = serving_series.before_after(deployment)
    return {
        "chart": serving_chart(points, "Serving metrics, last 24 h (per minute)"),
        "comparison": comparison,
        "rows": comparison_rows(comparison) if comparison else [],
        "deployment": deployment,
    }


@register.inclusion_tag("monitoring/_alert_rules.html")
def model_alert_rules(model) -> dict:
    """The model page: the alert rules on its live deployments' serving metrics."""
    return {"rules": list(AlertRule.objects.filter(model=model).order_by("name"))}


@register.inclusion_tag("monitoring/_serving_panel.html")
def version_serving(version) -> dict:
    """The version page: its serving metrics over the last week, all deployments summed."""
    points = serving_series.version_points(version.pk)
    return {"chart": serving_chart(points, "Serving metrics, last 7 days (per hour)")}


@register.inclusion_tag("monitoring/_live_quality.html")
def version_live_quality(version) -> dict:
    """The version page: live accuracy (or MAE) from feedback labels, per hour over the last
    week, beside the offline metric it was registered with."""
    hours = quality.version_hours(version.pk, timezone.now() - timedelta(days=7))
    regression = quality.task_of(version) == ModelTask.REGRESSION
    offline = quality.offline_metric(version)
    labelled = sum(h.labelled for h in hours)
    if regression:
        errors = sum(h.absolute_error or 0 for h in hours)
        live = f"{errors / labelled:.3g}" if labelled else None
    else:
        live = f"{sum(h.correct for h in hours) / labelled * 100:.1f} %" if labelled else None
    return {
        "chart": live_quality_chart(hours, regression, offline),
        "metric": "MAE" if regression else "accuracy",
        "live": live,
        "labelled": labelled,
        "offline": offline,
    }


@register.inclusion_tag("monitoring/_drift_panel.html")
def version_drift(version) -> dict:
    """The version page: its latest drift window (feature, PSI, status, test) and PSI over
    the last 7 days."""
    series = drift.psi_series(version.pk, timezone.now() - timedelta(days=7))
    return {
        "rows": drift.latest_table(version.pk),
        "chart": drift_chart(series, "Drift (PSI) per window, last 7 days"),
        "reference": DriftReference.objects.filter(version_id=version.pk).first(),
        "version": version,
    }


def comparison_rows(comparison) -> list[tuple[str, str, str]]:
    """(what, before, after) as text, for the before / after table."""
    before, after = comparison["before"] or {}, comparison["after"]

    def both(key, show):
        return tuple(show(side.get(key)) if side.get(key) is not None else "—"
                     for side in (before, after))  # fmt: skip

    rows = [("Requests / min", *both("per_minute", lambda v: f"{v:.1f}")),
            ("Error rate", *both("error_rate", lambda v: f"{v * 100:.2f} %"))]  # fmt: skip
    rows += [(f"Latency {q}", *both(q, lambda v: f"{v:.1f} ms")) for q in ("p50", "p95", "p99")]
    for label in comparison["labels"]:
        shares = tuple(
            f"{side['shares'][label] * 100:.1f} %" if label in side.get("shares", {}) else "—"
            for side in (before, after)
        )
        rows.append((f"Class {label}", *shares))
    return rows
