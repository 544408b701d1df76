"""Settings for the test suite: the real settings, with test defaults for the services.

`make test` runs against PostgreSQL and Redis on 127.0.0.1; DATABASE_URL and REDIS_URL
override these defaults like they do in production."""

import os
import tempfile

os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/15")
os.environ.setdefault("SECRET_KEY", "tests-only-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz")
os.environ.setdefault("MEDIA_ROOT", tempfile.mkdtemp(prefix="mlops-test-media-"))
os.environ.setdefault("STATIC_ROOT", tempfile.mkdtemp(prefix="mlops-test-static-"))
os.environ.setdefault("SERVING_DIR", tempfile.mkdtemp(prefix="mlops-test-serving-"))
os.environ.setdefault("SECURE_SSL_REDIRECT", "false")
os.environ.setdefault("SESSION_COOKIE_SECURE", "false")
os.environ.setdefault("CSRF_COOKIE_SECURE", "false")
os.environ.setdefault("SECURE_HSTS_SECONDS", "0")
os.environ.setdefault(
    "STATICFILES_STORAGE", "django.contrib.staticfiles.storage.StaticFilesStorage"
)
os.environ.setdefault("LOG_LEVEL", "WARNING")
# One process's memory, emptied before each test (tests/conftest.py); the Redis cache that
# production uses is exercised by tests/test_login_protection.py.
os.environ.setdefault("CACHE_URL", "locmem://")
# No test runs into the API rate limits by accident; tests/test_api_throttling.py lowers them.
os.environ.setdefault("API_THROTTLE_TOKEN_RATE", "100000/minute")
os.environ.setdefault("API_THROTTLE_USER_RATE", "100000/minute")

from mlops_portal.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # speed only
# The API takes JSON bodies (one multipart operation, which tests send as multipart).
REST_FRAMEWORK = {**REST_FRAMEWORK, "TEST_REQUEST_DEFAULT_FORMAT": "json"}  # noqa: F405

# A deploy worker that kills itself at this named step (deployments/steps.py); tests only.
DEPLOY_CRASH_AT = os.environ.get("DEPLOY_CRASH_AT", "")

if os.environ.get("TESTS_LIVE_PORTAL"):
    # The gunicorn of the live-portal tests (tests/live.py) outlives the table flushes
    # between tests, which renumber the content types; Django caches them per process, and
    # a change record would point at a content type that is gone. Each request reads them
    # anew, as each task of the worker does (mlops_portal.celery).
    from django.core.signals import request_started

    def forget_cached_content_types(**kwargs):
        from django.contrib.contenttypes.models import ContentType

        ContentType.objects.clear_cache()

    request_started.connect(forget_cached_content_types, weak=False)
