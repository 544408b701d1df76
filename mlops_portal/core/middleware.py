from functools import cache

from csp.constants import HEADER, HEADER_REPORT_ONLY
from csp.middleware import CheckableLazyObject, CSPMiddleware
from csp.utils import build_policy
from django.conf import settings
from django.contrib.auth.middleware import LoginRequiredMiddleware as DjangoLoginRequired
from django.contrib.messages.middleware import MessageMiddleware
from django.contrib.messages.storage import default_storage
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.utils.functional import SimpleLazyObject, empty


class LoginRequiredMiddleware(DjangoLoginRequired):
    """Redirect anonymous browsers to the login page, except on the REST API.

    `/api/v1/` authenticates tokens itself and must answer 401 JSON, never a login redirect.
    """

    def process_view(self, request, view_func, view_args, view_kwargs):
        if request.path_info.startswith("/api/v1/"):
            return None
        return super().process_view(request, view_func, view_args, view_kwargs)


class ContentSecurityPolicyMiddleware(CSPMiddleware):
    """django-csp's middleware, with the policy headers built once per process.

    django-csp builds both headers from the settings on every response (a sixth of a bare
    request's CPU, bench/instructions.py "floor"). A response that no decorator customised
    and a request that used no nonce get the same headers every time: those are cached,
    rebuilt when a test changes the settings. Anything else goes through django-csp."""

    def process_response(self, request, response):
        if getattr(request, "_csp_nonce", None) is not None or any(
            hasattr(response, name) for name in CUSTOMISED
        ):
            return super().process_response(request, response)
        if response.status_code in (500, 404) and settings.DEBUG:
            return response
        path = request.path_info
        for header, setting, exempt, report_only in HEADERS:
            policy, excluded = static_policy(setting, report_only)
            if (
                policy
                and header not in response
                and getattr(response, exempt, False) is False
                and not path.startswith(excluded)
            ):
                response[header] = policy
        request.csp_nonce = CheckableLazyObject(self._csp_nonce_post_response)
        return response


# What a view's CSP decorators set on a response (its own policy, not the settings').
CUSTOMISED = tuple(
    f"_csp_{kind}{suffix}" for kind in ("config", "update", "replace") for suffix in ("", "_ro")
)
HEADERS = (
    (HEADER, "CONTENT_SECURITY_POLICY", "_csp_exempt", False),
    (HEADER_REPORT_ONLY, "CONTENT_SECURITY_POLICY_REPORT_ONLY", "_csp_exempt_ro", True),
)


@cache
def static_policy(setting: str, report_only: bool) -> tuple[str, tuple[str, ...]]:
    """The header built from the settings alone, and the path prefixes it skips."""
    prefixes = (getattr(settings, setting, None) or {}).get("EXCLUDE_URL_PREFIXES") or ()
    return build_policy(report_only=report_only), tuple(prefixes)


@receiver(setting_changed)
def _policy_settings_changed(setting, **kwargs):
    if setting.startswith("CONTENT_SECURITY_POLICY"):
        static_policy.cache_clear()


class LazyMessageMiddleware(MessageMiddleware):
    """Django's message middleware, building the message storage only when the request
    uses it: API calls never do, and building it (a signed-cookie storage and a session
    one) cost more than the rest of the middleware. Storage never touched has nothing to
    store, which is what Django's `update` would find out."""

    def process_request(self, request):
        request._messages = SimpleLazyObject(lambda: default_storage(request))

    def process_response(self, request, response):
        messages = getattr(request, "_messages", None)
        if isinstance(messages, SimpleLazyObject) and messages._wrapped is empty:
            return response
        return super().process_response(request, response)
