"""The morning triage: what needs this user's attention, most urgent first.

The Today page and the daily digest email both read `triage`, so the email says exactly what
the page would show. Each section is one query of at most SECTION_SIZE rows, whatever the
size of the tables."""

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from urllib.parse import urlencode

from django.db.models import Case, Q, When
from django.urls import reverse
from django.utils import timezone

from deployments.choices import DeploymentState, VersionStatus
from deployments.models import Deployment, ModelVersion
from deployments.services import awaiting_decision_by
from mlops_portal.core.validation import parse_utc_datetime
from mlops_portal.models import Profile
from monitoring.choices import UNRESOLVED_STATES, CheckState, IncidentState
from monitoring.models import HealthCheck, Incident

SECTION_SIZE = 8
# "Since your last visit" never means less than this: a second look at the page in the
# morning still shows what failed overnight.
MINIMUM_LOOKBACK = timedelta(hours=24)
# The oldest "since" a page may ask for (its htmx poll carries the one it was shown with).
MAXIMUM_LOOKBACK = timedelta(days=90)
VISIT_RESOLUTION = timedelta(minutes=10)


@dataclass
class Section:
    key: str  # a stable id: the section's anchor on the page and its name in tests
    title: str
    tone: str  # Bootstrap colour of the heading badge
    row: str  # which row template shows an item: mlops_portal/today/_<row>.html
    items: list = field(default_factory=list)
    more_url: str = ""

    @property
    def has_more(self) -> bool:
        return len(self.items) > SECTION_SIZE

    @property
    def shown(self) -> list:
        return self.items[:SECTION_SIZE]


def since_for(user, now: datetime | None = None, asked: str = "") -> datetime:
    """The start of "what happened": the `since` a page's htmx poll carries (`asked`), or
    else the last Today visit, or 24 hours ago if that is earlier."""
    now = now or timezone.now()
    carried = _parse_since(asked, now)
    if carried:
        return carried
    last_visit = (
        Profile.objects.filter(user=user).values_list("last_today_visit_at", flat=True).first()
    )
    floor = now - MINIMUM_LOOKBACK
    return min(last_visit, floor) if last_visit else floor


def _parse_since(value: str, now: datetime) -> datetime | None:
    """`value` as a moment of the last MAXIMUM_LOOKBACK; None for anything else."""
    try:
        since = parse_utc_datetime(value)
    except ValueError:  # not a date-time, impossible (month 13) or out of range
        return None
    return since if now - MAXIMUM_LOOKBACK <= since <= now else None


def record_visit(user, now: datetime | None = None) -> None:
    """Remember this visit. Only its day matters (`since` reaches back 24 hours anyway), so
    a page reloaded within VISIT_RESOLUTION writes nothing."""
    now = now or timezone.now()
    updated = (
        Profile.objects.filter(user=user)
        .exclude(last_today_visit_at__gt=now - VISIT_RESOLUTION)
        .update(last_today_visit_at=now)
    )
    if not updated:
        Profile.objects.get_or_create(user=user, defaults={"last_today_visit_at": now})


def triage(user, since: datetime) -> list[Section]:
    """The non-empty sections for `user`, most urgent first."""
    sections = [
        _incidents(since),
        _checks_down(),
        _awaiting_my_approval(user),
        _failed_deployments(since),
        _my_waiting_requests(user),
        _my_validation_failures(user, since),
        _new_versions_of_my_models(user, since),
    ]
    return [section for section in sections if section.items]


def _first(queryset) -> list:
    return list(queryset[: SECTION_SIZE + 1])  # one more tells the page to link "all"


def _list_url(name: str, **query) -> str:
    url = reverse(name)
    return f"{url}?{urlencode(query, doseq=True)}" if query else url


def _incidents(since) -> Section:
    """Every unresolved incident, most severe first, then those opened since (resolved)."""
    resolved_last = Case(When(state=IncidentState.RESOLVED, then=1), default=0)
    incidents = (
        Incident.objects.filter(Q(state__in=UNRESOLVED_STATES) | Q(opened_at__gte=since))
        .select_related("target", "version__model")
        .order_by(resolved_last, "severity", "-opened_at", "-pk")
    )
    return Section(
        "incidents", "Incidents: open, and opened since", "danger", "incident",
        _first(incidents), _list_url("incident-list", state=list(UNRESOLVED_STATES)),
    )  # fmt: skip


def _checks_down() -> Section:
    checks = (
        HealthCheck.objects.filter(state=CheckState.DOWN, enabled=True)
        .select_related("target")
        .order_by("first_failure_at", "pk")
    )
    return Section(
        "checks", "Checks down", "danger", "check", _first(checks),
        _list_url("check-list", state=CheckState.DOWN),
    )  # fmt: skip


def _awaiting_my_approval(user) -> Section:
    requests = awaiting_decision_by(user).for_list().order_by("created_at", "pk")
    return Section(
        "approvals", "Waiting for your approval", "warning", "deployment", _first(requests),
        _list_url("deployment-list", state=DeploymentState.REQUESTED),
    )  # fmt: skip


def _failed_deployments(since) -> Section:
    failed = (
        Deployment.objects.for_list()
        .filter(
            state__in=[DeploymentState.FAILED, DeploymentState.ROLLED_BACK], updated_at__gte=since
        )
        .order_by("-updated_at", "-pk")
    )
    return Section(
        "failed", "Deployments failed or rolled back", "warning", "deployment", _first(failed),
        _list_url("deployment-list", state=[DeploymentState.FAILED, DeploymentState.ROLLED_BACK]),
    )  # fmt: skip


def _my_waiting_requests(user) -> Section:
    requests = (
        Deployment.objects.for_list()
        .filter(state=DeploymentState.REQUESTED, requested_by=user)
        .order_by("created_at", "pk")
    )
    return Section(
        "my-requests", "Your requests waiting for approval", "info", "deployment",
        _first(requests),
        _list_url("deployment-list", state=DeploymentState.REQUESTED, requested_by=user.username),
    )  # fmt: skip


def _my_validation_failures(user, since) -> Section:
    versions = (
        ModelVersion.objects.for_list()
        .filter(Q(model__owner=user) | Q(registered_by=user))
        .filter(status=VersionStatus.INVALID, validated_at__gte=since)
        .order_by("-validated_at", "-pk")
    )
    return Section(
        "invalid", "Validation failures on your models", "danger", "version", _first(versions),
    )  # fmt: skip


def _new_versions_of_my_models(user, since) -> Section:
    versions = (
        ModelVersion.objects.for_list()
        .filter(model__owner=user, created_at__gte=since)
        .order_by("-created_at", "-pk")
    )
    return Section(
        "versions", "New versions of your models", "secondary", "version", _first(versions),
        _list_url("model-list", owner=user.username),
    )  # fmt: skip
