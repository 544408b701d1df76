from functools import wraps

from django.contrib.auth.decorators import login_required
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema


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


# --- the OpenAPI schema: tags, operation ids and error responses ----------------------

# The first path segment after /api/v1/ names the area Swagger groups an operation under.
TAGS = {
    "models": "Models",
    "targets": "Deployments",
    "deployments": "Deployments",
    "checks": "Monitoring",
    "alert-rules": "Monitoring",
    "incidents": "Incidents",
    "pages": "Docs",
    "changes": "Changes",
    "metrics": "Metrics",
    "search": "Search",
    "tokens": "Tokens",
}
TAG_DESCRIPTIONS = {
    "Models": "Registered models and their versions.",
    "Deployments": "Deploy targets, deployment requests, approvals, rollbacks, logs.",
    "Monitoring": "Health checks (probes and heartbeats), their results, and alert rules.",
    "Incidents": "Incidents, their transitions and notes.",
    "Docs": "Documentation pages and generated model cards.",
    "Changes": "The change feed: who changed what, when.",
    "Metrics": "Dashboard figures (DORA and others), as JSON or CSV.",
    "Search": "Search across every kind of object.",
    "Tokens": "The caller's API tokens.",
}
SINGULAR = {
    "models": "model", "versions": "version", "targets": "target",
    "deployments": "deployment", "checks": "check", "incidents": "incident", "pages": "page",
    "changes": "change", "tokens": "token", "comments": "comment", "notes": "note",
    "revisions": "revision", "logs": "log", "alert_rules": "alert_rule", "aliases": "alias",
}  # fmt: skip
VERBS = {"POST": "create", "PATCH": "update", "PUT": "replace", "DELETE": "delete"}


class PortalAutoSchema(AutoSchema):
    """drf-spectacular's AutoSchema with a tag per area and operation ids that read as
    what they do (`list_models`, `get_model_version`, `approve_deployment`), stable as long
    as the paths are. A view names an odd one with `extend_schema(operation_id=…)`."""

    def get_tags(self) -> list[str]:
        path = self._tokenize_path()
        if path[:1] == ["models"] and path[-1:] == ["card"]:
            return ["Docs"]  # the generated model card is a document
        return [TAGS.get(path[0], path[0].title())] if path else []

    def get_operation_id(self) -> str:
        path = [word.replace("-", "_") for word in self._tokenize_path()]
        nouns = [SINGULAR.get(word, word) for word in path]
        if self.method == "GET":
            if self._is_list_view():
                return "_".join(["list", *nouns[:-1], path[-1]])
            return "_".join(["get", *nouns])
        mapping = self._action_mapping()
        if "get" in mapping and self.method == "POST":  # a sub-collection: add_incident_note
            return "_".join(["add", *nouns])
        if mapping and self.method == "POST":  # an action: approve_deployment, pause_check
            return "_".join([path[-1], *nouns[:-1]])
        return "_".join([VERBS[self.method], *nouns])

    def _action_mapping(self) -> dict:
        """The methods of the view's extra action (@action), or {} for a standard one."""
        method = getattr(self.view, str(getattr(self.view, "action", None)), None)
        return getattr(method, "mapping", {})


ERROR_SCHEMA = {
    "type": "object",
    "description": (
        "Every 4xx answer: `detail` for the request as a whole (bad token, not allowed, not "
        "found, a state that forbids the action), or each refused field named with its "
        'messages: `{"name": ["This field is required."]}`; `non_field_errors` for the '
        "body as a whole. A list or object field's messages may be nested by index or key."
    ),
    "properties": {
        "detail": {"type": "string"},
        "non_field_errors": {"type": "array", "items": {"type": "string"}},
    },
    "additionalProperties": {
        "anyOf": [
            {"type": "string"},
            {"type": "array", "items": {"type": "string"}},
            {"type": "object", "additionalProperties": {}},
        ]
    },
}
ERRORS = {
    "400": "Invalid input: the body or a query parameter, each field named.",
    "401": "No credentials, or an invalid, revoked or expired token.",
    "403": "Authenticated, but this user (or token) may not do this.",
    "404": "No such object (or path parameter of the wrong form).",
    "409": "The object's current state does not allow this (e.g. an edit conflict).",
    "413": "The body (or the uploaded artifact) is too large.",
    "415": "Unsupported Content-Type.",
    "429": "Too many requests (e.g. invalid tokens from this address); see Retry-After.",
}
WRITES = {"post", "put", "patch", "delete"}


def postprocess(result, generator, request, public):
    """POSTPROCESSING_HOOK: error responses, the generator workaround, tag descriptions."""
    add_error_responses(result)
    for operations in result["paths"].values():
        for operation in operations.values():
            optional_body_with_two_media_types(operation)
    result["tags"] = [
        {"name": name, "description": text} for name, text in TAG_DESCRIPTIONS.items()
    ]
    return result


def add_error_responses(result: dict) -> None:
    """The shared `Error` body for the 4xx answers each operation can
    give, in the media types of its success answer (so `?format=csv` errors are documented
    as CSV). Which codes: 401, 403 and 429 everywhere (every operation but the signed
    callback needs a token; any caller may be throttled), 404 where the path names an
    object or a page is asked for, 400 where a body or a query parameter is read, 409 on
    writes, 413 and 415 where a body is read."""
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    ref = {"$ref": "#/components/schemas/Error"}
    for operations in result["paths"].values():
        for method, operation in operations.items():
            media_types = success_media_types(operation)
            responses = operation.setdefault("responses", {})
            for code in error_codes(method, operation):
                responses.setdefault(
                    code,
                    {
                        "description": ERRORS[code],
                        "content": {media: {"schema": ref} for media in media_types},
                    },
                )


def optional_body_with_two_media_types(operation: dict) -> None:
    """An operation taking two media types (registering a version: JSON or multipart) says
    its body is optional. openapi-python-client's template for such operations names
    `Unset` without importing it when the body is required (a `{% set %}` inside a Jinja
    loop), so the generated module would not import. The server's answer is the same
    either way: without a body, a 400 naming the required fields."""
    body = operation.get("requestBody")
    if body and len(body.get("content", {})) > 1:
        body["required"] = False


def success_media_types(operation: dict) -> list[str]:
    for code, response in operation.get("responses", {}).items():
        if code.startswith("2") and response.get("content"):
            return list(response["content"])
    return ["application/json"]


def error_codes(method: str, operation: dict) -> list[str]:
    parameters = operation.get("parameters", [])
    has_body = "requestBody" in operation
    codes = ["401", "403", "429"]
    if any(p.get("in") == "path" or p.get("name") == "page" for p in parameters):
        codes.append("404")  # no such object, or a page past the last one
    if has_body or any(p.get("in") == "query" for p in parameters):
        codes.append("400")
    if method in WRITES:
        codes.append("409")
    if has_body:
        codes += ["413", "415"]
    return sorted(codes)
