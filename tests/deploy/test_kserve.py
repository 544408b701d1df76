"""The `kserve` backend against a stand-in Kubernetes API server (tests/deploy/kube_standin.py):
the official client creates, patches and watches a real InferenceService resource over HTTP,
and every manifest it sends is validated against the CRD's schema from KServe v0.20.0."""

import json
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.test import override_settings
from django.utils import timezone

from deployments import services, steps, storage
from deployments.backends import DeployError, backend_for
from deployments.backends.kserve import OWNER_ANNOTATION, manifest, with_canary
from deployments.choices import DeploymentState as State
from deployments.models import Deployment, ModelVersion
from deployments.services import rollouts
from deployments.services.rollouts import JobLog
from tests.deploy.kube_standin import TOKEN, KubeStandIn, manifest_errors


@pytest.fixture
def kube():
    """A stand-in API server; a test fails if the backend sent a schema-invalid manifest."""
    server = KubeStandIn(ready_delay=0.3).start()
    yield server
    server.stop()
    assert server.rejected == [], server.rejected
    assert all(manifest_errors(obj) == [] for _, obj in server.manifests)


def kserve_settings(kube, **overrides):
    return {
        "namespace": "models",
        "service_name": "iris",
        "kubeconfig": kube.kubeconfig(),
        "timeout_seconds": 10,
        "min_replicas": 1,
        "max_replicas": 2,
        "cpu_request": "100m",
        "memory_limit": "1Gi",
        **overrides,
    }


@pytest.fixture
def kserve_target(bob, kube):
    return services.create_target(
        bob, name="iris-kserve", environment="staging", backend="kserve",
        backend_settings=kserve_settings(kube),
    )  # fmt: skip


def deploy(alice, version, target, reason="Ship it"):
    deployment = services.request_deployment(alice, version=version, target=target, reason=reason)
    services.run_deployment(deployment.pk)
    deployment.refresh_from_db()
    return deployment


def is_signed_link_to(uri: str, version) -> bool:
    """Whether `uri` is a signed portal link granting `version`'s served file (the token
    carries its expiry, so two links made a second apart differ)."""
    version_id, token = uri.split("/artifacts/signed/")[1].split("/")[:2]
    return storage.read_token(int(version_id), token) == storage.served_file(version).name


def log_text(deployment) -> str:
    return " ".join(deployment.log_lines.values_list("message", flat=True))


def test_a_deploy_creates_the_inference_service_and_goes_live_at_its_url(
    alice, ready_version, kserve_target, kube
):
    deployment = deploy(alice, ready_version, kserve_target)
    assert deployment.state == State.SUCCEEDED, deployment.failure_reason
    assert deployment.endpoint == "http://iris.models.example.com"
    verb, created = kube.manifests[0]
    assert verb == "create"
    assert created["metadata"]["annotations"][OWNER_ANNOTATION] == str(deployment.pk)
    assert is_signed_link_to(created["spec"]["predictor"]["model"].pop("storageUri"), ready_version)
    assert created["spec"] == {
        "predictor": {
            "minReplicas": 1,
            "maxReplicas": 2,
            "model": {
                "modelFormat": {"name": "sklearn"},
                "resources": {"requests": {"cpu": "100m"}, "limits": {"memory": "1Gi"}},
            },
        }
    }
    live = kube.get("models", "iris")
    assert live["status"]["observedGeneration"] == 1
    assert backend_for(kserve_target).status(deployment) == "serving"
    log = log_text(deployment)
    assert "Creating InferenceService models/iris." in log
    assert "is Ready at http://iris.models.example.com" in log
    assert TOKEN not in log


def test_a_new_version_patches_the_service_and_the_old_deployment_stops_nothing(
    alice, ready_version, second_version, kserve_target, kube
):
    first = deploy(alice, ready_version, kserve_target)
    second = deploy(alice, second_version, kserve_target)
    assert second.state == State.SUCCEEDED, second.failure_reason
    first.refresh_from_db()
    assert (first.state, first.stop_pending) == (State.SUPERSEDED, False)
    live = kube.get("models", "iris")
    assert live["metadata"]["generation"] == 2
    assert live["metadata"]["annotations"][OWNER_ANNOTATION] == str(second.pk)
    assert is_signed_link_to(live["spec"]["predictor"]["model"]["storageUri"], second_version)
    assert [verb for verb, _ in kube.manifests] == ["create", "patch"]
    # The replaced deployment's stop found the service owned by its successor.
    assert backend_for(kserve_target).status(first) == "stopped"
    assert not first.events.filter(message__contains="InferenceService").exists()


def test_a_rollback_re_applies_the_previous_spec(
    alice, bob, ready_version, second_version, kserve_target, kube
):
    first = deploy(alice, ready_version, kserve_target)
    second = deploy(alice, second_version, kserve_target)
    # Settings changed since v1 served: the rollback still restores v1's spec as it was.
    services.update_target(
        bob, kserve_target, backend_settings=kserve_settings(kube, cpu_request="2", kubeconfig="")
    )
    rollback = services.rollback_deployment(bob, second, reason="Accuracy dropped.")
    services.run_deployment(rollback.pk)
    rollback.refresh_from_db()
    assert rollback.state == State.SUCCEEDED, rollback.failure_reason
    second.refresh_from_db()
    assert second.state == State.ROLLED_BACK
    live = kube.get("models", "iris")
    assert live["spec"] == first.backend_state["applied_spec"]
    assert live["spec"]["predictor"]["model"]["resources"]["requests"]["cpu"] == "100m"
    assert live["metadata"]["annotations"][OWNER_ANNOTATION] == str(rollback.pk)
    assert f"re-applying the spec deployment #{first.pk} applied" in log_text(rollback)


@pytest.mark.parametrize(
    ("command", "reason"),
    [
        (lambda kube: kube.hold(), "Ready=Unknown (Deploying: Revision iris-predictor-00001"),
        (
            lambda kube: kube.fail("RevisionFailed", "ImagePullBackOff"),
            "Ready=False (RevisionFailed: ImagePullBackOff)",
        ),
    ],
)
def test_a_service_never_ready_fails_the_deployment_at_the_timeout(
    alice, bob, ready_version, kserve_target, kube, command, reason
):
    services.update_target(
        bob, kserve_target, backend_settings=kserve_settings(kube, timeout_seconds=2, kubeconfig="")
    )
    command(kube)
    deployment = deploy(alice, ready_version, kserve_target)
    assert deployment.state == State.FAILED
    assert "InferenceService models/iris did not become Ready within 2 s" in (
        deployment.failure_reason
    )
    assert reason in deployment.failure_reason
    # Each watch slice ends with a log line, which renews the job's lease.
    assert "Waiting for models/iris to be Ready" in log_text(deployment)
    # It created the service, so cleaning up deletes it.
    assert kube.get("models", "iris") is None
    assert deployment.stop_pending is False
    assert deployment.events.filter(message="InferenceService models/iris deleted.").exists()


def test_a_failed_update_restores_the_live_spec(
    alice, bob, ready_version, second_version, kserve_target, kube
):
    first = deploy(alice, ready_version, kserve_target)
    services.update_target(
        bob, kserve_target, backend_settings=kserve_settings(kube, timeout_seconds=2, kubeconfig="")
    )
    kube.hold()
    second = deploy(alice, second_version, kserve_target)
    assert second.state == State.FAILED
    first.refresh_from_db()
    assert first.state == State.SUCCEEDED
    live = kube.get("models", "iris")
    assert live["spec"] == first.backend_state["applied_spec"]
    assert live["metadata"]["annotations"][OWNER_ANNOTATION] == str(first.pk)
    assert second.events.filter(
        message=f"InferenceService models/iris restored to #{first.pk}'s spec."
    ).exists()


def test_canary_ten_percent_then_promote(alice, ready_version, second_version, kserve_target, kube):
    stable = deploy(alice, ready_version, kserve_target)
    candidate = services.request_deployment(
        alice, version=second_version, target=kserve_target, reason="Canary"
    )
    backend, log = backend_for(kserve_target), JobLog(candidate)
    assert backend.supports_canary

    outcome = backend.start_canary(candidate, stable, 10, log)
    assert outcome.endpoint == "http://iris.models.example.com"
    live = kube.get("models", "iris")
    assert live["spec"]["predictor"]["canaryTrafficPercent"] == 10
    assert live["status"]["components"]["predictor"]["traffic"] == [
        {"latestRevision": True, "percent": 10, "revisionName": "iris-predictor-00002"},
        {"latestRevision": False, "percent": 90, "revisionName": "iris-predictor-00001",
         "tag": "prev"},
    ]  # fmt: skip

    backend.set_canary_weight(candidate, stable, 50, log)
    predictor = kube.get("models", "iris")["status"]["components"]["predictor"]
    assert [entry["percent"] for entry in predictor["traffic"]] == [50, 50]
    assert predictor["latestCreatedRevision"] == "iris-predictor-00002"  # no new revision

    outcome = backend.promote_canary(candidate, stable, log)
    live = kube.get("models", "iris")
    assert "canaryTrafficPercent" not in live["spec"]["predictor"]
    predictor = live["status"]["components"]["predictor"]
    assert predictor["traffic"] == [
        {"latestRevision": True, "percent": 100, "revisionName": "iris-predictor-00002"}
    ]
    assert predictor["latestRolledoutRevision"] == "iris-predictor-00002"
    assert predictor["previousRolledoutRevision"] == "iris-predictor-00001"
    assert outcome.endpoint == "http://iris.models.example.com"
    assert [verb for verb, _ in kube.manifests] == ["create", "patch", "patch", "patch"]


def test_an_aborted_canary_gives_all_traffic_back_to_the_stable_spec(
    alice, bob, ready_version, second_version, kserve_target, kube
):
    stable = deploy(alice, ready_version, kserve_target)
    services.update_target(
        bob, kserve_target, backend_settings=kserve_settings(kube, timeout_seconds=2, kubeconfig="")
    )
    kserve_target.refresh_from_db()
    candidate = services.request_deployment(
        alice, version=second_version, target=kserve_target, reason="Canary"
    )
    backend, log = backend_for(kserve_target), JobLog(candidate)
    backend.start_canary(candidate, stable, 10, log)
    kube.hold()  # the stable spec's new revision is not Ready: the abort must not wait for it
    with pytest.raises(DeployError, match="did not become Ready"):
        backend.abort_canary(candidate, stable, log)
    traffic = kube.get("models", "iris")["status"]["components"]["predictor"]["traffic"]
    assert traffic == [
        {"latestRevision": True, "percent": 0, "revisionName": "iris-predictor-00002"},
        {"latestRevision": False, "percent": 100, "revisionName": "iris-predictor-00001",
         "tag": "prev"},
    ]  # fmt: skip
    kube.hold(False)
    backend.abort_canary(candidate, stable, log)
    live = kube.get("models", "iris")
    assert live["spec"] == stable.backend_state["applied_spec"]
    assert live["metadata"]["annotations"][OWNER_ANNOTATION] == str(stable.pk)
    assert live["status"]["components"]["predictor"]["traffic"][0]["percent"] == 100
    with pytest.raises(DeployError, match="from 0 to 100"):
        backend.set_canary_weight(candidate, stable, 120, log)


def test_a_canary_never_ready_fails_and_stopping_it_restores_the_stable_spec(
    alice, bob, ready_version, second_version, kserve_target, kube
):
    stable = deploy(alice, ready_version, kserve_target)
    services.update_target(
        bob, kserve_target, backend_settings=kserve_settings(kube, timeout_seconds=2, kubeconfig="")
    )
    kserve_target.refresh_from_db()
    candidate = services.request_deployment(
        alice, version=second_version, target=kserve_target, reason="Canary"
    )
    backend = backend_for(kserve_target)
    kube.hold()
    with pytest.raises(DeployError, match="did not become Ready within 2 s"):
        backend.start_canary(candidate, stable, 10, JobLog(candidate))
    assert backend.status(candidate) == "unhealthy"
    assert backend.stop(candidate) == (
        f"InferenceService models/iris restored to #{stable.pk}'s spec (canaryTrafficPercent 0: "
        "its revision keeps all the traffic)."
    )
    live = kube.get("models", "iris")
    assert live["spec"] == with_canary(stable.backend_state["applied_spec"], 0)
    assert live["status"]["components"]["predictor"]["traffic"][0]["revisionName"] == (
        "iris-predictor-00001"
    )
    assert backend.status(candidate) == "stopped"
    assert backend.status(stable) == "unhealthy"  # held: its re-applied spec is not Ready yet
    kube.hold(False)


def test_the_stand_in_refuses_a_manifest_the_schema_refuses(kserve_target, kube):
    backend = backend_for(kserve_target)
    with backend.cluster() as cluster:
        with pytest.raises(DeployError, match="HTTP 422") as refused:
            cluster.create({
                "apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
                "metadata": {"name": "iris"},
                "spec": {"predictor": {"model": {"modelFormat": {}, "storageUrl": "s3://b/k"}}},
            })  # fmt: skip
    assert "'name' is a required property" in str(refused.value)
    assert "'storageUrl' was unexpected" in str(refused.value)
    assert len(kube.rejected) == 1
    kube.rejected.clear()  # expected here; the fixture fails any other test on one


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"service_name": "Iris_Model"}, "service_name must start with a letter"),
        ({"kubeconfig": "not: [yaml"}, "kubeconfig is not usable: it is not YAML."),
        ({"kubeconfig": "apiVersion: v1"}, "kubeconfig is not usable"),
        ({"in_cluster": True}, "Give either kubeconfig or in_cluster, not both."),
        ({"in_cluster": "yes"}, "in_cluster must be true or false."),
        ({"min_replicas": 3, "max_replicas": 2}, "min_replicas ≤ max_replicas"),
        ({"cpu_request": "lots"}, "cpu_request must be a Kubernetes quantity"),
        ({"timeout_seconds": 0}, "timeout_seconds must be between 1 and 3600."),
    ],
)
def test_bad_settings_are_refused_by_name(bob, kube, settings, message):
    with pytest.raises(ValidationError) as refused:
        services.create_target(
            bob, name="bad", environment="staging", backend="kserve",
            backend_settings=kserve_settings(kube, **settings),
        )  # fmt: skip
    assert any(message in error for error in refused.value.message_dict["backend_settings"])


def test_the_api_and_the_form_name_the_bad_setting(api_client_for, client, bob):
    bad = api_client_for(bob).post(
        "/api/v1/targets/",
        {"name": "k", "environment": "staging", "backend": "kserve",
         "backend_settings": {"service_name": "iris"}},
        format="json",
    )  # fmt: skip
    assert bad.status_code == 400
    assert "kubeconfig is required" in " ".join(bad.json()["backend_settings"])
    client.force_login(bob)
    response = client.post(
        "/targets/new/",
        {"name": "k", "environment": "staging", "backend": "kserve",
         "backend_settings": '{"kubeconfig": "x: 1"}', "verification_window_seconds": 60},
    )  # fmt: skip
    errors = " ".join(response.context["form"].errors["backend_settings"])
    assert "service_name is required" in errors


def test_the_kubeconfig_is_never_shown(api_client_for, client, bob, kserve_target):
    body = api_client_for(bob).get(f"/api/v1/targets/{kserve_target.name}/").json()
    assert body["backend_settings"]["kubeconfig"] == "********"
    assert TOKEN not in json.dumps(body)
    client.force_login(bob)
    for url in (kserve_target.get_absolute_url(), f"{kserve_target.get_absolute_url()}edit/"):
        page = client.get(url).content.decode()
        assert TOKEN not in page
        assert "iris" in page


def test_a_wrong_token_fails_the_deployment_with_the_api_answer(
    alice, bob, ready_version, kserve_target, kube
):
    services.update_target(
        bob, kserve_target,
        backend_settings=kserve_settings(kube, kubeconfig=kube.kubeconfig(token="wrong-token")),
    )  # fmt: skip
    deployment = deploy(alice, ready_version, kserve_target)
    assert deployment.state == State.FAILED
    assert "The Kubernetes API refused: HTTP 401 Unauthorized" in deployment.failure_reason
    assert "wrong-token" not in deployment.failure_reason + log_text(deployment)


def test_in_cluster_outside_a_pod_fails_with_a_clear_reason(
    alice, bob, ready_version, kserve_target, kube
):
    services.update_target(bob, kserve_target, backend_settings={
        "service_name": "iris", "namespace": "models", "in_cluster": True,
    })  # fmt: skip
    assert "kubeconfig" not in kserve_target.backend_settings
    deployment = deploy(alice, ready_version, kserve_target)
    assert deployment.state == State.FAILED
    assert deployment.failure_reason.startswith("Kubernetes credentials: ")


class WorkerDied(BaseException):
    """Ends the job where a SIGKILL would: no except clause of the job catches it."""


@override_settings(DEPLOY_LEASE_SECONDS=60)
def test_the_reconciler_restores_the_live_spec_when_the_job_died(
    alice, ready_version, second_version, kserve_target, kube, monkeypatch
):
    first = deploy(alice, ready_version, kserve_target)
    second = services.request_deployment(
        alice, version=second_version, target=kserve_target, reason="v2"
    )
    kube.hold()

    def die_after_applying(step):
        if step == "server_started":
            raise WorkerDied

    monkeypatch.setattr(steps, "reached", die_after_applying)
    with pytest.raises(WorkerDied):
        services.run_deployment(second.pk)
    assert kube.get("models", "iris")["metadata"]["annotations"][OWNER_ANNOTATION] == str(second.pk)
    done = services.reconcile_deployments(now=timezone.now() + timedelta(seconds=61))
    assert done["failed"] == 1
    second.refresh_from_db()
    assert (second.state, second.stop_pending) == (State.FAILED, False)
    live = kube.get("models", "iris")
    assert live["spec"] == first.backend_state["applied_spec"]
    assert live["metadata"]["annotations"][OWNER_ANNOTATION] == str(first.pk)


def test_an_unreachable_api_leaves_the_stop_pending_for_the_reconciler(
    alice, ready_version, kserve_target, kube
):
    deployment = deploy(alice, ready_version, kserve_target)
    Deployment.objects.filter(pk=deployment.pk).update(stop_pending=True)
    kube.stop()
    assert backend_for(kserve_target).status(deployment) == "unhealthy"
    assert rollouts.stop_server(deployment) is False
    deployment.refresh_from_db()
    assert deployment.stop_pending is True


def test_an_mlflow_model_is_served_by_mlserver_over_the_v2_protocol(bob, kube, monkeypatch):
    # Where the model is stored is storage's business (tests/storage); here only its URI.
    monkeypatch.setattr(storage, "storage_uri", lambda version: version.artifact_uri)
    target = services.create_target(
        bob, name="mlflow-kserve", environment="staging", backend="kserve",
        backend_settings=kserve_settings(kube, runtime="kserve-mlserver", service_account="s3"),
    )  # fmt: skip
    version = ModelVersion(flavor="mlflow", artifact_uri="s3://models/iris/3")
    predictor = backend_for(target).predictor(version)
    assert predictor["serviceAccountName"] == "s3"
    assert predictor["model"] == {
        "modelFormat": {"name": "mlflow"},
        "protocolVersion": "v2",
        "runtime": "kserve-mlserver",
        "storageUri": "s3://models/iris/3",
        "resources": {"requests": {"cpu": "100m"}, "limits": {"memory": "1Gi"}},
    }
    with backend_for(target).cluster() as cluster:
        assert manifest_errors(manifest(cluster, 1, {"predictor": predictor})) == []


def test_a_canary_request_walks_its_steps_on_kserve_through_the_step_jobs(
    alice, ready_version, second_version, kserve_target, kube
):
    from deployments.services import canary

    stable = deploy(alice, ready_version, kserve_target)
    candidate = services.request_deployment(
        alice, version=second_version, target=kserve_target, reason="Canary",
        strategy="canary", canary_steps=[10, 50], canary_step_seconds=60,
    )  # fmt: skip
    assert services.run_deployment(candidate.pk) == State.RUNNING
    candidate.refresh_from_db()
    assert candidate.canary_weight == 10 and candidate.endpoint == "http://iris.models.example.com"
    assert kube.get("models", "iris")["spec"]["predictor"]["canaryTrafficPercent"] == 10

    assert canary.run_step(candidate.pk, 0) == State.RUNNING
    predictor = kube.get("models", "iris")["status"]["components"]["predictor"]
    assert [entry["percent"] for entry in predictor["traffic"]] == [50, 50]
    assert canary.run_step(candidate.pk, 0) is None  # delivered twice: decided once

    assert canary.run_step(candidate.pk, 1) == State.SUCCEEDED
    live = kube.get("models", "iris")
    assert "canaryTrafficPercent" not in live["spec"]["predictor"]
    assert live["metadata"]["annotations"][OWNER_ANNOTATION] == str(candidate.pk)
    stable.refresh_from_db()
    assert stable.state == State.SUPERSEDED
    notes = list(candidate.events.filter(kind="canary").values_list("message", flat=True))
    assert "Not judged: the kserve backend gives no metrics per version" in notes[1]
    assert notes[-1].startswith("Promoted automatically")


def test_an_engineers_abort_of_a_kserve_canary_restores_the_stable_spec(
    alice, bob, ready_version, second_version, kserve_target, kube
):
    from deployments.services import canary

    stable = deploy(alice, ready_version, kserve_target)
    candidate = services.request_deployment(
        alice, version=second_version, target=kserve_target, reason="Canary",
        strategy="canary", canary_steps=[10], canary_step_seconds=60,
    )  # fmt: skip
    services.run_deployment(candidate.pk)
    canary.abort_canary(bob, candidate, reason="Errors on the dashboard.")
    assert canary.run_step(candidate.pk, 0) is None  # the hand took the decision first
    assert canary.run_decision(candidate.pk, "abort", bob.pk, "Errors on the dashboard.") == (
        State.FAILED
    )
    live = kube.get("models", "iris")
    assert live["metadata"]["annotations"][OWNER_ANNOTATION] == str(stable.pk)
    assert live["status"]["components"]["predictor"]["traffic"][0]["percent"] == 100
    candidate.refresh_from_db()
    assert candidate.failure_reason == "Canary aborted by bob: Errors on the dashboard."
    stable.refresh_from_db()
    assert stable.state == State.SUCCEEDED
