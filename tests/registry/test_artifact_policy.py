"""Artifact URIs obey the network policy: when registered, and when a worker downloads them
(on the resolved address and on every redirect).

No packet leaves the machine: names are answered by a stubbed resolver, and every connection
attempt is recorded (and any outside loopback fails the test) before it is made."""

import http.server
import re
import threading

import pytest

from deployments import services
from deployments.backends import DeployError
from deployments.backends.local import download_to
from deployments.choices import VersionStatus
from deployments.models import ModelVersion
from tests.factories import iris_artifact, register_iris_version

VERSIONS = "/api/v1/models/churn/versions/"
METADATA_REFUSED = (
    "resolves to 169.254.169.254, which is link-local (cloud metadata); "
    "artifact downloads never go there."
)


@pytest.fixture
def redirector():
    """A server on 127.0.0.1 answering every GET with a redirect to `server.location`."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(302)
            self.send_header("Location", self.server.location)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.location = ""
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def register_uri(user, model, uri):
    return register_iris_version(user, model, artifact=None, artifact_uri=uri)


# --- at registration ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "error"),
    [
        (
            "http://169.254.169.254/latest/meta-data/model.joblib",
            "169.254.169.254 is link-local (cloud metadata); artifact downloads never go there.",
        ),
        (
            "http://[::ffff:169.254.169.254]/m.joblib",
            "169.254.169.254 is link-local (cloud metadata); artifact downloads never go there.",
        ),
        ("http://0.0.0.0:9/m.joblib", "0.0.0.0 is unspecified (this host)"),
        ("http://2852039166/m.joblib", "2852039166 is not a canonical IP address."),
        ("http://8.8.8.8/m.joblib", "8.8.8.8 is outside ARTIFACT_ALLOWED_NETWORKS."),
    ],
)
def test_registering_a_uri_outside_the_policy_is_a_400_on_artifact_uri(
    api_client_for, alice, churn, dns, uri, error
):
    response = api_client_for(alice).post(
        VERSIONS, {"artifact_uri": uri, "sample_input": [[1, 2, 3, 4]]}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["artifact_uri"][0].startswith(error)
    assert not ModelVersion.objects.exists()
    assert dns[1] == []


def test_the_setting_narrows_where_artifacts_may_come_from(alice, churn, settings):
    settings.ARTIFACT_ALLOWED_NETWORKS = ["10.0.0.0/8"]
    with pytest.raises(Exception) as caught:
        register_uri(alice, churn, "http://127.0.0.1:9/m.joblib")
    assert caught.value.message_dict == {
        "artifact_uri": ["127.0.0.1 is outside ARTIFACT_ALLOWED_NETWORKS."]
    }


# --- when the worker downloads ------------------------------------------------------------


def test_a_name_resolving_to_the_metadata_address_is_refused_before_connecting(alice, churn, dns):
    answers, connected = dns
    answers["models.attacker.test"] = "169.254.169.254"
    version = register_uri(alice, churn, "http://models.attacker.test/latest/model.joblib")

    validated = services.validate_version(version.pk)

    assert validated.status == VersionStatus.INVALID
    assert f"models.attacker.test {METADATA_REFUSED}" in validated.status_detail
    assert connected == []


def test_a_redirect_to_the_metadata_address_is_refused(alice, churn, dns, redirector):
    redirector.location = "http://169.254.169.254/latest/meta-data/"
    url = f"http://127.0.0.1:{redirector.server_port}/model.joblib"
    version = register_uri(alice, churn, url)

    validated = services.validate_version(version.pk)

    assert validated.status == VersionStatus.INVALID
    assert "169.254.169.254 is link-local (cloud metadata)" in validated.status_detail
    assert dns[1] == ["127.0.0.1"]  # the redirector only


def test_a_redirect_to_a_name_that_rebinds_is_refused_at_connect(alice, churn, dns, redirector):
    answers, connected = dns
    answers["rebind.attacker.test"] = "169.254.169.254"
    redirector.location = "http://rebind.attacker.test/model.joblib"
    version = register_uri(alice, churn, f"http://127.0.0.1:{redirector.server_port}/m.joblib")

    validated = services.validate_version(version.pk)

    assert validated.status == VersionStatus.INVALID
    assert f"rebind.attacker.test {METADATA_REFUSED}" in validated.status_detail
    assert connected == ["127.0.0.1"]


def test_an_allowed_download_still_works(alice, churn, dns, artifact_server):
    version = register_uri(alice, churn, f"{artifact_server}/model.joblib")
    assert services.validate_version(version.pk).status == VersionStatus.READY
    assert dns[1] == ["127.0.0.1"]


def test_a_loopback_port_with_nothing_listening_fails_plainly(alice, churn, dns):
    version = register_uri(alice, churn, "http://127.0.0.1:9/model.joblib")
    validated = services.validate_version(version.pk)
    assert validated.status == VersionStatus.INVALID
    assert "Could not download http://127.0.0.1:9/model.joblib" in validated.status_detail


def test_the_local_backend_downloads_inside_the_policy(dns, tmp_path, artifact_server):
    answers, connected = dns
    answers["models.attacker.test"] = "169.254.169.254"
    destination = tmp_path / "version-1.artifact"
    with pytest.raises(DeployError, match=re.escape(METADATA_REFUSED)):
        download_to("http://models.attacker.test/m.joblib", destination)
    assert connected == []
    assert list(tmp_path.iterdir()) == []  # no partial file left behind

    download_to(f"{artifact_server}/model.joblib", destination)
    assert destination.read_bytes() == iris_artifact()[0]
