"""Documentation pages: read, write with live preview, history and diffs, restore."""

import difflib

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import FileResponse, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.html import escape
from django.views.decorators.http import require_POST

from deployments.models import ModelVersion, RegisteredModel
from docs_app import services
from docs_app.cards import card_markdown, model_card
from docs_app.forms import AttachmentForm, PageForm
from docs_app.models import Page, PageAttachment
from docs_app.rendering import render_page
from docs_app.templates_text import STARTERS
from mlops_portal.core import security_log
from mlops_portal.core.policy import can, require
from mlops_portal.core.utils import add_service_errors, service_errors_on
from monitoring.models import Incident


def _get_page(slug) -> Page:
    return get_object_or_404(Page.objects.select_related("parent", "updated_by"), slug=slug)


def render_markdown(text):
    """Render with links resolved against the portal's pages and models."""
    return render_page(text, resolve_page=resolve_page, resolve_model=resolve_model)


def resolve_page(slug):
    page = Page.objects.filter(slug=slug).only("title", "slug").first()
    return (page.title, page.get_absolute_url()) if page else None


def resolve_model(name, number):
    if number is None:
        found = RegisteredModel.objects.filter(name=name).exists()
        return reverse("model-detail", args=[name]) if found else None
    found = ModelVersion.objects.filter(model__name=name, number=number).exists()
    return reverse("version-detail", args=[name, number]) if found else None


def page_tree():
    """(page, depth) in tree order, from one query."""
    pages = list(Page.objects.only("title", "slug", "parent_id").order_by("title"))
    children = {}
    for page in pages:
        children.setdefault(page.parent_id, []).append(page)
    ordered = []

    def walk(parent_id, depth):
        for page in children.get(parent_id, []):
            ordered.append((page, depth))
            if depth < 10:
                walk(page.pk, depth + 1)

    walk(None, 0)
    return ordered


def page_list(request):
    return render(
        request,
        "docs_app/page_list.html",
        {"tree": page_tree(), "starters": STARTERS, "can_write": can(request.user, "docs.write")},
    )


def page_detail(request, slug):
    page = _get_page(slug)
    rendered = render_markdown(page.body)
    return render(
        request,
        "docs_app/page_detail.html",
        {
            "page": page,
            "rendered": rendered,
            "tree": page_tree(),
            "attachments": page.attachments.all(),
            "linked_models": page.linked_models.all(),
            "linked_targets": page.linked_targets.all(),
            "can_write": can(request.user, "docs.write", page),
            "attachment_form": AttachmentForm(),
        },
    )


def page_print(request, slug):
    page = _get_page(slug)
    return render(request, "docs_app/page_print.html",
                  {"page": page, "rendered": render_markdown(page.body)})  # fmt: skip


def page_create(request):
    require(request.user, "docs.write")
    starter = STARTERS.get(request.GET.get("template", ""))
    initial = {"title": starter[0], "body": starter[1]} if starter else {}
    if slug := request.GET.get("slug", ""):  # "Create this page" from a link to a missing one
        initial.update(slug=slug, title=initial.get("title") or slug.replace("-", " ").capitalize())
    form = PageForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        data = dict(form.cleaned_data)
        data.pop("base_revision")
        with service_errors_on(form):
            page = services.create_page(request.user, **data)
            messages.success(request, f"Page {page.title!r} created.")
            return redirect(page)
    return render(request, "docs_app/page_form.html", {"form": form, "page": None})


def page_edit(request, slug):
    page = _get_page(slug)
    require(request.user, "docs.write", page)
    initial = {
        "title": page.title, "slug": page.slug, "body": page.body, "tags": page.tags,
        "parent": page.parent, "linked_models": page.linked_models.all(),
        "linked_targets": page.linked_targets.all(), "base_revision": page.revision_number,
    }  # fmt: skip
    form = PageForm(request.POST or None, initial=initial)
    form.fields["slug"].disabled = True
    conflict = None
    if request.method == "POST" and form.is_valid():
        data = dict(form.cleaned_data)
        data.pop("slug")
        try:
            services.save_page(request.user, page, **data)
        except services.EditConflict as exc:
            conflict = {"message": str(exc), "theirs": Page.objects.get(pk=page.pk).body}
            messages.error(request, str(exc))
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, "Saved as a new revision.")
            return redirect(page)
    return render(
        request, "docs_app/page_form.html", {"form": form, "page": page, "conflict": conflict}
    )


@require_POST
def page_preview(request):
    """The live preview while editing (htmx posts the text, gets the rendered HTML)."""
    rendered = render_markdown(request.POST.get("body", ""))
    return render(request, "docs_app/_preview.html", {"rendered": rendered})


def page_history(request, slug):
    page = _get_page(slug)
    revisions = page.revisions.select_related("author")
    return render(request, "docs_app/page_history.html", {
        "page": page, "revisions": revisions, "can_write": can(request.user, "docs.write", page),
    })  # fmt: skip


def page_diff(request, slug):
    page = _get_page(slug)
    numbers = {int(n) for n in (request.GET.get("a"), request.GET.get("b")) if n and n.isdigit()}
    revisions = {r.number: r for r in page.revisions.filter(number__in=numbers)}
    low, high = (min(numbers), max(numbers)) if len(numbers) == 2 else (None, None)
    a, b = revisions.get(low), revisions.get(high)
    table = ""
    if a and b:
        table = difflib.HtmlDiff(wrapcolumn=70).make_table(
            a.body.splitlines(), b.body.splitlines(),
            fromdesc=escape(f"r{a.number} by {a.author}"),
            todesc=escape(f"r{b.number} by {b.author}"), context=True, numlines=3,
        )  # fmt: skip
    return render(request, "docs_app/page_diff.html",
                  {"page": page, "a": a, "b": b, "table": table})  # fmt: skip


@require_POST
def page_restore(request, slug, number):
    page = _get_page(slug)
    require(request.user, "docs.write")  # a viewer's POST: 403
    revision = get_object_or_404(page.revisions, number=number)
    try:
        services.restore_revision(request.user, page, revision)
    except (services.EditConflict, PermissionDenied) as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Revision {number} restored as a new revision.")
    return redirect(page)


@require_POST
def attachment_upload(request, slug):
    page = _get_page(slug)
    form = AttachmentForm(request.POST, request.FILES)
    if not form.is_valid():
        messages.error(request, "Choose an image file to attach.")
        return redirect(page)
    try:
        attachment = services.attach_image(request.user, page, form.cleaned_data["file"])
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        url = reverse("attachment", args=[attachment.pk, attachment.name])
        messages.success(request, f"Attached. Show it with ![{attachment.name}]({url})")
    return redirect(page)


def attachment(request, pk, name):
    """Serve an attachment to logged-in users (media is not public)."""
    found = get_object_or_404(PageAttachment, pk=pk)
    handle = found.file.open("rb")
    content_type = services.image_type(handle) or "application/octet-stream"
    response = FileResponse(handle, content_type=content_type)
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "default-src 'none'"
    return response


@require_POST
def postmortem(request, incident_id):
    incident = get_object_or_404(Incident, pk=incident_id)
    require(request.user, "docs.write")  # a viewer's POST: 403
    try:
        page = services.postmortem_from_incident(request.user, incident)
    except PermissionDenied as exc:
        security_log.permission_denied(request, str(exc))
        messages.error(request, str(exc))
        return redirect(incident)
    return redirect("page-edit", slug=page.slug)


def model_card_page(request, name):
    """The model card as a page, or as a Markdown download with ?format=md."""
    model = get_object_or_404(RegisteredModel.objects.select_related("owner"), name=name)
    card = model_card(model)
    if request.GET.get("format") == "md":
        response = HttpResponse(card_markdown(card), content_type="text/markdown; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{model.name}-model-card.md"'
        return response
    return render(request, "docs_app/model_card.html", {"model": model, "card": card})
