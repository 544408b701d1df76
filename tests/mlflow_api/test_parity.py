"""One registry scenario run with the stock MlflowClient against a real `mlflow server` and
against the portal (gunicorn-less: pytest-django's live server, a real Celery worker):
the results must be equal field by field.

Left out of the comparison, on purpose: timestamps (taken at different moments), `user_id`
(MLflow's open-source server leaves it empty; the portal names the registering user) and
`workspace` (client-side). Sources are the same URL on both (a test HTTP server on
127.0.0.1), so they are compared. A portal version is PENDING_REGISTRATION until the worker
has validated it; the client waits for READY (`await_creation_for`), so statuses compare."""

import os
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from mlflow import MlflowClient
from mlflow.entities._mlflow_object import _MlflowObject
from mlflow.exceptions import MlflowException

from tests.conftest import free_port, stop_mlflow_server

ROOT = Path(__file__).resolve().parents[2]
MLFLOW = ROOT / ".venv-mlflow" / "bin" / "mlflow"
IGNORED = {"creation_timestamp", "last_updated_timestamp", "user_id", "workspace"}


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """A real `mlflow server` on SQLite, one per session, stopped by its PID."""
    folder = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    env = {**os.environ, "MLFLOW_ALLOWED_HOST_ADDRESSED_ARTIFACT_SCHEMES": "http"}
    for name in ("MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        env.pop(name, None)
    command = [
        *(str(MLFLOW), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"),
        *("--backend-store-uri", f"sqlite:///{folder}/mlflow.db"),
        *("--default-artifact-root", str(folder / "artifacts")),
    ]
    with open(folder / "server.log", "w") as log:
        process = subprocess.Popen(
            command, cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url, process, folder / "server.log")
        yield url
    finally:
        stop_mlflow_server(process)


def wait_until_up(url, process, log_path, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"mlflow server exited:\n{log_path.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"mlflow server did not start:\n{log_path.read_text()[-3000:]}")


def plain(value):
    """An MLflow result as plain data, without the fields left out of the comparison."""
    if isinstance(value, _MlflowObject):
        return {key: plain(item) for key, item in value if key not in IGNORED}
    if hasattr(value, "token") and isinstance(value, list):  # a PagedList
        return {"items": [plain(item) for item in value], "more": bool(value.token)}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    return value


def recorder(results: list):
    """`step(label, call, *args, **kwargs)`: make the client call and append its outcome
    (plain values, or an MLflow error as its `error_code`) to `results`."""

    def step(label, call, *args, **kwargs):
        try:
            outcome = plain(call(*args, **kwargs))
        except MlflowException as error:
            outcome = {"error": error.error_code}
        results.append((label, outcome))
        return outcome

    return step


def scenario(client: MlflowClient, source: str) -> list:
    """Every registry call, in the order a team makes them; each outcome recorded."""
    results = []
    step = recorder(results)

    step("create a", client.create_registered_model, "parity-a", {"team": "growth"}, "A")
    step("create b", client.create_registered_model, "parity-b")
    step("create a again", client.create_registered_model, "parity-a")

    def register(name, **fields):
        # The portal answers PENDING_REGISTRATION until the worker has validated the version
        # (MLflow: READY at once); the client waits, then both are compared as they stand.
        created = client.create_model_version(name, source, await_creation_for=120, **fields)
        return client.get_model_version(name, created.version)

    for fields in ({}, {"run_id": "run-1", "tags": {"k": "v"}, "description": "two"}, {}):
        step("register a", register, "parity-a", **fields)
    step("register b", register, "parity-b")
    step("register missing", client.create_model_version, "nope", source)
    step("alias", client.set_registered_model_alias, "parity-a", "champion", "1")
    step("alias moved", client.set_registered_model_alias, "parity-a", "champion", "2")
    step("alias reserved", client.set_registered_model_alias, "parity-a", "latest", "1")
    step("alias no version", client.set_registered_model_alias, "parity-a", "x", "9")
    step("by alias", client.get_model_version_by_alias, "parity-a", "champion")
    step("by latest", client.get_model_version_by_alias, "parity-a", "latest")
    step("by unknown alias", client.get_model_version_by_alias, "parity-a", "nope")
    step("model tag", client.set_registered_model_tag, "parity-a", "domain", "retail")
    step("version tag", client.set_model_version_tag, "parity-a", "1", "reviewed", "yes")
    step("version tag gone", client.delete_model_version_tag, "parity-a", "2", "k")
    step("stage", client.transition_model_version_stage, "parity-a", "2", "Staging")
    step("stage bad", client.transition_model_version_stage, "parity-a", "2", "Live")
    step("latest", lambda: sorted(client.get_latest_versions("parity-a"), key=lambda v: v.version))
    step("latest staging", client.get_latest_versions, "parity-a", ["Staging"])
    step("update", client.update_registered_model, "parity-a", "A, edited")
    step("update version", client.update_model_version, "parity-a", "1", "one")
    step("get a", client.get_registered_model, "parity-a")
    step("get v1", client.get_model_version, "parity-a", "1")
    step("get missing", client.get_model_version, "parity-a", "9")
    step("search like", client.search_registered_models, "name LIKE 'parity-%'")
    step("search tag", client.search_registered_models, "tags.team = 'growth'")
    page = step("page 1", client.search_registered_models, max_results=1, order_by=["name DESC"])
    token = client.search_registered_models(max_results=1, order_by=["name DESC"]).token
    step("page 2", client.search_registered_models, max_results=1, order_by=["name DESC"],
         page_token=token)  # fmt: skip
    assert page["more"]
    step("search versions run", client.search_model_versions, "run_id = 'run-1'")
    step("search versions name", client.search_model_versions, "name = 'parity-a'",
         order_by=["version_number ASC"])  # fmt: skip
    step("search bad filter", client.search_registered_models, "name ~ 'x'")
    step("search bad order", client.search_model_versions, order_by=["size"])
    step("download uri", client.get_model_version_download_uri, "parity-a", "1")
    step("rename", client.rename_registered_model, "parity-b", "parity-c")
    step("rename taken", client.rename_registered_model, "parity-c", "parity-a")
    step("get renamed", client.get_registered_model, "parity-c")
    step("delete v3", client.delete_model_version, "parity-a", "3")
    step("get v3", client.get_model_version, "parity-a", "3")
    step("delete c", client.delete_registered_model, "parity-c")
    step("get c", client.get_registered_model, "parity-c")
    step("alias gone", client.delete_registered_model_alias, "parity-a", "champion")
    step("final a", client.get_registered_model, "parity-a")
    return results


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_the_portal_answers_as_an_mlflow_server_does(
    mlflow_server, celery_worker_process, alice, mlflow_for, artifact_server, monkeypatch
):
    source = f"{artifact_server}/model.joblib"
    portal = scenario(mlflow_for(alice), source)
    monkeypatch.delenv("MLFLOW_TRACKING_TOKEN")
    reference = scenario(MlflowClient(mlflow_server, mlflow_server), source)
    assert [label for label, _ in portal] == [label for label, _ in reference]
    differences = [
        f"{label}{path}: portal {mine!r}, mlflow {reference_value!r}"
        for (label, ours), (_, theirs) in zip(portal, reference, strict=True)
        for path, mine, reference_value in differing(ours, theirs)
    ]
    assert differences == [], "\n".join(differences)


def differing(ours, theirs, path=""):
    """(path, ours, theirs) for every leaf where the two results differ."""
    if isinstance(ours, dict) and isinstance(theirs, dict):
        for key in sorted(set(ours) | set(theirs)):
            yield from differing(ours.get(key), theirs.get(key), f"{path}.{key}")
    elif isinstance(ours, list) and isinstance(theirs, list) and len(ours) == len(theirs):
        for index, (mine, reference) in enumerate(zip(ours, theirs, strict=True)):
            yield from differing(mine, reference, f"{path}[{index}]")
    elif ours != theirs:
        yield path, ours, theirs
