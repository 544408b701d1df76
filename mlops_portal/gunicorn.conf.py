"""gunicorn settings for the portal's web process: `gunicorn -c mlops_portal/gunicorn.conf.py`
(the Procfile does). Read as a file by gunicorn's master, before any worker imports Django.

Per instance, so that several portals (or several web instances of one portal) can share a
machine:
- the control socket (`gunicornc`): gunicorn's default, ~/.gunicorn/gunicorn.ctl, is one
  path per user, and the last instance to start took it from the others. Here it is
  `var/run/gunicorn-<bind>.ctl`, or GUNICORN_CONTROL_SOCKET; `--no-control-socket` still
  turns it off.
- the prometheus-client multiprocess folder (mlops_portal.core.metrics): every web worker
  writes its counts there and `/metrics` sums them. PROMETHEUS_MULTIPROC_DIR when set (then
  whoever set it empties it at start, as `make run` does for all its processes); otherwise
  `var/prometheus/web-<bind>`, emptied here when the instance starts.
"""

import os
import re
import shutil
from pathlib import Path

_var = Path(os.environ.get("VAR_DIR") or Path(__file__).resolve().parent.parent / "var")
_instance = re.sub(r"[^A-Za-z0-9.]+", "-", os.environ.get("PORTAL_BIND", "127.0.0.1:8000"))

(_var / "run").mkdir(parents=True, exist_ok=True)
control_socket = os.environ.get("GUNICORN_CONTROL_SOCKET") or str(
    _var / "run" / f"gunicorn-{_instance}.ctl"
)

if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    _metrics_dir = _var / "prometheus" / f"web-{_instance}"
    shutil.rmtree(_metrics_dir, ignore_errors=True)  # counts start at zero with the instance
    _metrics_dir.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(_metrics_dir)  # inherited by the workers

# The master's own lines (start, workers booting and exiting) in the portal's format; the
# workers configure Django's LOGGING, the same.
from mlops_portal.core.logs import gunicorn_logconfig  # noqa: E402  (after the folder above)

logconfig_dict = gunicorn_logconfig(
    os.environ.get("LOG_FORMAT", "console"), os.environ.get("LOG_LEVEL", "INFO")
)


def child_exit(server, worker):
    """A worker's live gauges leave with it (its counters stay summed, as they should)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
