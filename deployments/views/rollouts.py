"""Targets and deployments pages. Views fetch, call a service, and render; the rules live
in deployments.services."""

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST
from django_htmx.http import HttpResponseClientRefresh

from deployments import services
from deployments.backends import backend_for, public_settings
from deployments.choices import WAS_LIVE_STATES, DeploymentState
from deployments.evidence import approval_evidence, target_health
from deployments.filters import DeploymentFilter
from deployments.forms import (
    CommentForm,
    DecisionForm,
    DeploymentRequestForm,
    ReasonForm,
    TargetCreateForm,
    TargetEditForm,
)
from deployments.models import Deployment, RegisteredModel, Target
from deployments.services import canary
from mlops_portal.core.errors import Conflict
from mlops_portal.core.policy import can, require
from mlops_portal.core.utils import service_errors_on

PER_PAGE = 25


def _get_target(name) -> Target:
    return get_object_or_404(Target, name=name)


def _get_deployment(pk) -> Deployment:
    return get_object_or_404(Deployment.objects.for_list(), pk=pk)


# --- targets ---------------------------------------------------------------------------


def target_list(request):
    targets = Target.objects.with_backlog().order_by("name")
    live = {d.target_id: d for d in Deployment.objects.live().select_related("version__model")}
    rows = [(target, live.get(target.pk)) for target in targets]
    return render(
        request,
        "deployments/target_list.html",
        {"rows": rows, "can_manage": can(request.user, "target.manage")},
    )


def target_create(request):
    require(request.user, "target.manage")
    form = TargetCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        with service_errors_on(form):
            target = services.create_target(request.user, **form.cleaned_data)
            messages.success(request, f"Target {target.name} created.")
            return redirect(target)
    return render(request, "deployments/target_form.html", {"form": form})


def target_edit(request, name):
    target = _get_target(name)
    require(request.user, "target.manage", target)
    secrets = public_settings(target.backend, target.backend_settings)
    visible = {key: value for key, value in secrets.items() if value != "********"}
    initial = {
        "environment": target.environment,
        "backend_settings": visible,
        "requires_approval": target.requires_approval,
        "rollback_skips_approval": target.rollback_skips_approval,
        "auto_rollback": target.auto_rollback,
        "verification_window_seconds": target.verification_window_seconds,
        "queue_policy": target.queue_policy,
        "description": target.description,
    }
    form = TargetEditForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        with service_errors_on(form):
            services.update_target(request.user, target, **form.cleaned_data)
            messages.success(request, f"Target {target.name} updated.")
            return redirect(target)
    return render(request, "deployments/target_form.html", {"form": form, "target": target})


def target_detail(request, name):
    """A target: its settings (secrets hidden), what is live, its backlog, and what was
    live when."""
    target = get_object_or_404(Target.objects.with_backlog(), name=name)
    deployments = Deployment.objects.for_list().filter(target=target)
    timeline = deployments.filter(state__in=WAS_LIVE_STATES).order_by("-finished_at")[:20]
    page = Paginator(deployments, PER_PAGE).get_page(request.GET.get("page"))
    return render(
        request,
        "deployments/target_detail.html",
        {
            "target": target,
            "settings": public_settings(target.backend, target.backend_settings),
            "live": deployments.filter(state=DeploymentState.SUCCEEDED).first(),
            "timeline": timeline,
            "page": page,
            "can_manage": can(request.user, "target.manage", target),
            "health": target_health(target),
        },
    )


# --- deployments ---------------------------------------------------------------------


def deployment_list(request):
    filters = DeploymentFilter(request.GET, queryset=Deployment.objects.for_list())
    page = Paginator(filters.qs, PER_PAGE).get_page(request.GET.get("page"))
    return render(
        request,
        "deployments/deployment_list.html",
        {
            "filters": filters,
            "page": page,
            "targets": Target.objects.order_by("name").values_list("name", flat=True),
            "states": DeploymentState.choices,
            "can_request": can(request.user, "deployment.request"),
        },
    )


def deployment_request(request):
    require(request.user, "deployment.request")
    model = None
    if request.GET.get("model"):
        model = get_object_or_404(RegisteredModel, name=request.GET["model"])
    initial = {"version": request.GET.get("version_id"), "target": request.GET.get("target_id")}
    form = DeploymentRequestForm(request.POST or None, initial=initial, model=model)
    if request.method == "POST" and form.is_valid():
        with service_errors_on(form):
            deployment = services.request_deployment(request.user, **form.cleaned_data)
            messages.success(request, f"Deployment #{deployment.pk} {deployment.state}.")
            return redirect(deployment)
    return render(request, "deployments/deployment_request.html", {"form": form, "model": model})


def deployment_detail(request, pk):
    """The deployment page; for htmx polls, only its live panel (state, log, duration)."""
    deployment = _get_deployment(pk)
    log_lines = deployment.log_lines.all()
    if request.htmx:
        if request.GET.get("seen", deployment.state) != deployment.state:
            return HttpResponseClientRefresh()  # new state, new actions: redraw the page
        return render(
            request,
            "deployments/_deployment_live.html",
            {"deployment": deployment, "log_lines": log_lines},
        )
    user = request.user
    live = deployment.state == DeploymentState.SUCCEEDED
    return render(
        request,
        "deployments/deployment_detail.html",
        {
            "deployment": deployment,
            "log_lines": log_lines,
            "events": deployment.events.select_related("actor"),
            "evidence": approval_evidence(deployment),
            "can_decide": deployment.state == DeploymentState.REQUESTED
            and can(user, "deployment.approve", deployment),
            "is_requester": deployment.requested_by_id == user.pk,
            "can_cancel": deployment.state == DeploymentState.REQUESTED
            and can(user, "deployment.cancel", deployment),
            "can_roll_back": deployment.state == DeploymentState.SUCCEEDED
            and can(user, "deployment.rollback", deployment),
            "can_comment": can(user, "deployment.comment", deployment),
            "can_decide_canary": deployment.canary_weight is not None
            and deployment.state == DeploymentState.RUNNING
            and can(user, "deployment.canary", deployment),
            # The live one can be deployed again (a fresh server for the same version), the
            # way out when its server died; the backend says whether it still serves.
            "can_redeploy": live and can(user, "deployment.request"),
            "server_status": backend_for(deployment.target).status(deployment) if live else "",
            "can_try": live
            and deployment.target.backend == "local"
            and can(user, "deployment.try", deployment),
            "previous_good": services.previous_good_deployment(deployment)
            if deployment.state == DeploymentState.SUCCEEDED
            else None,
            "decision_form": DecisionForm(),
            "reason_form": ReasonForm(),
            "comment_form": CommentForm(),
        },
    )


@require_POST
def deployment_action(request, pk, verb):
    """Approve, reject, cancel, roll back or comment; every one is a service call."""
    if verb not in ACTIONS:
        raise Http404(f"No action {verb!r}.")
    deployment = _get_deployment(pk)
    # A role that may never do this gets 403 (a viewer's POST); a refusal about this one
    # deployment (not your request, your own request) comes back as a message below.
    require(request.user, POLICY.get(verb, f"deployment.{verb}"))
    form_class = {
        "comment": CommentForm, "cancel": ReasonForm, "rollback": ReasonForm, "abort": ReasonForm,
    }.get(verb, DecisionForm)  # fmt: skip
    form = form_class(request.POST)
    if not form.is_valid():
        messages.error(request, "; ".join(str(e) for errs in form.errors.values() for e in errs))
        return redirect(deployment)
    data = form.cleaned_data
    try:
        result = ACTIONS[verb](request.user, deployment, data)
    except (ValidationError, Conflict, PermissionDenied) as exc:
        messages.error(request, _message_of(exc))
        return redirect(deployment)
    messages.success(request, SUCCESS[verb].format(d=deployment, r=result))
    return redirect(result if verb == "rollback" else deployment)


@require_POST
def deployment_try(request, pk):
    """Send the typed instances to the live deployment's /predict; the answer replaces the
    form's result box (htmx), or comes back as a message."""
    deployment = _get_deployment(pk)
    require(request.user, "deployment.try", deployment)
    instances = request.POST.get("instances", "")
    try:
        result, error = services.try_predict(request.user, deployment, instances), ""
    except (ValidationError, Conflict) as exc:
        result, error = None, _message_of(exc)
    if not request.htmx:
        if error:
            messages.error(request, error)
        else:
            messages.info(request, f"/predict answered {result['status']}: {result['body']}")
        return redirect(deployment)
    context = {"result": result, "error": error}
    # 200 even for a refusal: htmx swaps only 2xx answers, and the box says what went wrong.
    return render(request, "deployments/_try_result.html", context)


ACTIONS = {
    "approve": lambda user, d, data: services.approve_deployment(
        user, d, comment=data["comment"], override_reason=data["override_reason"]
    ),
    "reject": lambda user, d, data: services.reject_deployment(user, d, comment=data["comment"]),
    "cancel": lambda user, d, data: services.cancel_deployment(user, d, reason=data["reason"]),
    "rollback": lambda user, d, data: services.rollback_deployment(user, d, reason=data["reason"]),
    "comment": lambda user, d, data: services.add_comment(user, d, data["body"]),
    "promote": lambda user, d, data: canary.promote_canary(user, d, comment=data["comment"]),
    "abort": lambda user, d, data: canary.abort_canary(user, d, reason=data["reason"]),
}
POLICY = {"promote": "deployment.canary", "abort": "deployment.canary"}
SUCCESS = {
    "approve": "Approved: deployment #{d.pk} is queued.",
    "reject": "Deployment #{d.pk} rejected.",
    "cancel": "Deployment #{d.pk} cancelled.",
    "rollback": "Rollback #{r.pk} requested: {r.version} goes back on {r.target}.",
    "comment": "Comment added.",
    "promote": "Promoting the canary #{d.pk}: it takes all the traffic in a moment.",
    "abort": "Aborting the canary #{d.pk}: the live version takes all the traffic back.",
}


def _message_of(exc) -> str:
    if isinstance(exc, ValidationError):
        return " ".join(exc.messages)
    return str(exc)
