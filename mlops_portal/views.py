from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db.models import Count, Q
from django.http import HttpResponseServerError, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template import loader
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from deployments.choices import VersionStatus
from deployments.models import ModelVersion, RegisteredModel
from mlops_portal import services
from mlops_portal.changes import ChangeFilter, describe, feed
from mlops_portal.forms import ApiTokenForm
from mlops_portal.health import broker_kind, broker_status, database_status
from mlops_portal.models import ApiToken
from mlops_portal.search import results, search, search_kind
from mlops_portal.utils import add_service_errors

TODAY_LIST_SIZE = 8


def today(request):
    """Morning triage: what changed in the registry and what needs a look."""
    status_counts = ModelVersion.objects.aggregate(
        total=Count("pk"),
        **{status: Count("pk", filter=Q(status=status)) for status in VersionStatus.values},
    )
    recent = ModelVersion.objects.for_list().order_by("-created_at")[:TODAY_LIST_SIZE]
    needs_attention = (
        ModelVersion.objects.for_list()
        .filter(status=VersionStatus.INVALID, archived=False)
        .order_by("-created_at")[:TODAY_LIST_SIZE]
    )
    mine = (
        ModelVersion.objects.for_list()
        .filter(registered_by=request.user)
        .order_by("-created_at")[:TODAY_LIST_SIZE]
    )
    return render(
        request,
        "mlops_portal/today.html",
        {
            "model_count": RegisteredModel.objects.count(),
            "status_counts": status_counts,
            "recent_versions": recent,
            "invalid_versions": needs_attention,
            "my_versions": mine,
        },
    )


@login_not_required
@never_cache
@require_GET
def healthz(request):
    """Liveness for load balancers: database and broker reachability, no login needed."""
    checks = {"database": database_status(), "broker": broker_status()}
    healthy = all(value == "ok" for value in checks.values())
    body = {
        "status": "ok" if healthy else "degraded",
        "checks": checks,
        "broker": broker_kind(settings.CELERY_BROKER_URL),
    }
    return JsonResponse(body, status=200 if healthy else 503)


def token_list(request):
    """The user's API tokens; creating one shows its secret on this page, once."""
    form = ApiTokenForm(request.POST or None)
    new_secret = None
    if request.method == "POST" and form.is_valid():
        try:
            token, new_secret = services.create_token(request.user, form.cleaned_data["name"])
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            form = ApiTokenForm()
            messages.success(request, f"Token {token.name!r} created. Copy its secret now.")
    tokens = ApiToken.objects.filter(user=request.user)
    return render(
        request,
        "mlops_portal/tokens.html",
        {"form": form, "tokens": tokens, "new_secret": new_secret},
    )


@require_POST
def token_revoke(request, token_id):
    token = get_object_or_404(ApiToken, pk=token_id, user=request.user)
    try:
        services.revoke_token(request.user, token)
    except PermissionDenied as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Token {token.name!r} revoked; it no longer works.")
    return redirect("token-list")


def search_page(request):
    """The header's search box: the best results of each kind, or (with ?kind=) all results
    of one kind, paginated."""
    query = request.GET.get("q", "")
    kind, ranked = search_kind(query, request.GET.get("kind", ""))
    if kind is None:
        return render(request, "mlops_portal/search.html", {"q": query, "groups": search(query)})
    page = Paginator(ranked if ranked is not None else [], 25).get_page(request.GET.get("page"))
    return render(
        request,
        "mlops_portal/search.html",
        {"q": query, "kind": kind.name, "page": page, "groups": {kind.name: results(kind, page)}},
    )


def change_feed(request):
    """Every change on record; each object's History link filters it to that object."""
    filters = ChangeFilter(request.GET, queryset=feed())
    page = Paginator(filters.qs, 50).get_page(request.GET.get("page"))
    return render(
        request,
        "mlops_portal/changes.html",
        {"filters": filters, "page": page, "entries": [describe(e) for e in page]},
    )


def page_not_found(request, exception):
    return render(request, "404.html", status=404)


def server_error(request):
    # No request context: the error may come from the database the context needs.
    return HttpResponseServerError(loader.get_template("500.html").render())
