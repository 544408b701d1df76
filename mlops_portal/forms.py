from django import forms

from mlops_portal.choices import ChannelKind, NotificationEvent


class ApiTokenForm(forms.Form):
    name = forms.CharField(
        max_length=100,
        help_text="What uses it, e.g. 'training-pipeline' or 'laptop CLI'.",
    )


class EmailEventsForm(forms.Form):
    events = forms.MultipleChoiceField(
        choices=NotificationEvent.choices,
        widget=forms.CheckboxSelectMultiple,
        required=False,
        label="Email me when",
    )


class ChannelForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="e.g. #mlops-alerts")
    kind = forms.ChoiceField(choices=ChannelKind.choices)
    url = forms.URLField(
        max_length=500,
        label="Webhook URL",
        help_text="The chat's incoming-webhook URL, or your receiver's.",
        assume_scheme="https",
    )
    secret = forms.CharField(
        required=False,
        max_length=200,
        widget=forms.PasswordInput(render_value=False),
        help_text="Signed JSON webhooks only: bodies are signed with HMAC-SHA256 in the "
        "X-MLOps-Signature header. Leave blank to keep the saved one.",
    )
    events = forms.MultipleChoiceField(
        choices=[c for c in NotificationEvent.choices if c[0] != NotificationEvent.DAILY_DIGEST],
        widget=forms.CheckboxSelectMultiple,
    )
    enabled = forms.BooleanField(required=False, initial=True)


class DashboardForm(forms.Form):
    period = forms.ChoiceField(choices=[("week", "By week"), ("month", "By month")], required=False)
    team = forms.CharField(required=False, max_length=100)
    model = forms.CharField(required=False, max_length=100, help_text="A model's name")
