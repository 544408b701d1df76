"""Alert rules on serving metrics: configuration, muting, and the evaluation job.

A rule watches the live deployments of one model (or of one target). Every minute, after
the scrape, `evaluate_rules` measures each rule's metric over the last `for_minutes`
minutes of each deployment's minute roll-ups:

    error_rate          % of /predict requests answered 5xx
    latency_p95         ms, from the merged latency histogram
    request_rate_drop   % by which requests per minute fell below the hour before
    live_accuracy       % of the predictions logged in the window whose feedback label
                        matches (monitoring.services.quality)
    live_mae            mean absolute error of those predictions (regressors)
    drift_feature       PSI of the named `feature` in the latest drift windows
    drift_max           the highest PSI of any feature in them
    drift_prediction    PSI of the predictions in them
(the drift figures come from the hourly drift job: `services.drift.measure_rule`)

A rule that breaches on any deployment fires: it opens one incident (never two for a rule)
through the incident service, naming the breaching deployment as the likely cause, with
the measurement as evidence, and auto-rollback follows the same rule as for checks (the
target asks for it and the deployment is inside its verification window). A muted rule
opens nothing. Quiet again, its incident is mitigated, then resolved by
`checks.resolve_quiet_incidents` after INCIDENT_QUIET_PERIOD_SECONDS."""

import operator
from datetime import timedelta

from django.core.exceptions import ValidationError
from django.db.models import Sum
from django.utils import timezone

from deployments.models import Deployment
from mlops_portal.core import audit
from mlops_portal.core.policy import require
from monitoring.choices import (
    DRIFT_METRICS,
    UNRESOLVED_STATES,
    Comparison,
    IncidentSource,
    IncidentState,
    Resolution,
    RuleMetric,
    RuleState,
    Severity,
)
from monitoring.models import AlertRule, Incident, ServingRollup
from monitoring.services import checks, drift, incidents, quality
from monitoring.services.serving import merge, quantiles

EDITABLE = ("name", "metric", "comparison", "threshold", "for_minutes", "severity", "enabled",
            "feature")  # fmt: skip
COMPARE = {Comparison.GT: operator.gt, Comparison.GE: operator.ge,
           Comparison.LT: operator.lt, Comparison.LE: operator.le}  # fmt: skip
BASELINE = timedelta(hours=1)  # what a request-rate drop is measured against
LIVE_METRICS = (RuleMetric.LIVE_ACCURACY, RuleMetric.LIVE_MAE)


# --- configuration ---------------------------------------------------------------------


def create_rule(actor, *, name, metric, threshold, model=None, target=None, **options):
    """A rule on `model`'s live deployments, or on what is live on `target`; return it."""
    require(actor, "rule.manage")
    rule = AlertRule(name=(name or "").strip(), metric=metric, threshold=threshold,
                     model=model, target=target, created_by=actor)  # fmt: skip
    _apply(rule, options)
    _validate(rule)
    with audit.acting_as(actor):
        rule.save()
    return rule


def update_rule(actor, rule, **changes) -> AlertRule:
    """Change a rule's condition or severity; the change record keeps old → new."""
    require(actor, "rule.manage", rule)
    _apply(rule, changes)
    _validate(rule)
    with audit.acting_as(actor):
        rule.save()
    return rule


def set_muted(actor, rule, muted: bool, reason: str = "") -> AlertRule:
    """Mute (no incident opens while it fires; the reason is on the change record) or
    unmute a rule."""
    require(actor, "rule.manage", rule)
    reason = (reason or "").strip()
    if muted and not reason:
        raise ValidationError({"reason": ["Say why, so the next on-call knows."]})
    if len(reason) > 300:
        raise ValidationError({"reason": ["Use at most 300 characters."]})
    rule.muted, rule.mute_reason = muted, reason
    with audit.acting_as(actor):
        rule.save(update_fields=["muted", "mute_reason"])
    return rule


def delete_rule(actor, rule) -> None:
    """Delete a rule; its incidents stay (their rule link is cleared)."""
    require(actor, "rule.manage", rule)
    rule.delete()


def _apply(rule, options) -> None:
    for name, value in options.items():
        if name not in EDITABLE:
            raise ValidationError({name: ["This field cannot be changed."]})
        setattr(rule, name, value)


def _validate(rule) -> None:
    errors = {}
    if not rule.name:
        errors["name"] = ["Name the rule, e.g. 'churn error rate'."]
    if (rule.model_id is None) == (rule.target_id is None):
        errors["model"] = ["Give a model or a target (one of them)."]
    if rule.metric not in RuleMetric.values:
        errors["metric"] = [f"Choose one of {', '.join(RuleMetric.values)}."]
    if rule.comparison not in Comparison.values:
        errors["comparison"] = [f"Choose one of {', '.join(Comparison.values)}."]
    if not isinstance(rule.threshold, int | float) or rule.threshold < 0:
        errors["threshold"] = ["A number of 0 or more (%, or ms for latency)."]
    if not isinstance(rule.for_minutes, int) or not 1 <= rule.for_minutes <= 1440:
        errors["for_minutes"] = ["Between 1 minute and a day (1440)."]
    if rule.severity not in Severity.values:
        errors["severity"] = [f"Choose one of {', '.join(Severity.values)}."]
    _validate_feature(rule, errors)
    if errors:
        raise ValidationError(errors)


def _validate_feature(rule, errors) -> None:
    rule.feature = (rule.feature or "").strip()
    if rule.metric == RuleMetric.DRIFT_FEATURE and not rule.feature:
        errors["feature"] = ["Name the feature whose drift this rule watches."]
    elif rule.metric != RuleMetric.DRIFT_FEATURE and rule.feature:
        errors["feature"] = [f"Only {RuleMetric.DRIFT_FEATURE} rules name a feature."]
    elif len(rule.feature) > 200:
        errors["feature"] = ["Use at most 200 characters."]


# --- evaluation --------------------------------------------------------------------------


def evaluate_rules(now=None) -> dict[str, int]:
    """The beat job: evaluate every enabled rule; return how many fire and how many not."""
    now = now or timezone.now()
    firing = 0
    rules = list(AlertRule.objects.filter(enabled=True).select_related("model", "target"))
    for rule in rules:
        firing += evaluate_rule(rule, now)
    return {"firing": firing, "quiet": len(rules) - firing}


def evaluate_rule(rule, now) -> bool:
    """Measure the rule on each live deployment in its scope, store its state, and open,
    reopen or mitigate its incident; return whether it fires."""
    breach, worst = None, None
    for deployment in _in_scope(rule):
        measured = measure(rule, deployment.pk, now)
        if measured is None:
            continue
        if worst is None or measured["value"] > worst["value"]:
            worst = measured
        if COMPARE[rule.comparison](measured["value"], rule.threshold):
            breach = (deployment, measured)
            break
    before = rule.state
    rule.state = RuleState.FIRING if breach else RuleState.OK
    rule.firing_since = (rule.firing_since or now) if breach else None
    rule.last_evaluated_at = now
    rule.last_value = (breach[1] if breach else worst or {}).get("value")
    rule.save(update_fields=["state", "firing_since", "last_evaluated_at", "last_value"])
    _automate_incident(rule, before, breach)
    return breach is not None


def _in_scope(rule):
    live = Deployment.objects.live().select_related("version__model", "target")
    if rule.model_id:
        return live.filter(version__model_id=rule.model_id).order_by("pk")
    return live.filter(target_id=rule.target_id).order_by("pk")


def measure(rule, deployment_id: int, now) -> dict | None:
    """The rule's metric on one deployment over the last `for_minutes` minutes, with the
    figures behind it; None without traffic to judge."""
    if rule.metric in DRIFT_METRICS:
        return drift.measure_rule(rule, deployment_id, now)
    start = (now - timedelta(minutes=rule.for_minutes)).replace(second=0, microsecond=0)
    if rule.metric in LIVE_METRICS:
        return quality.measure(rule.metric, deployment_id, start, now)
    window = ServingRollup.objects.filter(
        deployment_id=deployment_id, resolution=Resolution.MINUTE, bucket_start__gt=start,
        bucket_start__lte=now,
    )  # fmt: skip
    totals = window.aggregate(requests=Sum("requests"), errors=Sum("errors"))
    requests, errors = totals["requests"] or 0, totals["errors"] or 0
    figures = {"deployment": deployment_id, "requests": requests, "errors": errors,
               "minutes": rule.for_minutes}  # fmt: skip
    if rule.metric == RuleMetric.ERROR_RATE:
        return {**figures, "value": errors / requests * 100} if requests else None
    if rule.metric == RuleMetric.LATENCY_P95:
        histogram = {}
        for buckets in window.values_list("latency_buckets", flat=True):
            histogram = merge(histogram, buckets)
        p95 = quantiles(histogram, (0.95,))[0]
        return {**figures, "value": p95} if p95 is not None else None
    before = ServingRollup.objects.filter(
        deployment_id=deployment_id, resolution=Resolution.MINUTE,
        bucket_start__gt=start - BASELINE, bucket_start__lte=start,
    ).aggregate(requests=Sum("requests"))["requests"]  # fmt: skip
    if not before:
        return None
    baseline = before / (BASELINE.total_seconds() / 60)
    rate = requests / rule.for_minutes
    return {**figures, "baseline_per_minute": baseline, "value": (1 - rate / baseline) * 100}


def _automate_incident(rule, before, breach) -> None:
    open_incident = Incident.objects.filter(
        alert_rule=rule, source=IncidentSource.RULE, state__in=UNRESOLVED_STATES
    ).first()
    if breach is None:
        if open_incident and open_incident.state != IncidentState.MITIGATED:
            incidents.system_transition(
                open_incident, IncidentState.MITIGATED,
                f"{rule.name} is quiet: {_describe(rule, rule.last_value)}.",
            )  # fmt: skip
        return
    deployment, measured = breach
    if open_incident is not None:
        if open_incident.state == IncidentState.MITIGATED:
            incidents.system_transition(
                open_incident, IncidentState.OPEN, f"{rule.name} fires again."
            )
        return
    if rule.muted:
        return
    evidence = {**measured, "error": f"{_describe(rule, measured['value'])} on deployment "
                                     f"#{deployment.pk} ({deployment.version})"}  # fmt: skip
    incident = incidents.open_rule_incident(rule, deployment=deployment, evidence=[evidence])
    if incident is not None:
        checks.maybe_roll_back(incident)


def _describe(rule, value) -> str:
    units = {RuleMetric.LATENCY_P95: " ms", RuleMetric.LIVE_MAE: ""}
    unit = units.get(rule.metric, " %")
    unit = "" if rule.metric in DRIFT_METRICS else unit  # PSI has no unit
    shown = "no data" if value is None else f"{value:.2f}{unit}"
    return f"{rule.metric} = {shown} over the last {rule.for_minutes} min " \
           f"(rule: {rule.comparison} {rule.threshold:g}{unit})"  # fmt: skip
