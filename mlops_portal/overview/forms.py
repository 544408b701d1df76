from datetime import timedelta

from django import forms
from django.utils import timezone

from mlops_portal.choices import CHANNEL_EVENTS, ChannelKind, NotificationEvent, TokenScope
from mlops_portal.overview.dashboards import Scope, midnight


class ApiTokenForm(forms.Form):
    name = forms.CharField(
        max_length=100,
        help_text="What uses it, e.g. 'training-pipeline' or 'laptop CLI'.",
    )
    scope = forms.ChoiceField(
        choices=TokenScope.choices,
        initial=TokenScope.WRITE,
        required=False,  # read and write, as before the choice existed
        help_text="A read-only token can read everything you can, and change nothing.",
    )
    expires_in_days = forms.TypedChoiceField(
        label="Expires",
        choices=[
            ("", "Never"),
            (7, "In 7 days"),
            (30, "In 30 days"),
            (90, "In 90 days"),
            (365, "In a year"),
        ],
        coerce=int,
        empty_value=None,
        required=False,
    )

    def service_arguments(self) -> dict:
        """What tokens.create_token takes: name, scope and the expiry moment."""
        days = self.cleaned_data["expires_in_days"]
        expires_at = timezone.now() + timedelta(days=days) if days else None
        return {
            "name": self.cleaned_data["name"],
            "scope": self.cleaned_data["scope"] or TokenScope.WRITE,
            "expires_at": expires_at,
        }


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
        choices=[(event.value, event.label) for event in CHANNEL_EVENTS],
        widget=forms.CheckboxSelectMultiple,
    )
    enabled = forms.BooleanField(required=False, initial=True)


class DashboardForm(forms.Form):
    period = forms.ChoiceField(choices=[("week", "By week"), ("month", "By month")], required=False)
    team = forms.CharField(required=False, max_length=100)
    model = forms.CharField(required=False, max_length=100, help_text="A model's name")
    since = forms.DateField(required=False, help_text="First day (default: 12 periods ago)")
    until = forms.DateField(required=False, help_text="Last day (default: today)")

    def scope(self) -> Scope:
        """The figures' scope; the defaults when the form is not valid (errors are shown)."""
        if not self.is_valid():
            return Scope()
        data = self.cleaned_data
        scope = Scope(
            period=data["period"] or "week",
            since=midnight(data["since"]) if data["since"] else None,
            until=midnight(data["until"] + timedelta(days=1)) if data["until"] else None,
            team=data["team"],
            model=data["model"],
        )
        for field, errors in scope.problems().items():
            for error in errors:
                self.add_error(field, error)
        return Scope() if self.errors else scope
