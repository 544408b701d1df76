"""The `webhook` backend: hands the deploy to an external CD system (Jenkins, GitHub
Actions, Argo…) with a signed JSON POST. The system answers the outcome at once (200 with
{"status": "succeeded", "endpoint": …} or {"status": "failed", "reason": …}), or accepts
(202) and calls back later on /api/v1/deployments/<id>/callback/ with its own signature.

Signatures: header `X-MLOps-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "<t>." + body>`
with the target's `secret`; a signature older than WEBHOOK_SIGNATURE_TOLERANCE_SECONDS is
refused, so a captured request cannot be replayed later."""

import hashlib
import hmac
import json
import time
from urllib.parse import urlparse

import httpx
from django.conf import settings
from django.urls import reverse

from deployments import storage
from deployments.backends import DeployBackend, DeployError, Outcome, SettingSpec

SIGNATURE_HEADER = "X-MLOps-Signature"


class CallbackRefused(Exception):
    """A callback whose signature does not prove it comes from the target's CD system."""


class WebhookBackend(DeployBackend):
    settings_spec = (
        SettingSpec("url", str, required=True, help="The CD system's deploy hook (http/https)."),
        SettingSpec(
            "secret", str, required=True, secret=True, help="Shared HMAC key, 16+ characters."
        ),
        SettingSpec(
            "timeout_seconds",
            int,
            default=600,
            minimum=1,
            maximum=86400,
            help="How long to wait for the outcome.",
        ),
    )

    @classmethod
    def check_values(cls, cleaned):
        errors = []
        parsed = urlparse(cleaned.get("url", ""))
        if cleaned.get("url") and (parsed.scheme not in ("http", "https") or not parsed.netloc):
            errors.append("url must be an http:// or https:// URL.")
        if cleaned.get("secret") and len(cleaned["secret"]) < 16:
            errors.append("secret must be at least 16 characters.")
        return errors

    def deploy(self, deployment, log) -> Outcome:
        body = json.dumps(payload(deployment)).encode()
        log(f"POST {self.settings['url']} (signed, {len(body)} bytes).")
        try:
            response = httpx.post(
                self.settings["url"],
                content=body,
                headers={
                    "Content-Type": "application/json",
                    SIGNATURE_HEADER: sign(self.settings["secret"], body),
                },
                timeout=httpx.Timeout(30.0, connect=10.0),
            )
        except httpx.HTTPError as exc:
            raise DeployError(f"Could not reach the CD system: {exc}") from exc
        log(f"The CD system answered HTTP {response.status_code}.")
        if response.status_code == 202:
            log(
                f"Accepted; waiting up to {self.settings['timeout_seconds']} s for its signed "
                "callback."
            )
            return Outcome(awaiting_callback=True)
        if response.status_code != 200:
            raise DeployError(
                f"The CD system answered HTTP {response.status_code}: {response.text[:300]}"
            )
        return outcome_from(response_json(response))

    def stop(self, deployment) -> None:
        """The CD system owns what it deployed and replaces it itself on the next deploy;
        the portal has nothing to stop (so it records nothing on the timeline)."""

    def status(self, deployment) -> str:
        return "external"

    @property
    def callback_timeout(self) -> int:
        return self.settings["timeout_seconds"]


def payload(deployment) -> dict:
    """What the CD system is told. `artifact_url` is a short-lived link (no session) to one
    file: the pickle, or the MLflow model folder as a .tar.gz (`artifact_bundle`), whose
    SHA-256 is `artifact_url_sha256`; `artifact_uri` is where the version was registered
    from, or that link for an upload."""
    version = deployment.version
    callback = reverse("api:deployment-callback", args=[deployment.pk])
    try:
        signed = storage.signed_artifact(version)
    except storage.StorageError as exc:
        raise DeployError(str(exc)) from exc
    return {
        "deployment_id": deployment.pk,
        "model": version.model.name,
        "version": version.number,
        "artifact_uri": version.artifact_uri or signed.url,
        "artifact_url": signed.url,
        "artifact_url_sha256": signed.sha256,
        "artifact_url_expires_at": signed.expires_at,
        "artifact_bundle": signed.is_bundle,
        "artifact_sha256": version.artifact_sha256,
        "flavor": version.flavor,
        "target": deployment.target.name,
        "environment": deployment.target.environment,
        "requested_by": deployment.requested_by.username,
        "reason": deployment.reason,
        "callback_url": f"{settings.PORTAL_BASE_URL}{callback}",
    }


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    timestamp = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def verify(secret: str, body: bytes, header: str) -> str | None:
    """Return why `header` does not sign `body` with `secret`, or None when it does."""
    parts = dict(part.split("=", 1) for part in (header or "").split(",") if "=" in part)
    try:
        timestamp = int(parts["t"])
        given = parts["v1"]
    except (KeyError, ValueError):
        return f"Missing or malformed {SIGNATURE_HEADER} header."
    if abs(time.time() - timestamp) > settings.WEBHOOK_SIGNATURE_TOLERANCE_SECONDS:
        return "The signature's timestamp is too old (or in the future)."
    expected = sign(secret, body, timestamp).split("v1=", 1)[1]
    if not hmac.compare_digest(expected, given):
        return "The signature does not match."
    return None


def response_json(response) -> dict:
    try:
        data = response.json()
    except ValueError:
        raise DeployError("The CD system answered 200 without a JSON body.") from None
    if not isinstance(data, dict):
        raise DeployError("The CD system's answer is not a JSON object.")
    return data


def outcome_from(data: dict) -> Outcome:
    """Turn the CD system's JSON answer (sync or callback) into an Outcome or DeployError."""
    status = data.get("status")
    if status == "succeeded":
        return Outcome(endpoint=str(data.get("endpoint", ""))[:500])
    if status == "failed":
        raise DeployError(f"The CD system reports failure: {data.get('reason') or 'no reason'}")
    raise DeployError(f"The CD system's answer has no valid status: {str(data)[:200]}")
