"""Every change to documentation: create, save (a new revision), restore, attach images,
and postmortems from incidents. Pages and the API call these."""

import re

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils.text import slugify

from docs_app.models import Page, PageAttachment, PageRevision
from mlops_portal.core import audit
from mlops_portal.core.errors import Conflict
from mlops_portal.core.policy import require
from mlops_portal.core.validation import clean_tags

SLUG_PATTERN = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
RESERVED_SLUGS = {"new", "preview", "search"}
IMAGE_SIGNATURES = {
    b"\x89PNG\r\n\x1a\n": "png",
    b"\xff\xd8\xff": "jpeg",
    b"GIF87a": "gif",
    b"GIF89a": "gif",
}
MAX_IMAGE_BYTES = 5 * 1024 * 1024


class EditConflict(Conflict):
    """Someone saved the page after the editor opened it; their text is not overwritten."""


def create_page(actor, *, title, body="", slug="", tags=(), parent=None, linked_models=(),
                linked_targets=(), summary="") -> Page:  # fmt: skip
    require(actor, "docs.write")
    slug = (slug or slugify(title or ""))[:120]
    errors = _check_title(title)
    tags = clean_tags(tags, errors)
    if not SLUG_PATTERN.match(slug) or slug in RESERVED_SLUGS:
        errors["slug"] = ["Use lowercase words joined by hyphens, e.g. churn-runbook."]
    elif Page.objects.filter(slug=slug).exists():
        errors["slug"] = [f"A page {slug!r} exists already."]
    if errors:
        raise ValidationError(errors)
    try:
        with transaction.atomic():
            page = Page.objects.create(
                title=title.strip(), slug=slug, body=body, tags=tags, parent=parent,
                revision_number=1, created_by=actor, updated_by=actor,
            )  # fmt: skip
            page.linked_models.set(linked_models)
            page.linked_targets.set(linked_targets)
            PageRevision.objects.create(
                page=page, number=1, title=page.title, body=body, author=actor,
                summary=summary or "Created.",
            )  # fmt: skip
    except IntegrityError:
        raise ValidationError({"slug": [f"A page {slug!r} exists already."]}) from None
    return page


KEEP = object()  # save_page: "leave the parent as it is" (None means "top of the tree")


def save_page(actor, page, *, base_revision: int, title=None, body=None, summary="",
              tags=None, parent=KEEP, linked_models=None, linked_targets=None) -> Page:  # fmt: skip
    """Save a new revision, unless someone saved after `base_revision` (EditConflict).

    Changes exactly the fields given: a field left out (None, or KEEP for the parent) keeps
    its value, so an API PATCH of the body alone loses no tags, links or parent."""
    require(actor, "docs.write", page)
    errors = _check_title(title) if title is not None else {}
    if tags is not None:
        tags = clean_tags(tags, errors)
    if parent is not KEEP and parent is not None and _is_descendant(parent, page):
        errors["parent"] = ["A page cannot sit under itself or its own sub-pages."]
    if errors:
        raise ValidationError(errors)
    given = {"title": title.strip() if title is not None else None, "body": body, "tags": tags}
    changes = {name: value for name, value in given.items() if value is not None}
    if parent is not KEEP:
        changes["parent"] = parent
    with transaction.atomic():
        moved = Page.objects.filter(pk=page.pk, revision_number=base_revision).update(
            revision_number=F("revision_number") + 1, updated_by=actor, **changes
        )
        if not moved:
            latest = page.revisions.select_related("author").first()
            raise EditConflict(
                f"{latest.author} saved this page (revision {latest.number}) after you "
                "started editing. Your text is kept below: compare it with theirs, then save "
                "again."
            )
        before_title = page.title
        page.refresh_from_db()
        audit.record_update(page, actor, {
            "revision_number": (base_revision, page.revision_number),
            **({"title": (before_title, page.title)} if before_title != page.title else {}),
        })  # fmt: skip
        if linked_models is not None:
            page.linked_models.set(linked_models)
        if linked_targets is not None:
            page.linked_targets.set(linked_targets)
        PageRevision.objects.create(
            page=page, number=page.revision_number, title=page.title, body=page.body,
            author=actor, summary=summary or "Edited.",
        )  # fmt: skip
    return page


def delete_page(actor, page) -> None:
    """Delete a page with its revisions; its sub-pages move up to the top of the tree."""
    require(actor, "docs.write", page)
    page.delete()


def restore_revision(actor, page, revision) -> Page:
    """Make an old revision current again, as a new revision (history stays complete)."""
    return save_page(
        actor, page, base_revision=page.revision_number, title=revision.title,
        body=revision.body, summary=f"Restored revision {revision.number}.", parent=page.parent,
    )  # fmt: skip


def image_type(file) -> str:
    """The media type of an image file from its own first bytes (never from its name), or ""
    when it is no PNG, JPEG or GIF; the file is left at its start."""
    head = file.read(8)
    file.seek(0)
    kind = next((k for sig, k in IMAGE_SIGNATURES.items() if head.startswith(sig)), "")
    return f"image/{kind}" if kind else ""


def attach_image(actor, page, upload) -> PageAttachment:
    require(actor, "docs.write", page)
    if not image_type(upload):
        raise ValidationError({"file": ["Attach a PNG, JPEG or GIF image."]})
    if upload.size > MAX_IMAGE_BYTES:
        raise ValidationError({"file": [f"Images up to {MAX_IMAGE_BYTES // 2**20} MB."]})
    return PageAttachment.objects.create(
        page=page, file=upload, name=upload.name[:200], size=upload.size, uploaded_by=actor
    )


def postmortem_from_incident(actor, incident) -> Page:
    """A postmortem page pre-filled with the incident's facts and timeline."""
    require(actor, "docs.write")
    from docs_app.templates_text import STARTERS

    _, starter = STARTERS["postmortem"]
    lines = [
        f"- {event.created_at:%Y-%m-%d %H:%M:%S} UTC — "
        f"{_event_text(event)} ({event.actor or 'portal'})"
        for event in incident.events.select_related("actor")
    ]
    facts = (
        f"Incident #{incident.pk}, {incident.get_severity_display()}, "
        f"{incident.get_state_display().lower()}; opened {incident.opened_at:%Y-%m-%d %H:%M} UTC"
    )
    if incident.deployment_id:
        facts += f"; likely cause: deployment #{incident.deployment_id}"
    body = starter.replace(
        "## Timeline\n(times in UTC)\n", "## Timeline\n" + "\n".join(lines) + "\n"
    )
    body = f"_{facts}._\n\n" + body
    title = f"Postmortem: {incident.title}"
    slug = f"postmortem-incident-{incident.pk}"
    existing = Page.objects.filter(slug=slug).first()
    if existing:
        return existing
    return create_page(
        actor, title=title, slug=slug, body=body, tags=["postmortem"],
        linked_targets=[incident.target] if incident.target_id else [],
        linked_models=[incident.version.model] if incident.version_id else [],
        summary=f"Created from incident #{incident.pk}.",
    )  # fmt: skip


def _event_text(event) -> str:
    if event.kind == "state":
        return f"{event.from_state or 'new'} → {event.to_state}: {event.message}"
    return f"{event.get_kind_display()}: {event.message}"


def _check_title(title) -> dict:
    return {} if (title or "").strip() else {"title": ["Give the page a title."]}


def _is_descendant(candidate, page) -> bool:
    node = candidate
    for _ in range(50):  # trees are shallow; the bound stops a corrupted cycle
        if node is None:
            return False
        if node.pk == page.pk:
            return True
        node = node.parent
    return True
