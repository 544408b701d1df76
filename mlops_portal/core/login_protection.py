"""Login protection around django-axes: the log line of every failed login and the page a
locked-out user sees, naming when the lock lifts (settings: LOGIN_FAILURE_LIMIT,
LOGIN_LOCKOUT_MINUTES; the API's token throttle is in mlops_portal.core.api.authentication)."""

from datetime import datetime

from axes.helpers import get_client_username, get_cool_off, get_failure_limit
from axes.models import AccessAttempt
from django.contrib.auth.forms import AuthenticationForm
from django.db.models import Max, Sum
from django.shortcuts import render
from django.utils import timezone
from django.utils.timesince import timeuntil

from mlops_portal.core import security_log

LOCKED_STATUS = 429


def log_failed_login(sender, credentials, request=None, **kwargs):
    """`user_login_failed` receiver: one line with the user name tried, never the password.

    It runs before axes counts the failure, so `locked_out` says whether axes refused the
    attempt without checking the password (the name or address was already locked)."""
    if request is None:
        return
    security_log.login_failed(
        request,
        credentials.get("username", ""),
        locked_out=bool(getattr(request, "axes_locked_out", False)),
    )


def locked_until(request, username: str) -> datetime | None:
    """When the lock on `username` or on the request's address lifts: the last counted
    failure of each locked parameter plus the cool-off; None when neither is locked."""
    cool_off = get_cool_off(request)
    limit = get_failure_limit(request, {"username": username})
    recent = AccessAttempt.objects.filter(attempt_time__gte=timezone.now() - cool_off)
    ends = []
    for attempts in (recent.filter(username=username), recent.filter(ip_address=_ip(request))):
        totals = attempts.aggregate(failures=Sum("failures_since_start"), last=Max("attempt_time"))
        if (totals["failures"] or 0) >= limit:
            ends.append(totals["last"] + cool_off)
    return max(ends) if ends else None


def _ip(request) -> str:
    return getattr(request, "axes_ip_address", None) or security_log.client_ip(request)


def locked_out(request, original_response=None, credentials=None):
    """AXES_LOCKOUT_CALLABLE: the login page again, status 429, saying when to try again.
    An API (the MLflow API's Basic auth) has answered in its own format already: kept."""
    if original_response is not None and request.path_info.startswith("/api/"):
        return original_response
    username = get_client_username(request, credentials) or ""
    until = locked_until(request, username)
    form = AuthenticationForm(request, initial={"username": username})
    context = {
        "form": form,
        "next": request.POST.get("next", ""),
        "locked_until": timezone.localtime(until) if until else None,
        "locked_for": timeuntil(until) if until else "",
    }
    return render(request, "registration/login.html", context, status=LOCKED_STATUS)
