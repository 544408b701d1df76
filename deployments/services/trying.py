"""Trying a live deployment's /predict from its page: the portal sends the instances a
person typed to the model server the local backend started, and shows the answer."""

import json
import time

import httpx
from django.core.exceptions import ValidationError

from deployments.choices import DeploymentState
from deployments.serving.loading import InputError, check_instances
from mlops_portal.core.errors import Conflict
from mlops_portal.core.policy import require

TRY_TIMEOUT_SECONDS = 5.0
SHOWN_CHARS = 4000


def try_predict(actor, deployment, instances_text: str) -> dict:
    """POST `instances_text` (a JSON list of rows) to the live deployment's /predict; return
    {"status", "body" (pretty JSON or text), "ms"}. Only local-backend deployments: their
    endpoint is a server the portal started on its own host, never an address from outside."""
    require(actor, "deployment.try", deployment)
    if deployment.state != DeploymentState.SUCCEEDED or not deployment.endpoint:
        raise Conflict(f"Deployment #{deployment.pk} is not live; only a live one answers.")
    if deployment.target.backend != "local":
        raise Conflict(
            f"{deployment.target} deploys through {deployment.target.backend}: call "
            f"{deployment.endpoint}/predict from your own tools."
        )
    try:
        rows = check_instances(json.loads(instances_text or ""))
    except json.JSONDecodeError as exc:
        raise ValidationError({"instances": [f"Not valid JSON: {exc.msg}."]}) from exc
    except InputError as exc:
        raise ValidationError({"instances": [str(exc)]}) from exc
    started = time.perf_counter()
    try:
        answer = httpx.post(
            f"{deployment.endpoint}/predict", json={"instances": rows},
            timeout=TRY_TIMEOUT_SECONDS, trust_env=False, follow_redirects=False,
        )  # fmt: skip
    except httpx.HTTPError as exc:
        raise Conflict(f"The model server did not answer: {exc.__class__.__name__}.") from exc
    elapsed_ms = (time.perf_counter() - started) * 1000
    try:
        body = json.dumps(answer.json(), indent=2)
    except ValueError:
        body = answer.text
    return {"status": answer.status_code, "body": body[:SHOWN_CHARS], "ms": round(elapsed_ms, 1)}
