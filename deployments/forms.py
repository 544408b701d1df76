import json

from django import forms
from django.conf import settings

from deployments.choices import Flavor


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
        help_text="A scikit-learn model saved with joblib (.joblib, .pkl). "
        f"At most {settings.ARTIFACT_MAX_BYTES // (1024 * 1024)} MB.",
    )
    artifact_uri = forms.CharField(
        required=False,
        label="…or artifact URL",
        help_text="An http(s) URL the workers can download instead of an upload.",
    )
    artifact_sha256 = forms.CharField(
        required=False, label="Expected SHA-256", help_text="Optional; checked on validation."
    )
    flavor = forms.ChoiceField(choices=Flavor.choices, initial=Flavor.SKLEARN)
    sample_input = JSONTextField(
        empty=None,
        help_text="A few rows the model can predict on, as JSON: [[5.1, 3.5, 1.4, 0.2]].",
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
