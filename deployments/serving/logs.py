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
            add_pid,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            *renderer,
        ],
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        cache_logger_on_first_use=True,
    )
    fields = {"logger": "model_server"}
    request_id = os.environ.get(REQUEST_ID_ENV)
    if request_id:
        fields["request_id"] = request_id
    return structlog.get_logger().bind(**fields)


def add_pid(logger, method_name, event_dict):
    """The pid of the process writing the line, read per line: worker processes are forked
    from the first one after the logger is set up."""
    event_dict["pid"] = os.getpid()
    return event_dict


class ToStructlog(logging.Handler):
    """Sends a standard-library logger's records (uvicorn's) to the server's log lines."""

    def __init__(self, log, level: int = logging.WARNING):
        super().__init__(level)
        self.log = log

    def emit(self, record: logging.LogRecord) -> None:
        extra = {"exc_info": record.exc_info} if record.exc_info else {}
        self.log.log(record.levelno, record.getMessage(), source=record.name, **extra)


def forward(name: str, log, level: int = logging.WARNING) -> None:
    """Write `name`'s records at `level` and above as the server's own log lines."""
    logger = logging.getLogger(name)
    logger.handlers = [ToStructlog(log, level)]
    logger.propagate = False
