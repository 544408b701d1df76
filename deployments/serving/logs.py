"""The model server's log lines, on stderr: JSON with LOG_FORMAT=json, readable otherwise
(the portal's format, mlops_portal.core.logs, without importing the portal).

Each line carries a request id: the one of the deployment that started the server (the
deploy backend passes it in MLOPS_REQUEST_ID), or for a request's own lines the caller's
X-Request-ID. So one deployment can be followed from the form to the worker to this server.
"""

import logging
import os
import sys

import structlog

REQUEST_ID_ENV = "MLOPS_REQUEST_ID"


def configure() -> structlog.stdlib.BoundLogger:
    """Set up stderr logging once; return the server's logger, bound to the deployment's
    request id."""
    if os.environ.get("LOG_FORMAT") == "json":
        renderer = [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
    else:
        renderer = [structlog.dev.ConsoleRenderer(colors=False)]
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            *renderer,
        ],
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        cache_logger_on_first_use=True,
    )
    fields = {"logger": "model_server", "pid": os.getpid()}
    request_id = os.environ.get(REQUEST_ID_ENV)
    if request_id:
        fields["request_id"] = request_id
    return structlog.get_logger().bind(**fields)
