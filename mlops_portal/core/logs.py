"""Logs of every portal process (web, workers, beat, relay), through structlog.

- `LOG_FORMAT=json`: one JSON object per line (`timestamp`, `level`, `logger`, `event`,
  `request_id`, and any fields bound); `console` (default): readable lines.
- Everything goes through one formatter: our own loggers, Django's, Celery's and gunicorn's
  (stdlib records are rendered by structlog's `ProcessorFormatter`).
- A request id follows the work: `RequestIdMiddleware` takes the caller's `X-Request-ID` (or
  makes one), binds it for the request's lines and echoes it in the response; jobs the
  request enqueues carry it (the outbox row and the Celery message header, see
  `mlops_portal.celery`), and the worker binds it while the job runs; the local deploy
  backend hands it to the model server it starts.
- `redact` runs last on every line: values under secret-sounding keys, `Authorization`
  values, bearer and API tokens, passwords in URLs and `password=`-style pairs never reach
  the output.

This module imports nothing of Django at import time: gunicorn's master reads it.
"""

import contextvars
import logging
import re
import time
import uuid

import structlog

REQUEST_ID_HEADER = "X-Request-ID"
# The Celery message header carrying a job's request id (set in mlops_portal.celery).
JOB_REQUEST_ID_HEADER = "portal_request_id"
# The environment variable carrying it into a model server (deployments.backends.local).
REQUEST_ID_ENV = "MLOPS_REQUEST_ID"
# What we accept from a caller as a request id; anything else is replaced by a new one.
VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
REDACTED = "[redacted]"

_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)

access_log = logging.getLogger("mlops_portal.request")


# --- the request id -----------------------------------------------------------------------


def current_request_id() -> str | None:
    return _request_id.get()


def new_request_id() -> str:
    return uuid.uuid4().hex


def bind_request_id(request_id: str | None) -> contextvars.Token:
    """Make `request_id` the id of the lines logged from here on (this thread or task);
    return the token that `reset_request_id` takes."""
    return _request_id.set(request_id)


def reset_request_id(token: contextvars.Token) -> None:
    try:
        _request_id.reset(token)
    except ValueError:  # bound in another context (a signal sent from another thread)
        _request_id.set(None)


def accepted_request_id(value: str | None) -> str:
    """The caller's id when it is a sane one, else a new one (no log forging, no huge ids)."""
    if value and VALID_REQUEST_ID.match(value):
        return value
    return new_request_id()


class RequestIdMiddleware:
    """Bind a request id for the request's log lines and jobs, echo it in `X-Request-ID`,
    and write one access line per request (method, path, view, status, duration)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request_id = accepted_request_id(request.headers.get(REQUEST_ID_HEADER))
        request.request_id = request_id
        token = bind_request_id(request_id)
        started = time.perf_counter()
        try:
            response = self.get_response(request)
            response[REQUEST_ID_HEADER] = request_id
            match = getattr(request, "resolver_match", None)
            access_log.info(
                "%s %s %s",
                request.method,
                request.path,
                response.status_code,
                extra={
                    "view": match.view_name if match else None,
                    "status": response.status_code,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 1),
                },
            )
            return response
        finally:
            reset_request_id(token)


# --- redaction ----------------------------------------------------------------------------

SECRET_KEY_NAMES = re.compile(
    r"(authorization|password|passwd|secret|token|api[_-]?key|access[_-]?key|cookie|"
    r"session|signature|credential|private[_-]?key)",
    re.IGNORECASE,
)
SECRET_PATTERNS = [
    # "Authorization: Bearer abc", "Token abc", "Basic abc" (the scheme stays, the value goes)
    (re.compile(r"(?i)\b(Bearer|Token|Basic)\s+[A-Za-z0-9._~+/=-]{6,}"), r"\1 " + REDACTED),
    # Our API tokens wherever they appear (mlops_portal.models.TOKEN_PREFIX)
    (re.compile(r"\bmlp_[A-Za-z0-9_-]{8,}"), REDACTED),
    # password=…, "secret": "…", token: … in text (query strings, reprs, JSON)
    (
        re.compile(
            r"""(?i)((?:password|passwd|secret|token|api[_-]?key|access[_-]?key|signature)"""
            r"""["']?\s*[=:]\s*["']?)[^\s"'&,;}]+"""
        ),
        r"\1" + REDACTED,
    ),
    # scheme://user:password@host
    (re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://[^/\s:@]+:)[^@\s/]+@"), r"\1" + REDACTED + "@"),
]  # fmt: skip


# One search that every pattern above needs to match first: most lines have none of these
# words, and one search costs a quarter of four substitutions.
MIGHT_HOLD_A_SECRET = re.compile(
    r"(?i)bearer|token|basic|mlp_|passw|secret|api[_-]?key|access[_-]?key|signature|://[^/\s]*@"
)


def redact_text(text: str) -> str:
    if not MIGHT_HOLD_A_SECRET.search(text):
        return text
    for pattern, replacement in SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def redact_value(key, value):
    if isinstance(key, str) and SECRET_KEY_NAMES.search(key) and value not in (None, ""):
        return REDACTED
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: redact_value(k, v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_value(None, v) for v in value]
    return value


def redact(logger, method_name, event_dict: dict) -> dict:
    """structlog processor: no secret or token leaves in a log line."""
    return {
        key: value if key in OURS else redact_value(None if key in SCANNED else key, value)
        for key, value in event_dict.items()
    }


# Keys we fill ourselves with harmless values (a request id is checked when it comes in).
OURS = {"request_id", "logger", "level", "timestamp", "status", "duration_ms", "view"}
# Keys whose names sound secret but are ours; their text is still scanned.
SCANNED = {"event", "exception"}


# --- configuration ------------------------------------------------------------------------


def add_request_id(logger, method_name, event_dict: dict) -> dict:
    request_id = _request_id.get()
    if request_id and "request_id" not in event_dict:
        event_dict["request_id"] = request_id
    return event_dict


def _extra_fields(logger, method_name, event_dict: dict) -> dict:
    """Copy `extra={...}` fields of stdlib records into the line."""
    record = event_dict.get("_record")
    if record is not None:
        for key, value in record.__dict__.items():
            if key not in _RECORD_ATTRIBUTES and not key.startswith("_"):
                event_dict.setdefault(key, value)
    return event_dict


_RECORD_ATTRIBUTES = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "color_message",  # uvicorn/celery niceties
    "data",  # celery's task data: the arguments, already in the message
    "security",  # mlops_portal.security: its fields are in the message already
}

SHARED_PROCESSORS = [
    add_request_id,
    structlog.stdlib.add_logger_name,
    structlog.stdlib.add_log_level,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


def _orjson_text(value, **kwargs) -> str:
    import orjson

    return orjson.dumps(value, default=repr).decode()


def formatter(fmt: str) -> dict:
    """A `logging` formatter entry rendering every record as JSON or as a readable line."""
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer(serializer=_orjson_text)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=False)
    return {
        "()": structlog.stdlib.ProcessorFormatter,
        "foreign_pre_chain": [*SHARED_PROCESSORS, _extra_fields],
        "processors": [
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            # A traceback becomes plain text before `redact` reads it: the console renderer's
            # own (rich) tracebacks would print local variables, secrets included.
            structlog.processors.format_exc_info,
            redact,
            renderer,
        ],
    }


def configure_structlog() -> None:
    """Loggers from `structlog.get_logger()` go through the stdlib handlers above."""
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *SHARED_PROCESSORS,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def logging_config(fmt: str, level: str) -> dict:
    """The LOGGING dict of settings (and gunicorn's logconfig_dict)."""
    if fmt not in ("json", "console"):
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured(f"LOG_FORMAT must be json or console, not {fmt!r}")
    configure_structlog()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"structured": formatter(fmt)},
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "structured"}},
        "root": {"handlers": ["console"], "level": level},
    }


def gunicorn_logconfig(fmt: str, level: str) -> dict:
    """gunicorn's `logconfig_dict`: its master's lines in the same format as the app's."""
    config = logging_config(fmt, level)
    config["loggers"] = {
        "gunicorn.error": {"level": "INFO", "handlers": [], "propagate": True},
        "gunicorn.access": {"level": "INFO", "handlers": [], "propagate": True},
    }
    return config
