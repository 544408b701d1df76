"""Registry pages. Each view fetches what the user may see or change in one line, then calls
a service for any change; services hold the rules, views only translate to HTML."""

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from deployments import charts, services
from deployments.filters import RegisteredModelFilter
from deployments.forms import ModelCreateForm, ModelEditForm, VersionEditForm, VersionRegisterForm
from deployments.models import Deployment, ModelVersion, RegisteredModel
from deployments.services import aliases
from mlops_portal.core import uploads
from mlops_portal.core.policy import can, require
from mlops_portal.core.utils import service_errors_on

MODELS_PER_PAGE = 25
VERSIONS_PER_PAGE = 25


def _get_model(name) -> RegisteredModel:
    return get_object_or_404(RegisteredModel.objects.select_related("owner"), name=name)


def _get_editable_model(request, name) -> RegisteredModel:
    model = _get_model(name)
    require(request.user, "model.edit", model)
    return model


def _get_version(name, number) -> ModelVersion:
    return get_object_or_404(ModelVersion.objects.for_list(), model__name=name, number=number)


def model_list(request):
    filters = RegisteredModelFilter(request.GET, queryset=RegisteredModel.objects.for_list())
    page = Paginator(filters.qs, MODELS_PER_PAGE).get_page(request.GET.get("page"))
    return render(
        request,
        "deployments/model_list.html",
        {"filters": filters, "page": page, "can_create": can(request.user, "model.create")},
    )


def model_create(request):
    require(request.user, "model.create")
    form = ModelCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        with service_errors_on(form):
            model = services.create_model(request.user, **form.cleaned_data)
            messages.success(request, f"Model {model.name} created. Register its first version.")
            return redirect("version-create", name=model.name)
    return render(request, "deployments/model_form.html", {"form": form})


def model_detail(request, name):
    model = _get_model(name)
    versions = model.versions.for_list().order_by("-number")
    if not request.GET.get("archived"):
        versions = versions.filter(archived=False)
    page = Paginator(versions, VERSIONS_PER_PAGE).get_page(request.GET.get("page"))
    metric_history = list(
        model.versions.filter(archived=False).order_by("number").values_list("number", "metrics")
    )
    metric_names = charts.metric_names(metric_history)
    chosen_metric = request.GET.get("metric") or (metric_names[0] if metric_names else "")
    live_on = {}  # version id → its live deployments (one query for the whole model)
    for deployment in (
        Deployment.objects.live()
        .filter(version__model=model)
        .select_related("target", "version")
        .order_by("target__name")
    ):
        live_on.setdefault(deployment.version_id, []).append(deployment)
    return render(
        request,
        "deployments/model_detail.html",
        {
            "model": model,
            "page": page,
            "metric_names": metric_names,
            "version_metric_names": charts.metric_names(
                [(v.number, v.metrics) for v in page.object_list]
            ),
            "chosen_metric": chosen_metric,
            "metric_chart": charts.metric_chart(metric_history, chosen_metric),
            "can_edit": can(request.user, "model.edit", model),
            "can_register": can(request.user, "version.register", model),
            "aliases": model.aliases.select_related("version").order_by("alias"),
            "can_set_alias": can(request.user, "alias.set", model),
            "showing_archived": bool(request.GET.get("archived")),
            "live_on": live_on,
            "live_now": [d for live in live_on.values() for d in live],
        },
    )


def model_edit(request, name):
    model = _get_editable_model(request, name)
    initial = {
        "team": model.team,
        "description": model.description,
        "tags": model.tags,
    }
    form = ModelEditForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        with service_errors_on(form):
            services.update_model(request.user, model, **form.cleaned_data)
            messages.success(request, "Model updated.")
            return redirect(model)
    return render(request, "deployments/model_edit.html", {"form": form, "model": model})


def version_create(request, name):
    model = _get_model(name)
    require(request.user, "version.register", model)
    form = VersionRegisterForm(request.POST or None, request.FILES or None)
    if refused := uploads.refusal(request):  # too large: refused while it arrived
        form = VersionRegisterForm(request.POST, request.FILES)
        form.is_valid()
        form.add_error("artifact", refused)
    elif request.method == "POST" and form.is_valid():
        with service_errors_on(form):
            version = services.register_version(request.user, model.name, **form.cleaned_data)
            messages.success(request, f"Version {version.number} registered; validating now.")
            return redirect(version)
    uploads.ask_again_for_files(form, request)
    context = {"form": form, "model": model}
    status = 413 if refused else 200
    return render(request, "deployments/version_form.html", context, status=status)


def version_detail(request, name, number):
    """The version page; for htmx polls, only its status panel."""
    version = _get_version(name, number)
    can_request = can(request.user, "deployment.request")
    if request.htmx:
        context = {"version": version, "can_request": can_request}
        return render(request, "deployments/_version_status.html", context)
    return render(
        request,
        "deployments/version_detail.html",
        {
            "version": version,
            "model": version.model,
            "events": version.events.select_related("actor"),
            "can_edit": can(request.user, "version.edit", version),
            "can_request": can_request,
            "deployments": version.deployments.for_list()[:20],
        },
    )


def version_edit(request, name, number):
    model = _get_editable_model(request, name)
    version = _get_version(name, number)
    initial = {"description": version.description, "tags": version.tags}
    form = VersionEditForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        with service_errors_on(form):
            services.update_version(request.user, version, **form.cleaned_data)
            messages.success(request, "Version updated.")
            return redirect(version)
    return render(
        request,
        "deployments/version_edit.html",
        {"form": form, "model": model, "version": version},
    )


@require_POST
@require_POST
def model_alias(request, name):
    """Set an alias (alias + version) or, with `remove`, delete one; back to the model."""
    model = _get_model(name)
    alias = request.POST.get("alias", "").strip()
    try:
        if request.POST.get("remove"):
            aliases.delete_alias(request.user, model, alias)
            messages.success(request, f"Alias @{alias} removed.")
        else:
            number = _int_or(request.POST.get("version"), 0)
            aliases.set_alias(request.user, model, alias, number)
            messages.success(request, f"@{alias} now names v{number}.")
    except ModelVersion.DoesNotExist:
        messages.error(request, f"{model} has no version {request.POST.get('version')!r}.")
    except ValidationError as refused:
        messages.error(request, " ".join(refused.messages))
    return redirect(model)


def version_archive(request, name, number):
    version = _get_version(name, number)
    archive = request.POST.get("archived") == "1"
    services.set_version_archived(request.user, version, archive)
    messages.success(request, f"Version {number} {'archived' if archive else 'restored'}.")
    return redirect(version)


MAX_COMPARED = 8


def version_compare(request, name):
    """Versions side by side (?v=1&v=2&v=3, or ?a=&b=): metrics with their change from the
    first one chosen, parameters that differ. Without a choice, the two newest."""
    model = _get_model(name)
    numbers = list(model.versions.order_by("-number").values_list("number", flat=True))
    chosen = [_int_or(n, 0) for n in request.GET.getlist("v")] or [
        _int_or(request.GET.get(key), default)
        for key, default in (("a", numbers[1] if len(numbers) > 1 else 0),
                             ("b", numbers[0] if numbers else 0))
    ]  # fmt: skip
    chosen = list(dict.fromkeys(n for n in chosen if n in numbers))[:MAX_COMPARED]
    found = {v.number: v for v in model.versions.filter(number__in=chosen)}
    versions = [found[n] for n in chosen]
    return render(
        request,
        "deployments/version_compare.html",
        {
            "model": model,
            "versions": versions,
            "all_numbers": numbers,
            "chosen": chosen,
            "metric_rows": charts.metric_table(versions) if len(versions) > 1 else [],
            "param_rows": charts.param_table(versions) if len(versions) > 1 else [],
            "max_compared": MAX_COMPARED,
        },
    )


def _int_or(value, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default
