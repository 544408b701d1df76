"""The signed artifact link: how a backend running elsewhere fetches one version's file
from the local artifact folder without a portal session (deployments.storage)."""

import logging

from django.contrib.auth.decorators import login_not_required
from django.http import FileResponse, HttpResponseForbidden, HttpResponseNotFound
from django.views.decorators.http import require_GET

from deployments import storage
from deployments.models import ModelVersion

logger = logging.getLogger(__name__)


@login_not_required  # the signed, expiring token in the URL is the credential
@require_GET
def signed_artifact(request, version_id: int, token: str, filename: str):
    """Stream the stored file the token grants; 403 for a forged, altered, expired or
    another version's token, 404 when the version or its file is gone."""
    try:
        name = storage.read_token(version_id, token)
    except storage.TokenRefused as exc:
        logger.warning("Signed artifact link refused for version %s: %s", version_id, exc)
        return HttpResponseForbidden(f"{exc}\n", content_type="text/plain")
    version = ModelVersion.objects.filter(pk=version_id).select_related("model").first()
    if version is None:
        return HttpResponseNotFound("No such artifact.\n", content_type="text/plain")
    try:
        handle = storage.open_stored(name)
    except FileNotFoundError:
        return HttpResponseNotFound("No such artifact.\n", content_type="text/plain")
    logger.info(
        "Signed artifact link used: %s (%s) by %s",
        version,
        name,
        request.META.get("REMOTE_ADDR", "?"),
        extra={"version": version.pk},
    )
    return FileResponse(handle, as_attachment=True, filename=name.rsplit("/", 1)[-1])
