"""Django settings, read from environment variables only (see README, "Settings").

Defaults suit the embedded single-machine set-up of `make run`; production sets the
variables. Each variable is read once through a typed helper from `mlops_portal.env`.
"""

import os
from datetime import timedelta
from pathlib import Path

import dj_database_url
import plotly
from celery.schedules import crontab
from csp.constants import NONE, SELF, UNSAFE_INLINE
from django.core.exceptions import ImproperlyConfigured

from mlops_portal.core.logs import logging_config
from mlops_portal.env import (
    env_bool,
    env_fraction,
    env_int,
    env_list,
    env_rate,
    env_secret,
    env_str,
    env_time,
)

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("VAR_DIR", str(BASE_DIR / "var")))

DEBUG = env_bool("DJANGO_DEBUG", False)
SECRET_KEY = env_secret(
    "SECRET_KEY", required=not DEBUG, fallback="insecure-dev-key-only-for-DJANGO_DEBUG"
)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "mlops_portal",
    "deployments",
    "monitoring",
    "docs_app",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "django_bootstrap5",
    "django_celery_beat",
    "auditlog",
    "axes",
    "csp",
]

MIDDLEWARE = [
    # First: the request id for every line and job of the request; then the metrics, which
    # count and time every request, whatever a later middleware answers.
    "mlops_portal.core.logs.RequestIdMiddleware",
    "mlops_portal.core.metrics.RequestMetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "mlops_portal.core.middleware.LoginRequiredMiddleware",
    # Django's, building the message storage only for requests that use it.
    "mlops_portal.core.middleware.LazyMessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "mlops_portal.core.audit.AuditActorMiddleware",
    # django-csp's, with the headers built once per process.
    "mlops_portal.core.middleware.ContentSecurityPolicyMiddleware",
    # Last: turns the lockout that its backend flags during authentication into a page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = env_str("ROOT_URLCONF", "mlops_portal.urls")
WSGI_APPLICATION = "mlops_portal.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "mlops_portal" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "mlops_portal.context_processors.roles",
                "mlops_portal.context_processors.operations",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'portal.sqlite3'}"),
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web, worker and beat share one file: wait for the write lock instead of failing.
    DATABASES["default"]["OPTIONS"] = {"timeout": 20, "transaction_mode": "IMMEDIATE"}
    DATABASES["default"]["CONN_MAX_AGE"] = 0
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# The axes backend comes first: it refuses a locked-out user or address before the
# password is even checked (see "Login protection" below).
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "today"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
# Dates and times in one style on every page (mlops_portal/formats/en/formats.py).
FORMAT_MODULE_PATH = ["mlops_portal.formats"]
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = False
USE_TZ = True

# Static files: htmx and plotly.js come from installed Python packages; Bootstrap and
# Mermaid from npm, installed by the Makefile (`make run`/`make test`) into the git-ignored
# vendor-static/.
STATIC_URL = "/static/"
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(VAR_DIR / "static")))
STATICFILES_DIRS = [
    ("bootstrap", BASE_DIR / "vendor-static" / "bootstrap"),
    ("plotly", os.path.join(os.path.dirname(plotly.__file__), "package_data")),
    ("mermaid", BASE_DIR / "vendor-static" / "mermaid"),
]
MEDIA_URL = "/media/"
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(VAR_DIR / "media")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": env_str(
            "STATICFILES_STORAGE", "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}

# Model artifacts.
ARTIFACT_MAX_BYTES = env_int("ARTIFACT_MAX_BYTES", 200 * 1024 * 1024)
ARTIFACT_DOWNLOAD_TIMEOUT = env_int("ARTIFACT_DOWNLOAD_TIMEOUT", 60)
# Where artifact URIs may point (deployments.artifacts), in the form and with the default of
# HEALTHCHECK_ALLOWED_NETWORKS below; link-local (cloud metadata) is always refused.
ARTIFACT_ALLOWED_NETWORKS = env_list(
    "ARTIFACT_ALLOWED_NETWORKS",
    ["127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"],
)
# A model folder (an unpacked archive, an s3:// prefix, a run's model) holds at most this
# many files, and an archive unpacks to at most ARTIFACT_MAX_EXTRACTED_BYTES (zip bombs).
ARTIFACT_MAX_FILES = env_int("ARTIFACT_MAX_FILES", 10_000)
ARTIFACT_MAX_EXTRACTED_BYTES = env_int("ARTIFACT_MAX_EXTRACTED_BYTES", 1024 * 1024 * 1024)
# s3:// artifacts (deployments.sources): any S3-compatible store. Empty keys fall back to
# boto3's environment and ~/.aws (never an instance metadata service).
ARTIFACT_S3_ENDPOINT_URL = env_str("ARTIFACT_S3_ENDPOINT_URL")
ARTIFACT_S3_REGION = env_str("ARTIFACT_S3_REGION")
ARTIFACT_S3_ACCESS_KEY_ID = env_str("ARTIFACT_S3_ACCESS_KEY_ID")
ARTIFACT_S3_SECRET_ACCESS_KEY = env_secret(
    "ARTIFACT_S3_SECRET_ACCESS_KEY", required=False, fallback=""
)
# Where uploaded artifacts (and the files served to remote backends) are kept
# (deployments.storage): "local" (MEDIA_ROOT) or "s3" (ARTIFACT_S3_BUCKET, reached with the
# ARTIFACT_S3_* settings above).
ARTIFACT_STORAGE = env_str("ARTIFACT_STORAGE", "local").strip().lower()
if ARTIFACT_STORAGE not in ("local", "s3"):
    raise ImproperlyConfigured(f"ARTIFACT_STORAGE must be local or s3, not {ARTIFACT_STORAGE!r}")
ARTIFACT_S3_BUCKET = env_str("ARTIFACT_S3_BUCKET")
if ARTIFACT_STORAGE == "s3" and not ARTIFACT_S3_BUCKET:
    raise ImproperlyConfigured("ARTIFACT_STORAGE=s3 needs ARTIFACT_S3_BUCKET, the bucket's name")
# How long a link to an artifact for a remote backend (S3 presigned or signed portal URL)
# stays valid.
ARTIFACT_SIGNED_URL_SECONDS = env_int("ARTIFACT_SIGNED_URL_SECONDS", 900)
if not 1 <= ARTIFACT_SIGNED_URL_SECONDS <= 7 * 24 * 3600:  # SigV4's longest
    raise ImproperlyConfigured("ARTIFACT_SIGNED_URL_SECONDS must be between 1 and 604800")
# runs:/ and mlflow-artifacts:/ artifacts are fetched through this MLflow tracking server.
ARTIFACT_MLFLOW_TRACKING_URI = env_str("ARTIFACT_MLFLOW_TRACKING_URI")
ARTIFACT_MLFLOW_TRACKING_TOKEN = env_secret(
    "ARTIFACT_MLFLOW_TRACKING_TOKEN", required=False, fallback=""
)
# file:// artifacts only under these folders; none by default.
ARTIFACT_FILE_ROOTS = env_list("ARTIFACT_FILE_ROOTS", [])
FILE_UPLOAD_PERMISSIONS = 0o640
# An upload over ARTIFACT_MAX_BYTES is refused while it arrives (mlops_portal.core.uploads), before
# Django's handlers keep it in memory or in FILE_UPLOAD_TEMP_DIR.
FILE_UPLOAD_HANDLERS = [
    "mlops_portal.core.uploads.SizeLimitUploadHandler",
    "django.core.files.uploadhandler.MemoryFileUploadHandler",
    "django.core.files.uploadhandler.TemporaryFileUploadHandler",
]
# Bodies without files (form fields, API JSON): Django's default, 2.5 MB.
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("DATA_UPLOAD_MAX_MEMORY_SIZE", 2_621_440)

# Deployments.
# How CD systems and remote backends reach the portal: webhook callbacks, signed artifact links.
PORTAL_BASE_URL = env_str("PORTAL_BASE_URL", "http://127.0.0.1:8000")
SERVING_DIR = Path(env_str("SERVING_DIR", str(VAR_DIR / "serving")))  # model server logs
DEPLOY_LEASE_SECONDS = env_int("DEPLOY_LEASE_SECONDS", 120)  # a silent job this long is lost
DEPLOY_RESEND_QUEUED_SECONDS = env_int("DEPLOY_RESEND_QUEUED_SECONDS", 60)
WEBHOOK_SIGNATURE_TOLERANCE_SECONDS = env_int("WEBHOOK_SIGNATURE_TOLERANCE_SECONDS", 300)
# Canary analysis between steps (deployments.canary_analysis): a canary with fewer
# predictions than CANARY_MIN_REQUESTS in a step is not judged; it fails on an error rate
# more than CANARY_MAX_ERROR_RATE_INCREASE percentage points above the stable version's,
# or a p95 latency over CANARY_MAX_P95_RATIO times the stable's (p95s under
# CANARY_P95_FLOOR_SECONDS always pass).
CANARY_MIN_REQUESTS = env_int("CANARY_MIN_REQUESTS", 20)
CANARY_MAX_ERROR_RATE_INCREASE = float(os.environ.get("CANARY_MAX_ERROR_RATE_INCREASE", "1.0"))
CANARY_MAX_P95_RATIO = float(os.environ.get("CANARY_MAX_P95_RATIO", "1.5"))
CANARY_P95_FLOOR_SECONDS = float(os.environ.get("CANARY_P95_FLOOR_SECONDS", "0.025"))

# Monitoring.
# Where health checks may point: CIDRs and host names ("*.svc.cluster.local"). Default:
# loopback and private ranges, since models are internal. Link-local (169.254.0.0/16,
# cloud metadata) is always refused.
HEALTHCHECK_ALLOWED_NETWORKS = env_list(
    "HEALTHCHECK_ALLOWED_NETWORKS",
    ["127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"],
)
HEALTHCHECK_RESULT_RETENTION_DAYS = env_int("HEALTHCHECK_RESULT_RETENTION_DAYS", 7)
HEALTHCHECK_CONCURRENCY = env_int("HEALTHCHECK_CONCURRENCY", 200)
INCIDENT_QUIET_PERIOD_SECONDS = env_int("INCIDENT_QUIET_PERIOD_SECONDS", 300)
# Serving metrics: every live model server's /metrics is read each
# SERVING_SCRAPE_INTERVAL_SECONDS, at most SERVING_SCRAPE_CONCURRENCY at once, each given
# SERVING_SCRAPE_TIMEOUT_SECONDS to answer.
SERVING_SCRAPE_INTERVAL_SECONDS = env_int("SERVING_SCRAPE_INTERVAL_SECONDS", 60)
SERVING_SCRAPE_TIMEOUT_SECONDS = env_int("SERVING_SCRAPE_TIMEOUT_SECONDS", 5)
SERVING_SCRAPE_CONCURRENCY = env_int("SERVING_SCRAPE_CONCURRENCY", 100)
# Drift (monitoring.services.drift): every DRIFT_INTERVAL_SECONDS, each live version's
# logged rows of the last DRIFT_WINDOW_MINUTES are compared with its reference data, when
# there are at least DRIFT_MIN_ROWS of them.
DRIFT_INTERVAL_SECONDS = env_int("DRIFT_INTERVAL_SECONDS", 3600)
DRIFT_WINDOW_MINUTES = env_int("DRIFT_WINDOW_MINUTES", 60)
DRIFT_MIN_ROWS = env_int("DRIFT_MIN_ROWS", 100)
# Heartbeat pings (/ping/<uuid>, no login: the uuid is the secret): bodies over
# HEARTBEAT_BODY_MAX bytes are refused (413), the last HEARTBEAT_BODY_KEEP bytes are kept;
# more than HEARTBEAT_PINGS_PER_MINUTE pings of one key in a minute get 429.
HEARTBEAT_BODY_MAX = env_int("HEARTBEAT_BODY_MAX", 100_000)
HEARTBEAT_BODY_KEEP = env_int("HEARTBEAT_BODY_KEEP", 10_000)
HEARTBEAT_PINGS_PER_MINUTE = env_int("HEARTBEAT_PINGS_PER_MINUTE", 60)
# The prediction log: model servers of the local backend sample this share of their requests
# (0 turns it off) into a Redis stream of at most about PREDICTION_LOG_MAXLEN entries; the
# worker collects it every PREDICTION_COLLECT_INTERVAL_SECONDS, at most
# PREDICTION_COLLECT_BATCH entries a run, into LoggedPrediction rows (kept
# PREDICTION_LOG_RETENTION_DAYS, below).
PREDICTION_SAMPLE_RATE = env_fraction("PREDICTION_SAMPLE_RATE", 0.1)
PREDICTION_LOG_STREAM = env_str("PREDICTION_LOG_STREAM", "mlops:predictions")
PREDICTION_LOG_MAXLEN = env_int("PREDICTION_LOG_MAXLEN", 100_000)
PREDICTION_COLLECT_INTERVAL_SECONDS = env_int("PREDICTION_COLLECT_INTERVAL_SECONDS", 10)
PREDICTION_COLLECT_BATCH = env_int("PREDICTION_COLLECT_BATCH", 5_000)

# Celery: Redis by default; "filesystem://" is the no-install fallback that `make run`
# picks when Redis does not answer (see scripts/run.sh).
REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/0")
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", REDIS_URL)
PREDICTION_LOG_URL = env_str("PREDICTION_LOG_URL", REDIS_URL)  # the stream's Redis
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = VAR_DIR / "celery-broker"
    for _folder in ("queue", "processed", "control"):  # needed before the transport starts
        (_broker_dir / _folder).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),  # remote control (inspect, ping)
        "store_processed": False,
    }
else:
    # No reconnection loop when publishing (max_retries 0): with the broker down, a publish
    # fails at once and leaves its job to the outbox relay instead of holding the request.
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "socket_connect_timeout": 2,
        "socket_timeout": 10,
        "max_retries": 0,
    }
if CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    CELERY_BROKER_TRANSPORT = "mlops_portal.broker:Transport"  # reuses its Redis client
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# What a task prints (the console email backend of `make run` prints each email) is logged
# at INFO: an email sent is not a warning.
CELERY_WORKER_REDIRECT_STDOUTS_LEVEL = "INFO"
CELERY_TASK_DEFAULT_QUEUE = "default"
# Exact task names: a glob route is matched with fnmatch on every publish.
CELERY_TASK_ROUTES = {
    "deployments.tasks.run_deployment_task": {"queue": "deploy"},
    "deployments.tasks.canary_step_task": {"queue": "deploy"},
    "deployments.tasks.canary_decision_task": {"queue": "deploy"},
    "monitoring.tasks.dispatch_probes": {"queue": "probes"},
    "monitoring.tasks.scrape_serving_metrics": {"queue": "probes"},
    # Sends wait on mail servers and webhooks; they never hold up validations or deploys.
    "mlops_portal.tasks.deliver_notification_task": {"queue": "notifications"},
}
# The daily digest goes out at this local time (TIME_ZONE), "HH:MM".
DIGEST_TIME = env_time("NOTIFICATIONS_DIGEST_TIME", "07:00")
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_BEAT_SCHEDULE = {
    "requeue-stale-validations": {
        "task": "deployments.tasks.requeue_stale_validations",
        "schedule": 60.0,
    },
    "reconcile-deployments": {
        "task": "deployments.tasks.reconcile_deployments_task",
        "schedule": 30.0,
    },
    "dispatch-probes": {"task": "monitoring.tasks.dispatch_probes", "schedule": 5.0},
    "roll-up-probe-results": {"task": "monitoring.tasks.roll_up_and_prune", "schedule": 60.0},
    "mark-overdue-heartbeats": {
        "task": "monitoring.tasks.mark_overdue_heartbeats",
        "schedule": 10.0,
    },
    "scrape-serving-metrics": {
        "task": "monitoring.tasks.scrape_serving_metrics",
        "schedule": float(SERVING_SCRAPE_INTERVAL_SECONDS),
    },
    "collect-predictions": {
        "task": "monitoring.tasks.collect_predictions",
        "schedule": float(PREDICTION_COLLECT_INTERVAL_SECONDS),
    },
    "roll-up-live-quality": {"task": "monitoring.tasks.roll_up_live_quality", "schedule": 3600.0},
    "compute-drift": {
        "task": "monitoring.tasks.compute_drift",
        "schedule": float(DRIFT_INTERVAL_SECONDS),
    },
    "resolve-quiet-incidents": {
        "task": "monitoring.tasks.resolve_quiet_incidents",
        "schedule": 60.0,
    },
    "sweep-notification-deliveries": {
        "task": "mlops_portal.tasks.sweep_deliveries_task",
        "schedule": 60.0,
    },
    "prune-idempotency-keys": {
        "task": "mlops_portal.tasks.prune_idempotency_keys_task",
        "schedule": 3600.0,
    },
    "prune-old-records": {"task": "mlops_portal.tasks.prune_old_records_task", "schedule": 3600.0},
    "daily-digest": {
        "task": "mlops_portal.tasks.send_daily_digests_task",
        "schedule": crontab(hour=DIGEST_TIME.hour, minute=DIGEST_TIME.minute),
    },
}
CELERY_TIMEZONE = TIME_ZONE
# The outbox (mlops_portal.core.outbox): jobs are rows first, published after commit; the relay
# (`manage.py relay_outbox`) publishes what the committing process could not, polling every
# OUTBOX_RELAY_INTERVAL_SECONDS and backing off up to OUTBOX_RETRY_MAX_SECONDS while the
# broker is down. A row is left to its committing process (or to a relay that took it) for
# OUTBOX_LEASE_SECONDS; published rows are deleted after OUTBOX_RETENTION_HOURS.
OUTBOX_RELAY_INTERVAL_SECONDS = env_int("OUTBOX_RELAY_INTERVAL_SECONDS", 1)
OUTBOX_RETRY_MAX_SECONDS = env_int("OUTBOX_RETRY_MAX_SECONDS", 10)
OUTBOX_LEASE_SECONDS = env_int("OUTBOX_LEASE_SECONDS", 10)
OUTBOX_RETENTION_HOURS = env_int("OUTBOX_RETENTION_HOURS", 24)
# A version stuck in `validating` this long (worker killed) is validated again.
VALIDATION_STALE_AFTER_SECONDS = env_int("VALIDATION_STALE_AFTER_SECONDS", 600)

# The portal's own metrics (`/metrics`, Prometheus text; see README, "Operating the portal").
# A scraper sends `Authorization: Bearer METRICS_TOKEN`, or scrapes from an address in
# METRICS_ALLOWED_NETWORKS (CIDRs); with neither set, /metrics refuses everyone.
METRICS_TOKEN = env_str("METRICS_TOKEN")
METRICS_ALLOWED_NETWORKS = env_list("METRICS_ALLOWED_NETWORKS", [])
# /readyz (same access as /metrics): how long workers have to answer "which queues do you
# consume", and when beat or the outbox count as late.
READYZ_WORKER_TIMEOUT_MS = env_int("READYZ_WORKER_TIMEOUT_MS", 500)
READYZ_BEAT_MAX_AGE_SECONDS = env_int("READYZ_BEAT_MAX_AGE_SECONDS", 60)
READYZ_OUTBOX_MAX_AGE_SECONDS = env_int("READYZ_OUTBOX_MAX_AGE_SECONDS", 60)
# Engineers see a banner when beat is late (READYZ_BEAT_MAX_AGE_SECONDS) or a queue's oldest
# job has waited this long (mlops_portal.health.operations_warnings).
OPS_QUEUE_WAIT_WARNING_SECONDS = env_int("OPS_QUEUE_WAIT_WARNING_SECONDS", 120)

# Change records (django-auditlog): who changed what, old → new; see mlops_portal.core.audit.

# Retention (mlops_portal.overview.retention, beat hourly), in days; 0 keeps rows forever.
# Probe results have theirs above (HEALTHCHECK_RESULT_RETENTION_DAYS).
JOB_LOG_RETENTION_DAYS = env_int("JOB_LOG_RETENTION_DAYS", 90)
NOTIFICATION_RETENTION_DAYS = env_int("NOTIFICATION_RETENTION_DAYS", 90)
CHANGE_RECORD_RETENTION_DAYS = env_int("CHANGE_RECORD_RETENTION_DAYS", 730)
PREDICTION_LOG_RETENTION_DAYS = env_int("PREDICTION_LOG_RETENTION_DAYS", 30)
DRIFT_SCORE_RETENTION_DAYS = env_int("DRIFT_SCORE_RETENTION_DAYS", 180)

# REST API.
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "mlops_portal.core.api.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": [
        "rest_framework.permissions.IsAuthenticated",
        "mlops_portal.core.api.permissions.TokenScope",  # a read-only token's write is 403
    ],
    "DEFAULT_RENDERER_CLASSES": [
        "mlops_portal.core.api.renderers.FastJSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    # JSON only, with a depth limit and text checks (mlops_portal.core.api.parsers); the one
    # multipart operation (registering a version by upload) names its own parsers.
    "DEFAULT_PARSER_CLASSES": ["mlops_portal.core.api.parsers.SafeJSONParser"],
    # DRF's, without parsing the usual Accept header (none, */*, application/json).
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": (
        "mlops_portal.core.api.negotiation.PortalContentNegotiation"
    ),
    # Requests per API token and per user (API_THROTTLE_TOKEN_RATE, API_THROTTLE_USER_RATE):
    # over the rate, 429 with Retry-After (mlops_portal.core.api.throttling).
    "DEFAULT_THROTTLE_CLASSES": ["mlops_portal.core.api.throttling.ApiRateThrottle"],
    "DEFAULT_PAGINATION_CLASS": "mlops_portal.core.api.pagination.StandardPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_FILTER_BACKENDS": ["mlops_portal.core.api.filtering.StrictFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "mlops_portal.core.api.schema.PortalAutoSchema",
    "EXCEPTION_HANDLER": "mlops_portal.core.api.exceptions.exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "MLOps Portal API",
    "DESCRIPTION": "Model registry, deployments, monitoring and docs. Auth: `Token <secret>`.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # The schema views authenticate with REST_FRAMEWORK's classes (tokens, sessions) and
    # refuse anonymous callers (mlops_portal.core.api.schema.token_or_login).
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # Several models have a `kind`: name the health check's so the schema says which.
    "ENUM_NAME_OVERRIDES": {"CheckKindEnum": "monitoring.choices.CheckKind"},
    # Tags and operation ids from the path after this prefix (mlops_portal.core.api.schema).
    "SCHEMA_PATH_PREFIX": r"/api/v1/",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "mlops_portal.core.api.schema.postprocess",
    ],
}

# Notifications (mlops_portal.overview.notifications): a failed send is retried after
# NOTIFICATION_RETRY_SECONDS, doubling each time, up to NOTIFICATION_MAX_ATTEMPTS sends.
NOTIFICATION_MAX_ATTEMPTS = env_int("NOTIFICATION_MAX_ATTEMPTS", 5)
NOTIFICATION_RETRY_SECONDS = env_int("NOTIFICATION_RETRY_SECONDS", 30)
NOTIFICATION_TIMEOUT_SECONDS = env_int("NOTIFICATION_TIMEOUT_SECONDS", 10)
# A delivery still waiting this long after it was due lost its message: sent again.
NOTIFICATION_SWEEP_GRACE_SECONDS = 120

# Email: notifications, the daily digest, password resets.
EMAIL_BACKEND = env_str(
    "EMAIL_BACKEND",
    "django.core.mail.backends.smtp.EmailBackend"
    if env_str("EMAIL_HOST")
    else "django.core.mail.backends.console.EmailBackend",
)
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "mlops-portal@localhost")
SERVER_EMAIL = DEFAULT_FROM_EMAIL

# Security: safe in production by default; `make run` relaxes what plain http needs.
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not DEBUG)
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", not DEBUG)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", not DEBUG)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", not DEBUG)
if env_bool("SECURE_PROXY_SSL_HEADER", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
X_FRAME_OPTIONS = "DENY"
# Behind N reverse proxies, the client is the X-Forwarded-For entry the outermost proxy
# added; 0 (default) trusts no header and uses the connection's address. Used by the
# login lockout, the API token throttle and the security log alike.
TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 0)

# Login protection (django-axes): LOGIN_FAILURE_LIMIT wrong passwords for one user name, or
# from one address, lock that user name or address for LOGIN_LOCKOUT_MINUTES, counted from
# the last failure. The login page then says when the lock lifts. Attempts live in the
# database, so every web worker sees them.
AXES_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("LOGIN_LOCKOUT_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_ON_SUCCESS = True
# Tries during a lock are refused without being counted: the unlock time shown stays true.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_LOCKOUT_CALLABLE = "mlops_portal.core.login_protection.locked_out"
AXES_CLIENT_IP_CALLABLE = "mlops_portal.core.security_log.axes_client_ip"
# Masked in the POST data axes keeps with each attempt (the password always is).
AXES_SENSITIVE_PARAMETERS = ["username", "ip_address", "csrfmiddlewaretoken"]
# API tokens: after API_TOKEN_FAILURE_LIMIT bad tokens from one address within
# API_TOKEN_FAILURE_WINDOW_SECONDS, token requests from it get 429 until the window ends.
API_TOKEN_FAILURE_LIMIT = env_int("API_TOKEN_FAILURE_LIMIT", 20)
API_TOKEN_FAILURE_WINDOW_SECONDS = env_int("API_TOKEN_FAILURE_WINDOW_SECONDS", 300)
# API rates, counted in the shared cache in fixed windows: per token, and per user (all of
# the user's tokens and their browser session together). `off` lifts a limit.
API_THROTTLE_TOKEN_RATE = env_rate("API_THROTTLE_TOKEN_RATE", "600/minute")
API_THROTTLE_USER_RATE = env_rate("API_THROTTLE_USER_RATE", "1200/minute")
# An Idempotency-Key and the response it answered are kept this long (then a key is new again).
IDEMPOTENCY_KEY_RETENTION_HOURS = env_int("IDEMPOTENCY_KEY_RETENTION_HOURS", 24)

# Content-Security-Policy (django-csp) on every response; attachments send a stricter one.
# Scripts only from our own static files: no inline script, no eval. Styles allow
# 'unsafe-inline' because Plotly and Mermaid inject <style> elements and style attributes
# while drawing, and Swagger UI's page carries an inline <style>; a style cannot run code.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF, UNSAFE_INLINE],
        "img-src": [SELF, "data:"],  # Bootstrap's icons are data: SVGs
        "font-src": [SELF, "data:"],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}


def cache_settings(url: str) -> dict:
    """Django's CACHES entry for CACHE_URL: redis://, rediss://, file:///folder or locmem://."""
    if url.startswith(("redis://", "rediss://")):
        # Short timeouts: a throttle that waits on a dead Redis holds the request up.
        options = {"socket_connect_timeout": 2, "socket_timeout": 2}
        return {"BACKEND": "mlops_portal.core.cache.RedisCache", "LOCATION": url,
                "KEY_PREFIX": "portal", "OPTIONS": options}  # fmt: skip
    if url.startswith("file://"):
        return {"BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
                "LOCATION": url.removeprefix("file://")}  # fmt: skip
    if url == "locmem://":
        return {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    raise ImproperlyConfigured(
        f"CACHE_URL must be redis://…, rediss://…, file:///folder or locmem://, not {url!r}"
    )


# The cache holds the API token throttle's counters, which every web worker must share:
# Redis when the broker is Redis, else a folder under VAR_DIR (one machine, `make run`).
CACHES = {
    "default": cache_settings(
        env_str(
            "CACHE_URL",
            REDIS_URL
            if CELERY_BROKER_URL.startswith(("redis://", "rediss://"))
            else f"file://{VAR_DIR / 'cache'}",
        )
    )
}

# Logs (mlops_portal.core.logs): JSON lines with LOG_FORMAT=json, readable lines by default;
# every line of a request or of a job it enqueued carries its request id; secrets redacted.
LOG_FORMAT = env_str("LOG_FORMAT", "console")
LOGGING = {
    **logging_config(LOG_FORMAT, env_str("LOG_LEVEL", "INFO")),
    "filters": {"one_line_forbidden": {"()": "mlops_portal.core.security_log.OneLineForbidden"}},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # Refusals are logged once, by mlops_portal.security, without a traceback.
        "django.request": {"filters": ["one_line_forbidden"]},
        # mlops_portal.security writes the one line per failed login; axes would add two.
        "axes": {"level": "ERROR"},
        # httpx logs every outgoing request at INFO (scrapes, webhooks, the demo's traffic
        # several times a second); the callers log what went wrong themselves.
        "httpx": {"level": "WARNING"},
        # gunicorn's own lines through the same formatter (its access log is ours: one line
        # per request with its request id, mlops_portal.request).
        "gunicorn.error": {"level": "INFO", "propagate": True},
    },
}
# Celery workers and beat log through LOGGING too (mlops_portal.celery connects
# setup_logging), not through Celery's own format.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

# Forms: django-bootstrap5 renders every form (`_form_fields.html`). Labels carry the
# text, no placeholder copies them; a required field's wrapper gets `required` (an asterisk
# in portal.css). Its CDN settings are never used: Bootstrap comes from our static files.
BOOTSTRAP5 = {"set_placeholder": False, "required_css_class": "required"}
