from django import forms

from deployments.forms import JSONTextField
from deployments.models import RegisteredModel, Target
from monitoring.choices import CheckKind, Comparison, HttpMethod, RuleMetric, Severity


class CheckForm(forms.Form):
    name = forms.CharField(max_length=200)
    kind = forms.ChoiceField(choices=CheckKind.choices, initial=CheckKind.HTTP, required=False)
    url = forms.CharField(
        max_length=500, label="URL", required=False,
        help_text="HTTP probes: http(s) only, inside HEALTHCHECK_ALLOWED_NETWORKS.",
    )  # fmt: skip
    target = forms.ModelChoiceField(
        queryset=Target.objects.order_by("name"), required=False,
        help_text="Incidents from this check name the target and its likely-cause deployment.",
    )  # fmt: skip
    method = forms.ChoiceField(choices=HttpMethod.choices, initial=HttpMethod.GET)
    interval_seconds = forms.IntegerField(initial=30, min_value=5)
    timeout_seconds = forms.FloatField(initial=5.0, min_value=0.1)
    expected_statuses = JSONTextField(empty=[200], required=False, initial="[200]")
    latency_threshold_ms = forms.FloatField(required=False, help_text="Slower counts as failed.")
    failures_before_down = forms.IntegerField(initial=3, min_value=1)
    period_seconds = forms.IntegerField(
        required=False, min_value=1, help_text="Heartbeats: how often the job runs (seconds)."
    )
    cron_expression = forms.CharField(
        required=False, max_length=100,
        help_text="Heartbeats, instead of a period: when the job runs, e.g. 0 2 * * *.",
    )  # fmt: skip
    cron_timezone = forms.CharField(required=False, max_length=64, initial="UTC",
                                    help_text="The cron expression's time zone.")  # fmt: skip
    grace_seconds = forms.IntegerField(
        required=False, min_value=0, help_text="Heartbeats: how late a ping may be (seconds)."
    )

    def clean_kind(self):
        return self.cleaned_data.get("kind") or CheckKind.HTTP


class SnoozeForm(forms.Form):
    hours = forms.FloatField(min_value=0.1, max_value=336, initial=4)
    reason = forms.CharField(max_length=300)


class IncidentForm(forms.Form):
    title = forms.CharField(max_length=300)
    severity = forms.ChoiceField(choices=Severity.choices, initial=Severity.SEV3)
    target = forms.ModelChoiceField(queryset=Target.objects.order_by("name"), required=False)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 4}))


class NoteForm(forms.Form):
    note = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    severity = forms.ChoiceField(choices=Severity.choices, required=False)


class AlertRuleForm(forms.Form):
    """Create or edit an alert rule (alerts.create_rule / update_rule); the scope (model or
    target) is chosen once, at creation."""

    name = forms.CharField(max_length=200)
    model = forms.ModelChoiceField(
        queryset=RegisteredModel.objects.order_by("name"), required=False,
        help_text="Watch this model's live deployments on every target…",
    )  # fmt: skip
    target = forms.ModelChoiceField(
        queryset=Target.objects.order_by("name"), required=False,
        help_text="…or whatever is live on this target (one of the two).",
    )  # fmt: skip
    metric = forms.ChoiceField(choices=RuleMetric.choices)
    feature = forms.CharField(
        max_length=200, required=False,
        help_text="Drift of one feature only: the feature's name (a reference data column).",
    )  # fmt: skip
    comparison = forms.ChoiceField(choices=Comparison.choices, initial=Comparison.GT)
    threshold = forms.FloatField(
        min_value=0, help_text="% for error rate and drop, ms for latency, PSI for drift "
        "(0.1: a shift worth a look, 0.25: drifted).",
    )  # fmt: skip
    for_minutes = forms.IntegerField(
        min_value=1, max_value=1440, initial=5,
        help_text="Serving metrics: over the last N minutes. Drift: held in every drift "
        "window of the last N minutes.",
    )  # fmt: skip
    severity = forms.ChoiceField(choices=Severity.choices, initial=Severity.SEV3)
    enabled = forms.BooleanField(required=False, initial=True)


class MuteForm(forms.Form):
    reason = forms.CharField(max_length=300, help_text="Kept on the change record.")
