"""Domain events: how an app tells the others what happened without importing them.

A service publishes an event once, from the function that makes the change, with the
objects involved as keyword arguments: `publish("deployment.live", deployment=d, event=e)`.
Other apps subscribe in their `AppConfig.ready()`. The publisher never knows who listens,
so the imports point one way: the subscriber imports the publisher's app, never back.

Two deliveries, chosen by the subscriber:
- in the transaction (the default): the handler runs at once, inside the publisher's
  transaction when it has one. Its rows commit or roll back with the change, and an error
  undoes the change. Notifications need this (the Notification row and its deliveries
  commit with the change they report, so a change is never announced twice or lost), and
  so do monitoring's deploy windows (the window must be open before the backend restarts
  the server, i.e. before `publish` returns).
- on commit (`on_commit=True`): the handler runs after the publisher's transaction commits
  (at once outside one), and never when it rolls back; an error is logged, not raised.
  For effects outside the database (caches, outside calls) that must not see a change
  that may still roll back.

Handlers run in the order they subscribed. Names are "<thing>.<what happened>"; the table
in `EVENTS` documents each one's payload, and `publish` refuses a name not in it."""

import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from django.db import transaction

logger = logging.getLogger(__name__)

EVENTS = {
    "version.registered": "version",
    "version.validated": "version, event (the VersionEvent)",
    "version.invalid": "version, event (the VersionEvent)",
    "deployment.requested": "deployment, awaiting_approval (bool)",
    "deployment.approved": "deployment",
    "deployment.started": "deployment (its deploy job begins)",
    "deployment.live": "deployment, event (the DeploymentEvent)",
    "deployment.failed": "deployment, event (the DeploymentEvent)",
    "deployment.rollback_requested": "live (the deployment to roll back), rollback (the new one)",
    "deployment.rolled_back": "deployment, event (the DeploymentEvent; its rollback is live)",
    "incident.opened": "incident, event (the IncidentEvent)",
    "incident.state_changed": "incident, event (the IncidentEvent)",
    "check.down": "check, before (its previous state)",
    "check.up": "check, before (its previous state)",
}


@dataclass(frozen=True)
class Subscription:
    handler: Callable
    on_commit: bool
    key: str


_subscribers: dict[str, list[Subscription]] = defaultdict(list)


def subscribe(name: str, handler: Callable, *, on_commit: bool = False) -> None:
    """Call `handler(**payload)` on each `name` event; subscribing twice is a no-op (apps'
    `ready()` may run more than once)."""
    if name not in EVENTS:
        raise ValueError(f"Unknown domain event {name!r}; add it to events.EVENTS.")
    key = f"{handler.__module__}.{handler.__qualname__}"
    if any(existing.key == key for existing in _subscribers[name]):
        return
    _subscribers[name].append(Subscription(handler, on_commit, key))


def publish(name: str, **payload) -> None:
    """Tell the subscribers of `name` what happened (see the module docstring for when)."""
    if name not in EVENTS:
        raise ValueError(f"Unknown domain event {name!r}; add it to events.EVENTS.")
    for subscription in list(_subscribers[name]):
        if subscription.on_commit:
            transaction.on_commit(partial(_run_after_commit, name, subscription, payload))
        else:
            subscription.handler(**payload)


def _run_after_commit(name, subscription, payload) -> None:
    try:
        subscription.handler(**payload)
    except Exception:  # the change is committed; one failing listener must not stop others
        logger.exception("Subscriber %s of %s failed", subscription.key, name)


def subscribers(name: str) -> list[str]:
    """The handlers subscribed to `name`, as dotted names (for tests and debugging)."""
    return [subscription.key for subscription in _subscribers[name]]
