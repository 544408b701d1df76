"""`manage.py register_mlflow_demo URL`: register the demo's MLflow model the way a team
does, with the stock MLflow client against the running portal. `scripts/run.sh` starts it
in the background beside the portal; it waits until the web process answers."""

import contextlib
import os
import shutil
import time
from pathlib import Path

import httpx
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from deployments.demo import save_lightgbm_model
from deployments.models import ModelVersion, RegisteredModel
from mlops_portal.core import tokens

MODEL = "upsell-lightgbm"
ALIAS = "champion"
OWNER = "alice"  # the demo's data scientist (load_demo_data)


class Command(BaseCommand):
    help = "Register a LightGBM MLflow model through MlflowClient against the running portal."

    def add_arguments(self, parser):
        parser.add_argument("url", help="The portal, e.g. http://127.0.0.1:8000")
        parser.add_argument("--folder", default=str(settings.VAR_DIR / "demo-models"))
        parser.add_argument("--wait", type=float, default=120.0, help="Seconds to wait for it.")

    def handle(self, *args, url, folder, wait, **options):
        if ModelVersion.objects.filter(model__name=MODEL).exists():
            return  # an earlier `make run` registered it
        owner = get_user_model().objects.filter(username=OWNER).first()
        if owner is None:
            raise CommandError(f"No user {OWNER!r}: run `manage.py load_demo_data` first.")
        wait_until_serving(url, wait)
        version = register_with_mlflow_client(url, Path(folder), owner, await_seconds=wait)
        self.stdout.write(
            f"Demo data: {MODEL} v{version.version} registered through MlflowClient "
            f"(alias @{ALIAS}); the worker validates it."
        )


def wait_until_serving(url: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while True:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        if time.monotonic() > deadline:
            raise CommandError(f"The portal at {url} did not answer within {seconds:.0f} s.")
        time.sleep(1)


def register_with_mlflow_client(url: str, folder: Path, owner, await_seconds: float = 0):
    """Save the LightGBM model under `folder` (one of ARTIFACT_FILE_ROOTS) and register it
    with the stock client as `owner`, through an API token as a training job would; point
    the alias at it. Returns the client's ModelVersion."""
    from mlflow import MlflowClient

    path = folder / MODEL
    if not (path / "MLmodel").exists():
        shutil.rmtree(path, ignore_errors=True)
        folder.mkdir(parents=True, exist_ok=True)
        save_lightgbm_model(path)
    token, secret = tokens.create_token(owner, f"MLflow demo {int(time.time())}")
    try:
        with token_in_environment(secret):
            client = MlflowClient(tracking_uri=url, registry_uri=url)
            if not RegisteredModel.objects.filter(name=MODEL).exists():  # a try cut short
                client.create_registered_model(
                    MODEL, tags={"team": "growth"}, description="Who will take the upsell offer."
                )
            version = client.create_model_version(
                MODEL, source=path.resolve().as_uri(), description="Registered by MlflowClient.",
                await_creation_for=await_seconds,
            )  # fmt: skip
            client.set_registered_model_alias(MODEL, ALIAS, version.version)
    finally:
        tokens.revoke_token(owner, token)  # the demo's job is done with it
    return version


@contextlib.contextmanager
def token_in_environment(secret: str):
    """MLFLOW_TRACKING_TOKEN for the client, as a job's environment has it; put back after."""
    previous = os.environ.get("MLFLOW_TRACKING_TOKEN")
    os.environ["MLFLOW_TRACKING_TOKEN"] = secret
    try:
        yield
    finally:
        if previous is None:
            del os.environ["MLFLOW_TRACKING_TOKEN"]
        else:
            os.environ["MLFLOW_TRACKING_TOKEN"] = previous
