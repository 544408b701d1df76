"""Named steps of the deploy job, so a test can kill the worker at each one in turn.

`reached("went_live")` marks a point where the worker may die and leave the database and
the running processes disagreeing; tests/deploy/test_kill_at_every_step.py starts a worker
with DEPLOY_CRASH_AT=<step> (read by tests/settings.py only) and checks that recovery
still ends every deployment and leaves no stray model server. Production settings never
define DEPLOY_CRASH_AT, so in production each call is one attribute lookup; a hook named in
the job keeps the test deterministic without timing tricks or mocks of the job's code."""

import os
import signal

from django.conf import settings

STEPS = (
    "claimed",  # the job holds the row (running), nothing started yet
    "server_started",  # the local backend started the model server and saved its pid
    # (the ray backend: submitted the new Serve config, its previous one recorded)
    "deployed",  # the backend answered: the new version serves, not yet live
    "went_live",  # committed: new one succeeded, old one superseded + stop pending
    "stopped_old",  # the old server is stopped and its stop is recorded
)


def reached(step: str) -> None:
    """Kill this worker, all of it, with SIGKILL when the test settings ask for `step`."""
    if getattr(settings, "DEPLOY_CRASH_AT", "") == step:
        os.killpg(os.getpgid(0), signal.SIGKILL)  # the worker runs in its own session
