from functools import wraps

from django.contrib.auth.decorators import login_required
from drf_spectacular.extensions import OpenApiAuthenticationExtension


class ApiTokenScheme(OpenApiAuthenticationExtension):
    """Documents `Authorization: Token <secret>` in the OpenAPI schema."""

    target_class = "mlops_portal.core.api.authentication.ApiTokenAuthentication"
    name = "tokenAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Token <secret>` or `Bearer <secret>`, from the API tokens page.",
        }


def token_or_login(view):
    """Serve a schema view to an API token as well as to a session.

    A request with an `Authorization` header goes straight to the DRF view, which
    authenticates it with the API's classes and answers 401 JSON when the token is bad
    (SPECTACULAR_SETTINGS' SERVE_PERMISSIONS); any other anonymous caller is a browser,
    sent to the login page."""
    browser_view = login_required(view)

    @wraps(view)
    def wrapped(request, *args, **kwargs):
        if "HTTP_AUTHORIZATION" in request.META:
            return view(request, *args, **kwargs)
        return browser_view(request, *args, **kwargs)

    return wrapped
