import json

from django import forms
from django.conf import settings

from deployments.choices import (
    QUEUE_POLICY_HELP,
    Backend,
    Environment,
    Flavor,
    QueuePolicy,
    Strategy,
    VersionStatus,
)
from deployments.models import ModelVersion, Target


class JSONTextField(forms.CharField):
    """A textarea holding JSON; cleans to the parsed value."""

    widget = forms.Textarea(attrs={"rows": 3, "class": "font-monospace"})

    def __init__(self, *, empty, **kwargs):
        self.empty = empty
        super().__init__(**kwargs)

    def prepare_value(self, value):
        if isinstance(value, dict | list):
            return json.dumps(value)
        return value

    def clean(self, value):
        text = super().clean(value)
        if not text:
            return self.empty
        try:
            return json.loads(text)
        except ValueError as exc:
            raise forms.ValidationError(f"This is not valid JSON: {exc}") from exc


class TagsField(forms.CharField):
    """Comma-separated tag names; cleans to a list."""

    def prepare_value(self, value):
        if isinstance(value, list | tuple):
            return ", ".join(str(tag) for tag in value)
        return value

    def clean(self, value):
        text = super().clean(value) or ""
        return [part.strip() for part in text.split(",") if part.strip()]


class ModelCreateForm(forms.Form):
    name = forms.CharField(
        max_length=100, help_text="Lowercase letters, digits and hyphens, e.g. churn-classifier."
    )
    team = forms.CharField(max_length=100, required=False)
    tags = TagsField(required=False, help_text="Comma-separated, e.g. tabular, churn.")
    description = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 4}), help_text="Markdown."
    )


class ModelEditForm(forms.Form):
    team = forms.CharField(max_length=100, required=False)
    tags = TagsField(required=False, help_text="Comma-separated.")
    description = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 6}), help_text="Markdown."
    )


class VersionRegisterForm(forms.Form):
    artifact = forms.FileField(
        required=False,
        help_text="A scikit-learn model saved with joblib (.joblib, .pkl), or an MLflow "
        "model folder as a .zip or .tar.gz. "
        f"At most {settings.ARTIFACT_MAX_BYTES // (1024 * 1024)} MB.",
    )
    artifact_uri = forms.CharField(
        required=False,
        label="…or artifact URL",
        help_text="Instead of an upload: an http(s)://, s3://, runs:/ or mlflow-artifacts:/ "
        "URI the workers can fetch.",
    )
    artifact_sha256 = forms.CharField(
        required=False, label="Expected SHA-256", help_text="Optional; checked on validation."
    )
    flavor = forms.ChoiceField(
        choices=[("", "Detect from the artifact"), *Flavor.choices], required=False
    )
    sample_input = JSONTextField(
        empty=None,
        required=False,
        help_text="A few rows the model can predict on, as JSON: [[5.1, 3.5, 1.4, 0.2]]. "
        "An MLflow model saved with an input_example may leave it empty.",
    )
    reference_data = forms.FileField(
        required=False,
        help_text="Optional: rows typical of the training data (CSV with a header row, or "
        "Parquet), the model's columns; live inputs are compared with them for drift.",
    )
    metrics = JSONTextField(
        empty={}, required=False, help_text='Offline metrics as JSON: {"accuracy": 0.95}.'
    )
    params = JSONTextField(
        empty={}, required=False, help_text='Training parameters as JSON: {"C": 1.0}.'
    )
    source_url = forms.CharField(
        required=False, max_length=500, label="Source", help_text="Commit or training-run URL."
    )
    tags = TagsField(required=False, help_text="Comma-separated.")
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}))


class VersionEditForm(forms.Form):
    tags = TagsField(required=False, help_text="Comma-separated.")
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 4}))


class TargetCreateForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="Lowercase, e.g. churn-production.")
    environment = forms.ChoiceField(choices=Environment.choices)
    backend = forms.ChoiceField(choices=Backend.choices, initial=Backend.LOCAL)
    backend_settings = JSONTextField(
        empty={},
        required=False,
        help_text='local: {"startup_timeout_seconds": 60} (optional). webhook: {"url": '
        '"https://cd.example.com/hook", "secret": "16+ characters", "timeout_seconds": 600}. '
        'kserve: {"service_name": "churn", "namespace": "models", "kubeconfig": "<YAML>"} '
        "(see the README for the others).",
    )
    requires_approval = forms.TypedChoiceField(
        choices=[("", "Default: yes for production only"), ("yes", "Yes"), ("no", "No")],
        coerce=lambda value: value == "yes",
        empty_value=None,
        required=False,
    )
    rollback_skips_approval = forms.BooleanField(
        required=False, help_text="An engineer's rollback deploys at once, even here."
    )
    auto_rollback = forms.BooleanField(required=False)
    verification_window_seconds = forms.IntegerField(min_value=0, initial=60)
    queue_policy = forms.TypedChoiceField(
        choices=QueuePolicy.choices,
        initial=QueuePolicy.SUPERSEDE,
        empty_value=QueuePolicy.SUPERSEDE,
        required=False,
        help_text=QUEUE_POLICY_HELP,
    )
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}))


class TargetEditForm(forms.Form):
    environment = forms.ChoiceField(choices=Environment.choices)
    backend_settings = JSONTextField(
        empty={},
        required=False,
        help_text="Secrets are not shown: leave them out to keep the current ones.",
    )
    requires_approval = forms.BooleanField(required=False)
    rollback_skips_approval = forms.BooleanField(
        required=False, help_text="An engineer's rollback deploys at once, even here."
    )
    auto_rollback = forms.BooleanField(required=False)
    verification_window_seconds = forms.IntegerField(min_value=0)
    queue_policy = forms.ChoiceField(choices=QueuePolicy.choices, help_text=QUEUE_POLICY_HELP)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}))


class VersionChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, version):
        return f"{version.model.name} v{version.number}"


class DeploymentRequestForm(forms.Form):
    version = VersionChoiceField(
        queryset=ModelVersion.objects.none(), help_text="Only ready versions can be deployed."
    )
    target = forms.ModelChoiceField(queryset=Target.objects.order_by("name"))
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}))
    change_ticket = forms.URLField(
        required=False, max_length=500, label="Change ticket URL", assume_scheme="https"
    )
    strategy = forms.ChoiceField(
        choices=Strategy.choices, initial=Strategy.ALL_AT_ONCE, required=False
    )
    canary_steps = forms.CharField(
        required=False, label="Canary steps (% of the traffic)",
        help_text="Increasing percentages, each held then analysed, e.g. 10, 50.",
    )  # fmt: skip
    canary_step_seconds = forms.IntegerField(
        required=False, min_value=0, initial=300, label="Hold per step (seconds)",
        help_text="Before each step's analysis of error rate and p95 against the live version.",
    )  # fmt: skip

    def clean_canary_steps(self) -> list[int]:
        text = self.cleaned_data["canary_steps"].replace(",", " ").replace("%", " ")
        try:
            return [int(part) for part in text.split()]
        except ValueError:
            raise forms.ValidationError(
                "Whole percentages separated by commas, e.g. 10, 50."
            ) from None

    def clean_canary_step_seconds(self) -> int:
        return self.cleaned_data["canary_step_seconds"] or 0

    def __init__(self, *args, model=None, **kwargs):
        super().__init__(*args, **kwargs)
        versions = ModelVersion.objects.select_related("model").filter(
            status=VersionStatus.READY, archived=False
        )
        if model is not None:
            versions = versions.filter(model=model)
        self.fields["version"].queryset = versions.order_by("model__name", "-number")


class DecisionForm(forms.Form):
    comment = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    override_reason = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))


class ReasonForm(forms.Form):
    reason = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))


class CommentForm(forms.Form):
    body = forms.CharField(label="Comment", widget=forms.Textarea(attrs={"rows": 2}))
