"""The endpoints of MLflow's Model Registry REST API, each a small function from the
request's fields to MLflow's response body. Every change goes through
`deployments.services`, as the pages and `/api/v1/` do."""

import logging
from types import SimpleNamespace as Row

import orjson
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.http import HttpResponse
from django.views.decorators.csrf import csrf_exempt

from deployments import services
from deployments.mlflow_api import auth, models_page, wire
from deployments.mlflow_api import search as grammar
from deployments.mlflow_api.errors import MlflowError, from_service, invalid, missing
from deployments.mlflow_api.params import Params
from deployments.models import ModelAlias, ModelVersion, RegisteredModel
from deployments.services import aliases
from mlops_portal.core.compiled import CompiledValues
from mlops_portal.core.policy import require

logger = logging.getLogger(__name__)

MODELS_MAX_RESULTS = 1000
VERSIONS_MAX_RESULTS = 200_000
STAGE_CHOICES = "None, Staging, Production, Archived"


# --- lookups ---------------------------------------------------------------------------------


def _model(name: str) -> RegisteredModel:
    try:
        return RegisteredModel.objects.for_api().get(name=name)
    except RegisteredModel.DoesNotExist:
        raise missing(f"Registered Model with name={name} not found") from None


def _version(name: str, number: int) -> ModelVersion:
    try:
        return ModelVersion.objects.for_api().get(model__name=name, number=number)
    except ModelVersion.DoesNotExist:
        raise missing(f"Model Version (name={name}, version={number}) not found") from None


def _named_version(params: Params) -> ModelVersion:
    return _version(params.string("name", required=True), params.version())


def _stage(name: str) -> str:
    stage = wire.STAGES_BY_NAME.get(name.lower())
    if stage is None:
        raise invalid(f"Invalid Model Version stage: {name}. Value must be one of {STAGE_CHOICES}.")
    return stage


def _model_body(request, model: RegisteredModel) -> dict:
    latest = wire.latest_versions([model.pk]).get(model.pk, [])
    pairs = wire.aliases_of_models([model.pk]).get(model.pk, [])
    return {"registered_model": wire.registered_model(model, request, latest, pairs)}


def _version_body(request, version: ModelVersion) -> dict:
    names = wire.aliases_of_versions([version.pk]).get(version.pk, [])
    return {"model_version": wire.model_version(version, request, names)}


# --- registered models -----------------------------------------------------------------------


def create_registered_model(request, params):
    name = params.string("name", required=True)
    if name != name.strip().lower():
        raise invalid(
            f"Invalid model name {name!r}: the portal's model names are lowercase letters, "
            "digits and hyphens (e.g. churn-classifier)."
        )
    if RegisteredModel.objects.filter(name=name).exists():
        raise MlflowError(
            "RESOURCE_ALREADY_EXISTS", f"Registered Model (name={name}) already exists."
        )
    model = services.create_model(
        request.user,
        name=name,
        description=params.string("description"),
        mlflow_tags=params.tags(),
    )
    return _model_body(request, _model(model.name))


def get_registered_model(request, params):
    return _model_body(request, _model(params.string("name", required=True)))


def update_registered_model(request, params):
    model = _model(params.string("name", required=True))
    services.update_model(request.user, model, description=params.string("description"))
    return _model_body(request, model)


def rename_registered_model(request, params):
    model = _model(params.string("name", required=True))
    new_name = params.string("new_name", required=True)
    if RegisteredModel.objects.filter(name=new_name).exclude(pk=model.pk).exists():
        raise MlflowError(
            "RESOURCE_ALREADY_EXISTS", f"Registered Model (name={new_name}) already exists."
        )
    services.rename_model(request.user, model, new_name)
    return _model_body(request, model)


def delete_registered_model(request, params):
    services.delete_model(request.user, _model(params.string("name", required=True)))
    return {}


def search_registered_models(request, params):
    max_results = _max_results(params, 100, MODELS_MAX_RESULTS)
    clauses = grammar.parse_filter(params.string("filter"))
    condition = grammar.models_filter(clauses)
    order = grammar.models_order(params.strings("order_by"))
    offset = grammar.page_offset(params.string("page_token"))
    if order == ["name"] and (not clauses or grammar.only_not_prompts(clauses)):
        # Every model (but prompts, as the stock client asks) by name: the database writes it.
        without_prompts = bool(clauses)
        models, found = models_page.by_name(request, offset, max_results, without_prompts)
    else:
        chosen = RegisteredModel.objects.filter(condition).order_by(*order)
        models, found = models_page.built_in_python(chosen, request, offset, max_results)
    body = {"registered_models": models}
    if found > max_results:
        body["next_page_token"] = grammar.page_token(offset + max_results)
    return body


def get_latest_versions(request, params):
    model = _model(params.string("name", required=True))
    stages = [_stage(name) for name in params.strings("stages")] or None
    versions = wire.latest_versions([model.pk], stages).get(model.pk, [])
    names = wire.aliases_of_versions([version.id for version in versions])
    return {
        "model_versions": [
            wire.model_version(version, request, names.get(version.id)) for version in versions
        ]
    }


def set_registered_model_tag(request, params):
    model = _model(params.string("name", required=True))
    key = params.string("key", required=True)
    services.set_key_value_tag(request.user, model, key, params.string("value"))
    return {}


def delete_registered_model_tag(request, params):
    model = _model(params.string("name", required=True))
    key = params.string("key", required=True)
    services.set_key_value_tag(request.user, model, key, "", remove=True)
    return {}


# --- aliases ---------------------------------------------------------------------------------


def set_registered_model_alias(request, params):
    name = params.string("name", required=True)
    alias = params.string("alias", required=True)
    number = params.version()
    aliases.check_alias_name(alias)
    try:
        aliases.set_alias(request.user, _model(name), alias, number)
    except ModelVersion.DoesNotExist:
        raise missing(f"Model Version (name={name}, version={number}) not found") from None
    return {}


def delete_registered_model_alias(request, params):
    model = _model(params.string("name", required=True))
    aliases.delete_alias(request.user, model, params.string("alias", required=True))
    return {}


def get_model_version_by_alias(request, params):
    name = params.string("name", required=True)
    alias = params.string("alias", required=True)
    model = _model(name)
    if alias.lower() == "latest":
        newest = model.versions.order_by("-number").first()
        if newest is None:
            raise missing(f"Latest version not found for model {name}.")
        return _version_body(request, _version(name, newest.number))
    try:
        number = ModelAlias.objects.values_list("version__number", flat=True).get(
            model=model, alias=alias
        )
    except ModelAlias.DoesNotExist:
        raise invalid(f"Registered model alias {alias} not found.") from None
    return _version_body(request, _version(name, number))


# --- model versions --------------------------------------------------------------------------


def create_model_version(request, params):
    name = params.string("name", required=True)
    fields = {
        "artifact_uri": params.string("source", required=True),
        "run_id": params.string("run_id"),
        "mlflow_tags": params.tags(),
        "source_url": params.string("run_link"),
        "description": params.string("description"),
    }
    params.string("model_id")  # MLflow 3's logged-model id: checked, not kept
    try:
        version = services.register_version(request.user, name, **fields)
    except RegisteredModel.DoesNotExist:
        raise missing(f"Registered Model with name={name} not found") from None
    # The service returned the whole row: answer from it (no re-read; nothing names it yet).
    version.model_name, version.registered_by_name = name, request.user.username
    return {"model_version": wire.model_version(version, request)}


def get_model_version(request, params):
    """Read with compiled queries (mlops_portal.core.compiled): MLflow clients call this
    for every model they load."""
    name, number = params.string("name", required=True), params.version()
    rows = wire.VERSION_ROW.rows(name, number) if 0 <= number <= wire.MAX_NUMBER else []
    if not rows:
        raise missing(f"Model Version (name={name}, version={number}) not found")
    version = Row(**rows[0])
    return {"model_version": wire.model_version(version, request, version.alias_names)}


def update_model_version(request, params):
    version = _named_version(params)
    services.update_version(request.user, version, description=params.string("description"))
    return _version_body(request, _version(version.model.name, version.number))


def transition_model_version_stage(request, params):
    stage = _stage(params.string("stage", required=True))
    archive = params.boolean("archive_existing_versions")
    version = _named_version(params)
    aliases.transition_stage(request.user, version, stage, archive_existing=archive)
    return _version_body(request, _version(version.model.name, version.number))


def delete_model_version(request, params):
    services.delete_version(request.user, _named_version(params))
    return {}


def get_model_version_download_uri(request, params):
    return {"artifact_uri": wire.download_uri(_named_version(params), request)}


def search_model_versions(request, params):
    max_results = _max_results(params, 10_000, VERSIONS_MAX_RESULTS)
    clauses = grammar.parse_filter(params.string("filter"))
    condition = grammar.versions_filter(clauses)
    order_by = params.strings("order_by")
    order = grammar.versions_order(order_by)
    offset = grammar.page_offset(params.string("page_token"))
    if not order_by and _one_model(clauses):  # `name = '…'`: a compiled query
        found = VERSIONS_OF_MODEL.rows(clauses[0].value, limit=max_results + 1, offset=offset)
        rows = [Row(**row) for row in found]
    else:
        versions = ModelVersion.objects.filter(condition).order_by(*order)
        rows = wire.version_rows(versions, offset, offset + max_results + 1)
    # Without aliases: an MLflow server leaves them out of search results too.
    body = {"model_versions": [wire.model_version(v, request) for v in rows[:max_results]]}
    if len(rows) > max_results:
        body["next_page_token"] = grammar.page_token(offset + max_results)
    return body


# The versions of one model in MLflow's default order (what `search_model_versions("name='…'")`
# asks for), compiled once per process (mlops_portal.core.compiled).
VERSIONS_OF_MODEL = CompiledValues(
    lambda name: (
        ModelVersion.objects.filter(model__name=name)
        .order_by(*grammar.versions_order([]))
        .for_api()
        .values(*wire.VERSION_COLUMNS, **wire.TIMES)
    ),
    "\x00model-name",
)


def _one_model(clauses) -> bool:
    """Whether the filter is exactly `name = '<a name>'`."""
    if len(clauses) != 1:
        return False
    clause = clauses[0]
    return (clause.kind, clause.key, clause.comparator) == ("attribute", "name", "=") and (
        isinstance(clause.value, str)
    )


def set_model_version_tag(request, params):
    version = _named_version(params)
    key = params.string("key", required=True)
    services.set_key_value_tag(request.user, version, key, params.string("value"))
    return {}


def delete_model_version_tag(request, params):
    version = _named_version(params)
    key = params.string("key", required=True)
    services.set_key_value_tag(request.user, version, key, "", remove=True)
    return {}


def _max_results(params: Params, default: int, limit: int) -> int:
    value = params.integer("max_results", default)
    if value < 1:
        raise invalid(
            f"Invalid value for max_results. It must be a positive integer, but got {value}"
        )
    if value > limit:
        raise invalid(
            "Invalid value for request parameter max_results. It must be at most "
            f"{limit}, but got value {value}"
        )
    return value


# --- the one entry point ---------------------------------------------------------------------

# (path under /api/2.0/mlflow/, method) → (handler, the policy action a write needs).
ROUTES = {
    ("registered-models/create", "POST"): (create_registered_model, "model.create"),
    ("registered-models/get", "GET"): (get_registered_model, None),
    ("registered-models/update", "PATCH"): (update_registered_model, "model.edit"),
    ("registered-models/rename", "POST"): (rename_registered_model, "model.edit"),
    ("registered-models/delete", "DELETE"): (delete_registered_model, "model.delete"),
    ("registered-models/search", "GET"): (search_registered_models, None),
    ("registered-models/get-latest-versions", "POST"): (get_latest_versions, None),
    ("registered-models/get-latest-versions", "GET"): (get_latest_versions, None),
    ("registered-models/set-tag", "POST"): (set_registered_model_tag, "model.edit"),
    ("registered-models/delete-tag", "DELETE"): (delete_registered_model_tag, "model.edit"),
    ("registered-models/alias", "POST"): (set_registered_model_alias, "alias.set"),
    ("registered-models/alias", "DELETE"): (delete_registered_model_alias, "alias.set"),
    ("registered-models/alias", "GET"): (get_model_version_by_alias, None),
    ("model-versions/create", "POST"): (create_model_version, "version.register"),
    ("model-versions/get", "GET"): (get_model_version, None),
    ("model-versions/update", "PATCH"): (update_model_version, "version.edit"),
    ("model-versions/transition-stage", "POST"): (transition_model_version_stage, "version.edit"),
    ("model-versions/delete", "DELETE"): (delete_model_version, "version.delete"),
    ("model-versions/get-download-uri", "GET"): (get_model_version_download_uri, None),
    ("model-versions/search", "GET"): (search_model_versions, None),
    ("model-versions/set-tag", "POST"): (set_model_version_tag, "version.edit"),
    ("model-versions/delete-tag", "DELETE"): (delete_model_version_tag, "version.edit"),
}


def _json(body: dict) -> HttpResponse:
    return HttpResponse(orjson.dumps(body), content_type="application/json")


# Writes whose every change is one service call in one transaction of its own (registering
# writes all its rows in one): the endpoint's transaction around it would only add a
# SAVEPOINT and its RELEASE, two round trips.
ONE_SERVICE_TRANSACTION = {create_model_version}


@csrf_exempt
def endpoint(request, path: str):
    """Answer one MLflow call: authenticate, refuse a role that may not write at all,
    run a write's handler in one transaction, and turn every refusal into MLflow's error body."""
    try:
        route = ROUTES.get((path.rstrip("/"), request.method))
        if route is None:
            raise MlflowError(
                "ENDPOINT_NOT_FOUND", f"No MLflow endpoint {request.method} {request.path}."
            )
        request.user = auth.request_user(request)
        handler, action = route
        if action is not None:
            auth.refuse_read_only_token(request.user)
            require(request.user, action)
        params = Params(request)
        if action is None:  # a read: no transaction, no BEGIN/COMMIT round trips
            return _json(handler(request, params))
        if handler in ONE_SERVICE_TRANSACTION:  # nested, its transaction cost a SAVEPOINT
            return _json(handler(request, params))
        with transaction.atomic():  # a write: all of it or nothing
            return _json(handler(request, params))
    except MlflowError as refused:
        return refused.response()
    except (ValidationError, PermissionDenied) as refused:
        return from_service(refused).response()
