import json

from django import template
from django.urls import reverse
from django.utils.safestring import mark_safe

from mlops_portal.core import policy
from mlops_portal.core.markdown import render_markdown
from mlops_portal.services import follow_kind

register = template.Library()

STATUS_COLOURS = {
    "registered": "secondary",
    "validating": "info",
    "ready": "success",
    "invalid": "danger",
}


@register.filter
def markdown(text):
    return mark_safe(render_markdown(text))  # sanitised by nh3 in render_markdown


@register.filter
def status_colour(status):
    return STATUS_COLOURS.get(str(status), "secondary")


STATE_COLOURS = {
    "requested": "secondary",
    "approved": "info",
    "queued": "info",
    "running": "primary",
    "succeeded": "success",
    "failed": "danger",
    "rejected": "dark",
    "cancelled": "light",
    "superseded": "light",
    "rolled_back": "warning",
}


@register.filter
def state_colour(state):
    return STATE_COLOURS.get(str(state), "secondary")


CHECK_COLOURS = {"up": "success", "down": "danger", "paused": "secondary", "unknown": "light"}
INCIDENT_COLOURS = {
    "open": "danger",
    "acknowledged": "warning",
    "mitigated": "info",
    "resolved": "success",
}
SEVERITY_COLOURS = {"sev1": "danger", "sev2": "warning", "sev3": "info", "sev4": "secondary"}


@register.filter
def check_colour(state):
    return CHECK_COLOURS.get(str(state), "secondary")


@register.filter
def incident_colour(state):
    return INCIDENT_COLOURS.get(str(state), "secondary")


@register.filter
def severity_colour(severity):
    return SEVERITY_COLOURS.get(str(severity), "secondary")


@register.filter
def percent(fraction):
    """0.99871 → '99.87 %'."""
    if fraction is None:
        return ""
    return f"{fraction * 100:.2f} %"


@register.filter
def duration_text(delta):
    """A timedelta as '4 min 10 s', '2 h 5 min' or '3 d 4 h'."""
    if delta is None:
        return ""
    seconds = int(delta.total_seconds())
    days, seconds = divmod(seconds, 86400)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {seconds} s"
    return f"{seconds} s"


@register.filter
def get_item(mapping, key):
    return (mapping or {}).get(key)


@register.filter
def as_json(value):
    return json.dumps(value)


@register.filter
def number(value):
    """Metric values: at most 4 significant decimals, integers kept whole."""
    if isinstance(value, float):
        return f"{value:.4g}"
    return value


@register.simple_tag(takes_context=True)
def query_with(context, **changes):
    """The current query string with `changes` applied (for pagination and filter links)."""
    params = context["request"].GET.copy()
    for key, value in changes.items():
        if value in (None, ""):
            params.pop(key, None)
        else:
            params[key] = value
    encoded = params.urlencode()
    return f"?{encoded}" if encoded else "?"


@register.simple_tag
def history_url(instance):
    """The change feed filtered to `instance` (its History link)."""
    opts = instance._meta
    return f"{reverse('changes')}?kind={opts.app_label}.{opts.model_name}&object={instance.pk}"


@register.inclusion_tag("_follow_button.html", takes_context=True)
def follow_button(context, thing):
    """Follow / Unfollow for a model or target: its incidents are then mailed to the user."""
    user = context["request"].user
    return {
        "action": reverse("follow", args=[follow_kind(thing), thing.name]),
        "following": thing.followers.filter(pk=user.pk).exists(),
        "csrf_token": context.get("csrf_token"),
    }


@register.filter
def with_class(field, css_class):
    """A bound field's own widget with Bootstrap's class (and `is-invalid` on errors)."""
    classes = f"{css_class} is-invalid" if field.errors else css_class
    return field.as_widget(attrs={"class": classes})


@register.simple_tag(takes_context=True)
def can(context, action, obj=None):
    """`{% can "deployment.comment" deployment as may_comment %}`: the policy's answer for
    the page's user, so templates never name a role."""
    return policy.can(context["request"].user, action, obj)
