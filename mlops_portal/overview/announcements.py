"""Who is told what: the notifications' subscribers to the domain events.

They run in the transaction of the change they report (`mlops_portal.core.events`), so the
Notification row and its deliveries commit with the change, or not at all."""

from deployments.choices import DeploymentState, VersionStatus
from mlops_portal.choices import NotificationEvent
from mlops_portal.core import events
from mlops_portal.overview import notifications
from monitoring.choices import IncidentState

# --- deployments -------------------------------------------------------------------------


def deployment_requested(deployment, awaiting_approval) -> None:
    if not awaiting_approval:
        return
    notifications.announce(
        NotificationEvent.DEPLOYMENT_NEEDS_APPROVAL,
        key=f"deployment:{deployment.pk}:needs-approval",
        title=f"Approve #{deployment.pk}? {deployment.version} to {deployment.target}",
        body=f"{deployment.requested_by} asks: {deployment.reason}",
        url=deployment.get_absolute_url(),
        data=_summary(deployment),
        users=notifications.operators().exclude(pk=deployment.requested_by_id),
    )


def deployment_ended(deployment, event) -> None:
    """Tell the requester that their deployment is live, or failed."""
    live = deployment.state == DeploymentState.SUCCEEDED
    notifications.announce(
        NotificationEvent.DEPLOYMENT_SUCCEEDED if live else NotificationEvent.DEPLOYMENT_FAILED,
        key=f"deployment-event:{event.pk}",
        title=f"#{deployment.pk} {'is live' if live else 'failed'}: "
        f"{deployment.version} on {deployment.target}",
        body=deployment.endpoint if live else event.message,
        url=deployment.get_absolute_url(),
        data=_summary(deployment),
        users=[deployment.requested_by],
    )


def rollback_requested(live, rollback) -> None:
    """Tell the people of the rolled-back deployment (requester and approver)."""
    notifications.announce(
        NotificationEvent.DEPLOYMENT_ROLLED_BACK,
        key=f"deployment:{live.pk}:rolled-back-by:{rollback.pk}",
        title=f"Rollback of #{live.pk}: {live.version} on {live.target}",
        body=f"{rollback.requested_by} rolled back deployment #{live.pk}.\n\n{rollback.reason}",
        url=rollback.get_absolute_url(),
        data={**_summary(live), "rollback": rollback.pk},
        users=[live.requested_by, live.approved_by],
    )


def _summary(deployment) -> dict:
    return {
        "deployment": deployment.pk,
        "model": deployment.version.model.name,
        "version": deployment.version.number,
        "target": deployment.target.name,
        "state": deployment.state,
    }


# --- versions ----------------------------------------------------------------------------


def version_invalid(version, event) -> None:
    model = version.model
    notifications.announce(
        NotificationEvent.VALIDATION_FAILED,
        key=f"version-event:{event.pk}",
        title=f"{model.name} v{version.number} failed validation",
        body=event.message,
        url=version.get_absolute_url(),
        data={"model": model.name, "version": version.number, "status": VersionStatus.INVALID},
        users=[version.registered_by, model.owner],
    )


# --- incidents ---------------------------------------------------------------------------

ANNOUNCED_STATES = {
    IncidentState.OPEN: NotificationEvent.INCIDENT_OPENED,
    IncidentState.ACKNOWLEDGED: NotificationEvent.INCIDENT_ACKNOWLEDGED,
    IncidentState.RESOLVED: NotificationEvent.INCIDENT_RESOLVED,
}


def incident_changed(incident, event) -> None:
    """Tell the owners and followers of the incident's target and model."""
    notification_event = ANNOUNCED_STATES.get(event.to_state)
    if notification_event is None:
        return
    target, version = incident.target, incident.version
    model = version.model if version else None
    people = [
        target.created_by if target else None,
        model.owner if model else None,
        incident.commander,
        *notifications.followers_of(target=target, model=model),
    ]
    severity = incident.get_severity_display()
    verb = "opened" if event.to_state == IncidentState.OPEN else event.to_state
    notifications.announce(
        notification_event,
        key=f"incident-event:{event.pk}",
        title=f"[{severity}] Incident #{incident.pk} {verb}: {incident.title}",
        body=event.message,
        url=incident.get_absolute_url(),
        data={
            "incident": incident.pk,
            "severity": incident.severity,
            "state": incident.state,
            "target": target.name if target else None,
            "model": model.name if model else None,
        },
        users=people,
    )


def subscribe() -> None:
    events.subscribe("deployment.requested", deployment_requested)
    events.subscribe("deployment.live", deployment_ended)
    events.subscribe("deployment.failed", deployment_ended)
    events.subscribe("deployment.rollback_requested", rollback_requested)
    events.subscribe("version.invalid", version_invalid)
    events.subscribe("incident.opened", incident_changed)
    events.subscribe("incident.state_changed", incident_changed)
