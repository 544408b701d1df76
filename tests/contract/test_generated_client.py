"""A Python client generated from the served schema with openapi-python-client (in the test
run, never committed) does what a pipeline does: create a model, register a version by URI
and by upload, wait for `ready`, deploy to a target without approval and see it serve."""

import importlib
import io
import json
import pkgutil
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from deployments import services as registry
from tests.conftest import stop_model_servers
from tests.factories import iris_artifact

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]
GENERATOR = str(Path(sys.executable).parent / "openapi-python-client")
PACKAGE = "portal_client"


@pytest.fixture
def generated_client(live_portal, tmp_path):
    """The `portal_client` package generated from the served schema, importable."""
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps(live_portal.schema))
    config = tmp_path / "config.json"  # no formatter run: ruff is not the generator's to call
    config.write_text(json.dumps({"package_name_override": PACKAGE, "post_hooks": []}))
    output = tmp_path / "generated" / PACKAGE
    done = subprocess.run(
        [GENERATOR, "generate", "--path", str(schema), "--output-path", str(output),
         "--meta", "none", "--config", str(config)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Warning" not in done.stdout + done.stderr, done.stdout + done.stderr
    sys.path.insert(0, str(output.parent))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(output.parent))
        for name in [name for name in sys.modules if name.split(".")[0] == PACKAGE]:
            del sys.modules[name]


@pytest.fixture
def artifact_server():
    """An artifact store on 127.0.0.1 serving the iris model at /iris.joblib."""
    artifact = iris_artifact()[0]

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/iris.joblib" else 404)
            self.send_header("Content-Length", str(len(artifact)))
            self.end_headers()
            self.wfile.write(artifact)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/iris.joblib"
    server.shutdown()
    server.server_close()


def test_every_generated_module_imports(generated_client):
    modules = [
        info.name
        for info in pkgutil.walk_packages(generated_client.__path__, f"{PACKAGE}.")
        if not info.ispkg
    ]
    for name in modules:
        importlib.import_module(name)
    assert len([m for m in modules if ".api." in m]) == sum(
        len(methods) for methods in generated_client_schema_paths(generated_client)
    )


def generated_client_schema_paths(package) -> list:
    schema = json.loads((Path(package.__path__[0]).parent.parent / "schema.json").read_text())
    return [list(methods) for methods in schema["paths"].values()]


def test_a_pipeline_registers_waits_and_deploys_with_the_generated_client(
    generated_client, live_portal, celery_worker_process, artifact_server, admin
):
    from portal_client import AuthenticatedClient
    from portal_client.api.deployments import create_deployment, get_deployment
    from portal_client.api.models import create_model, get_model_version, register_model_version
    from portal_client.models import (
        Deployment,
        DeploymentRequestRequest,
        DeploymentStateEnum,
        ModelVersion,
        ModelVersionByUriRequest,
        ModelVersionByUriRequestMetrics,
        ModelVersionUploadRequest,
        ModelVersionUploadRequestMetrics,
        RegisteredModel,
        RegisteredModelCreateRequest,
        StatusEnum,
    )
    from portal_client.types import File

    registry.create_target(admin, name="churn-staging", environment="staging",
                           requires_approval=False)  # fmt: skip
    artifact, metrics, _, sample = iris_artifact()
    api = AuthenticatedClient(base_url=live_portal.url, token=live_portal.token, prefix="Token")

    model = create_model.sync(
        client=api, body=RegisteredModelCreateRequest(name="churn", team="growth", tags=["ci"])
    )
    assert isinstance(model, RegisteredModel), model
    assert (model.name, model.version_count) == ("churn", 0)

    by_uri = register_model_version.sync(
        "churn",
        client=api,
        body=ModelVersionByUriRequest(
            artifact_uri=artifact_server,
            sample_input=sample,
            metrics=ModelVersionByUriRequestMetrics.from_dict(metrics),
            tags=["by-uri"],
        ),
    )
    assert isinstance(by_uri, ModelVersion), by_uri
    assert (by_uri.version, by_uri.artifact, by_uri.artifact_uri) == (1, None, artifact_server)

    uploaded = register_model_version.sync(
        "churn",
        client=api,
        body=ModelVersionUploadRequest(
            artifact=File(payload=io.BytesIO(artifact), file_name="model.joblib"),
            sample_input=json.dumps(sample),
            metrics=ModelVersionUploadRequestMetrics.from_dict(metrics),
            tags=["uploaded", "candidate"],
        ),
    )
    assert isinstance(uploaded, ModelVersion), uploaded
    assert (uploaded.version, uploaded.artifact_size) == (2, len(artifact))
    assert uploaded.sample_input == sample and uploaded.tags == ["candidate", "uploaded"]

    for number in (1, 2):
        ready = poll(
            lambda n=number: get_model_version.sync("churn", n, client=api),
            lambda version: version.status in (StatusEnum.READY, StatusEnum.INVALID),
        )
        assert ready.status == StatusEnum.READY, ready.status_detail

    requested = create_deployment.sync(
        client=api,
        body=DeploymentRequestRequest(
            model="churn", version=2, target="churn-staging", reason="CI: tests passed"
        ),
    )
    assert isinstance(requested, Deployment), requested
    try:
        done = poll(
            lambda: get_deployment.sync(requested.id, client=api),
            lambda d: d.state in (DeploymentStateEnum.SUCCEEDED, DeploymentStateEnum.FAILED),
            timeout=90,
        )
        assert done.state == DeploymentStateEnum.SUCCEEDED, done.failure_reason
        answer = httpx.post(f"{done.endpoint}/predict", json={"instances": sample}, timeout=10)
        assert answer.status_code == 200 and len(answer.json()["predictions"]) == len(sample)
    finally:
        stop_model_servers()


def poll(fetch, finished, timeout=60.0):
    """`fetch()` until `finished(result)`; the last result, or a failure after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        result = fetch()
        if finished(result):
            return result
        assert time.monotonic() < deadline, f"still {result} after {timeout} s"
        time.sleep(0.3)
