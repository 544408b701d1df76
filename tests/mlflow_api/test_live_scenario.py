"""The stock `mlflow` client through a whole registry scenario against a running portal:
the portal's gunicorn and a real Celery worker, on PostgreSQL and Redis, configured for a
local S3 server (moto, in server mode) and a real `mlflow server` as the tracking server.
Versions are registered from `s3://` and from `runs:/`, the worker fetches and validates
them (READY), `mlflow.pyfunc.load_model("models:/name@champion")` loads and predicts, and
each misuse answers an error.

The same scenario runs against the real `mlflow server` (the tracking server's own
registry, so `runs:/` resolves there too, with the same sources): the two sets of results
must be equal field by field, errors as their `error_code`, apart from timestamps, ids
(`user_id`, the run's id is the same on both) and the client-side `workspace`
(tests/mlflow_api/test_parity.py's comparison). The download URI of a version registered
from a logged model (`models:/m-<id>`) is compared too: the worker records where the
source resolved, and the portal answers that, as MLflow does."""

import contextlib

import mlflow
import pytest
from mlflow import MlflowClient

from deployments.demo import churn_data
from mlops_portal.core import tokens
from tests.conftest import (
    control_app,
    mlflow_pointed_at,
    start_celery_worker,
    stop_process,
    wait_for_worker,
    wait_until,
)
from tests.factories import lightgbm_model_folder
from tests.live import start_portal
from tests.mlflow_api.test_parity import differing, recorder
from tests.test_outbox import PrivateRedis

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
]


@pytest.fixture(scope="module")
def logged_run(mlflow_tracking_server):
    """A run on the tracking server with a LightGBM model logged by the mlflow client as
    "model"; returns its run id."""
    import lightgbm
    from mlflow.models import infer_signature

    frame, target = churn_data(rows=200)
    booster = lightgbm.train(
        {"objective": "binary", "verbose": -1}, lightgbm.Dataset(frame, target), 5
    )
    with mlflow_pointed_at(mlflow_tracking_server), mlflow.start_run() as run:
        mlflow.lightgbm.log_model(
            booster,
            name="model",
            signature=infer_signature(frame, booster.predict(frame)),
            input_example=frame.head(3),
        )
    return run.info.run_id


@pytest.fixture(scope="module")
def s3_model(s3_server):
    """A LightGBM MLflow model folder uploaded under an s3:// prefix; returns the URI."""
    return s3_server.upload_folder(lightgbm_model_folder()[0], "models", "live/churn")


@pytest.fixture(scope="module")
def portal_stack(django_db_setup, s3_server, mlflow_tracking_server, tmp_path_factory):
    """gunicorn and a Celery worker configured for the S3 server and the tracking server
    (environment variables, as in production), on a private Redis: the session's worker,
    which knows neither, never takes their jobs. Yields (the portal's URL, the worker's
    Celery app and node)."""
    logs = tmp_path_factory.mktemp("live-scenario")
    broker = PrivateRedis()
    broker.start()
    env = {
        **s3_server.settings(),
        "ARTIFACT_MLFLOW_TRACKING_URI": mlflow_tracking_server,
        "CELERY_BROKER_URL": broker.url,
    }
    node = f"live-scenario-{broker.port}@localhost"
    worker = start_celery_worker(
        node, "default,deploy,probes", logs / "worker.log", concurrency=2, env=env
    )
    try:
        wait_for_worker(control_app(broker.url), node, worker, logs / "worker.log")
        with start_portal(logs / "web.log", env=env) as portal:
            yield portal.url, control_app(broker.url), node
    finally:
        stop_process(worker)
        broker.stop()


@pytest.fixture
def s3_client_settings(s3_server, monkeypatch):
    """What a training job sets for the mlflow client to read s3:// artifacts itself."""
    monkeypatch.setenv("MLFLOW_S3_ENDPOINT_URL", s3_server.endpoint_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_access_key)
    monkeypatch.setenv("AWS_DEFAULT_REGION", s3_server.region)


def scenario(tracking_uri: str, registry_uri: str, s3_source: str, run_id: str) -> list:
    """Every registry call a team makes, in order, each outcome recorded (an error as its
    `error_code`); model names start with "live-"."""
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=registry_uri)
    runs_source = f"runs:/{run_id}/model"
    results = []
    step = recorder(results)

    def register(name, source, **fields):
        # The portal answers PENDING_REGISTRATION until its worker has fetched and
        # validated the artifact; the client waits for READY (MLflow's is READY at once).
        created = client.create_model_version(name, source, await_creation_for=180, **fields)
        return client.get_model_version(name, created.version)

    def register_run_model(name):
        """`mlflow.register_model("runs:/…/model", name)`, as training code does: MLflow 3's
        client finds the run's logged model and registers it by its id (models:/m-…)."""
        with mlflow_pointed_at(tracking_uri, registry_uri):
            created = mlflow.register_model(runs_source, name, await_registration_for=180)
        return client.get_model_version(name, created.version)

    def champion_predicts(name):
        """What `models:/<name>@champion` predicts, loaded by mlflow.pyfunc."""
        with mlflow_pointed_at(tracking_uri, registry_uri):
            model = mlflow.pyfunc.load_model(f"models:/{name}@champion")
        return [round(float(p), 6) for p in model.predict(churn_data(rows=200)[0].head(3))]

    # Models, and the misuse of creating one twice.
    step("create a", client.create_registered_model, "live-a", {"team": "growth"}, "Churn.")
    step("create b", client.create_registered_model, "live-b", {"team": "risk"})
    step("create a again", client.create_registered_model, "live-a")
    step("create bad name", client.create_registered_model, "")

    # Versions from s3:// and runs:/ (the worker fetches and validates each: READY).
    step("register a from s3", register, "live-a", s3_source, description="from S3")
    step("register a from run", register_run_model, "live-a")
    step("register b from s3", register, "live-b", s3_source)
    step("register b by runs source", register, "live-b", runs_source, run_id=run_id,
         tags={"source": "run"})  # fmt: skip
    step("register unknown model", client.create_model_version, "live-nope", s3_source)

    # Aliases, and loading the champion through the registry.
    step("champion is v1", client.set_registered_model_alias, "live-a", "champion", "1")
    step("by champion", client.get_model_version_by_alias, "live-a", "champion")
    step("load champion (s3)", champion_predicts, "live-a")
    step("champion moves to v2", client.set_registered_model_alias, "live-a", "champion", "2")
    step("load champion (run)", champion_predicts, "live-a")
    step("challenger", client.set_registered_model_alias, "live-a", "challenger", "1")
    step("model shows aliases", client.get_registered_model, "live-a")
    step("alias reserved", client.set_registered_model_alias, "live-a", "latest", "1")
    step("alias like a version", client.set_registered_model_alias, "live-a", "v2", "1")
    step("alias no version", client.set_registered_model_alias, "live-a", "x", "9")
    step("alias unknown model", client.set_registered_model_alias, "live-nope", "x", "1")
    step("by latest", client.get_model_version_by_alias, "live-a", "latest")
    step("by unknown alias", client.get_model_version_by_alias, "live-a", "nope")
    step("delete challenger", client.delete_registered_model_alias, "live-a", "challenger")
    step("by deleted alias", client.get_model_version_by_alias, "live-a", "challenger")

    # Tags.
    step("model tag", client.set_registered_model_tag, "live-a", "domain", "retail")
    step("model tag gone", client.delete_registered_model_tag, "live-a", "team")
    step("version tag", client.set_model_version_tag, "live-a", "1", "reviewed", "yes")
    step("version tag gone", client.delete_model_version_tag, "live-b", "2", "source")
    step("tag unknown version", client.set_model_version_tag, "live-a", "9", "k", "v")

    # Stages.
    step("to staging", client.transition_model_version_stage, "live-a", "1", "Staging")
    step("to production", client.transition_model_version_stage, "live-a", "2", "Production")
    step("bad stage", client.transition_model_version_stage, "live-a", "2", "Live")
    step("latest", lambda: sorted(client.get_latest_versions("live-a"), key=lambda v: v.version))
    step("latest production", client.get_latest_versions, "live-a", ["Production"])

    # Search: filters, order and pages walked to the end; bad filters.
    step("search like", client.search_registered_models, "name LIKE 'live-%'")
    step("search tag", client.search_registered_models, "tags.domain = 'retail'")
    step("search versions by run", client.search_model_versions, f"run_id = '{run_id}'",
         order_by=["name ASC", "version_number ASC"])  # fmt: skip
    step("search versions by name", client.search_model_versions, "name = 'live-b'")
    token, pages = None, 0
    while pages == 0 or token:
        found = client.search_model_versions(
            "name LIKE 'live-%'", max_results=1, order_by=["name DESC", "version_number DESC"],
            page_token=token,
        )  # fmt: skip
        step(f"versions page {pages + 1}", lambda found=found: found)
        token, pages = found.token, pages + 1
    step("models page 1", client.search_registered_models, "name LIKE 'live-%'",
         max_results=1, order_by=["name ASC"])  # fmt: skip
    step("bad filter", client.search_registered_models, "name ~ 'x'")
    step("bad filter attribute", client.search_model_versions, "owner = 'alice'")
    step("bad order", client.search_registered_models, order_by=["size"])
    step("bad page token", client.search_registered_models, page_token="zzz")

    # Edits, rename and deletes, and what is then missing.
    step("download uri (s3)", client.get_model_version_download_uri, "live-a", "1")
    step("download uri (run model)", client.get_model_version_download_uri, "live-a", "2")
    step("download uri (runs source)", client.get_model_version_download_uri, "live-b", "2")
    step("update", client.update_registered_model, "live-a", "Churn, edited.")
    step("update version", client.update_model_version, "live-a", "1", "The S3 one.")
    step("rename", client.rename_registered_model, "live-b", "live-c")
    step("rename taken", client.rename_registered_model, "live-c", "live-a")
    step("old name", client.get_registered_model, "live-b")
    step("renamed versions", client.search_model_versions, "name = 'live-c'")
    step("delete v2 of c", client.delete_model_version, "live-c", "2")
    step("get deleted version", client.get_model_version, "live-c", "2")
    step("delete c", client.delete_registered_model, "live-c")
    step("get deleted model", client.get_registered_model, "live-c")
    step("delete unknown", client.delete_registered_model, "live-nope")
    step("final a", client.get_registered_model, "live-a")
    step("final versions", client.search_model_versions, "name = 'live-a'",
         order_by=["version_number ASC"])  # fmt: skip
    return results


def test_the_stock_mlflow_client_runs_the_registry_scenario_as_against_mlflow(
    portal_stack, mlflow_tracking_server, s3_model, logged_run, s3_client_settings, alice,
    monkeypatch,
):  # fmt: skip
    portal_url, worker_app, node = portal_stack
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", tokens.create_token(alice, "training")[1])
    try:
        portal = scenario(mlflow_tracking_server, portal_url, s3_model, logged_run)
    finally:
        wait_idle(worker_app, node)  # before the tables are flushed
    monkeypatch.delenv("MLFLOW_TRACKING_TOKEN")
    reference = scenario(mlflow_tracking_server, mlflow_tracking_server, s3_model, logged_run)

    assert [label for label, _ in portal] == [label for label, _ in reference]
    differences = [
        f"{label}{path}: portal {mine!r}, mlflow {theirs!r}"
        for (label, ours), (_, peer) in zip(portal, reference, strict=True)
        for path, mine, theirs in differing(ours, peer)
    ]
    assert differences == [], "\n".join(differences)
    # What the scenario is for (equal on both, and here for certain): the worker validated
    # each source, the champion loaded from each predicts, and misuse is an error.
    outcomes = dict(portal)
    source = outcomes["register a from run"]["source"]
    assert source.startswith("models:/m-")
    # A logged model's version downloads from where the worker resolved it, as on MLflow.
    model_id = source.removeprefix("models:/")
    assert outcomes["download uri (run model)"].startswith("mlflow-artifacts:/")
    assert outcomes["download uri (run model)"].endswith(f"/{model_id}/artifacts")
    for label in ("register a from s3", "register a from run", "register b by runs source"):
        assert outcomes[label]["status"] == "READY", outcomes[label]
    assert len(outcomes["load champion (s3)"]) == len(outcomes["load champion (run)"]) == 3
    assert outcomes["create a again"] == {"error": "RESOURCE_ALREADY_EXISTS"}


def wait_idle(app, node, timeout=30):
    """Wait until the private worker runs and holds no task."""

    def idle():
        inspect = app.control.inspect([node], timeout=0.5)
        busy = (inspect.active() or {}).get(node, []) + (inspect.reserved() or {}).get(node, [])
        return not busy

    with contextlib.suppress(AssertionError):
        wait_until(idle, timeout=timeout, interval=0.3)
