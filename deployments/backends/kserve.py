"""The `kserve` backend: serves a version as a KServe `InferenceService`
(`serving.kserve.io/v1beta1`) on a Kubernetes cluster, through the official `kubernetes`
client. One InferenceService per target: a deploy creates it, or merge-patches its spec;
it is live when its `Ready` condition is True for the new generation and `status.url` is
set, within the target's `timeout_seconds`.

The InferenceService carries the id of the deployment whose spec it holds (annotation
OWNER_ANNOTATION), and `Deployment.backend_state` keeps the spec each deployment applied and
the one it replaced. So stopping a deployment that no longer owns the service does nothing
(blue/green: the replaced one is stopped after the switch), stopping a failed one puts the
replaced spec back, and a rollback re-applies the spec its version served with.

Canary (`start_canary` …): KServe keeps the last revision rolled out at 100 % as the stable
one and sends `spec.predictor.canaryTrafficPercent` of the traffic to the latest."""

import logging
import math
import re
import time
from contextlib import contextmanager

import urllib3
import yaml
from kubernetes import client as kube
from kubernetes import config as kube_config
from kubernetes import watch as kube_watch
from kubernetes.config.config_exception import ConfigException

from deployments import steps, storage
from deployments.backends import DeployBackend, DeployError, Outcome, SettingSpec
from deployments.choices import Flavor

logger = logging.getLogger(__name__)

GROUP, VERSION, PLURAL = "serving.kserve.io", "v1beta1", "inferenceservices"
OWNER_ANNOTATION = "mlops-portal/deployment"
# The KServe model format each flavor is served as (config/runtimes/ of KServe v0.20.0):
# kserve-sklearnserver serves "sklearn"; MLServer serves "mlflow" over the v2 protocol.
MODEL_FORMATS = {Flavor.SKLEARN: ("sklearn", ""), Flavor.MLFLOW: ("mlflow", "v2")}
# KServe names the predictor "<name>-predictor" and Knative adds "-00001": a service name
# of up to 45 characters keeps every derived name within a 63-character DNS label.
SERVICE_NAME = re.compile(r"^[a-z]([-a-z0-9]{0,43}[a-z0-9])?$")
NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
# Kubernetes' resource quantity, as the InferenceService CRD's schema checks it.
QUANTITY = re.compile(
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
RESOURCES = (
    ("cpu_request", "requests", "cpu"),
    ("memory_request", "requests", "memory"),
    ("cpu_limit", "limits", "cpu"),
    ("memory_limit", "limits", "memory"),
)
WATCH_SLICE_SECONDS = 2  # each slice ends with a log line, which renews the job's lease
REQUEST_TIMEOUT = (5, 30)  # connect, read (seconds) for every non-watch call
STATUS_TIMEOUT = (2, 3)  # `status` is asked while a page renders


class KServeBackend(DeployBackend):
    supports_canary = True
    settings_spec = (
        SettingSpec("namespace", str, default="default", help="Namespace of the service."),
        SettingSpec(
            "service_name", str, required=True,
            help="InferenceService name: lowercase letters, digits and '-', up to 45.",
        ),
        SettingSpec(
            "kubeconfig", str, secret=True,
            help="Kubeconfig YAML (its current context is used); or set in_cluster.",
        ),
        SettingSpec(
            "in_cluster", bool, default=False,
            help="Use the worker pod's service account instead of a kubeconfig.",
        ),
        SettingSpec(
            "timeout_seconds", int, default=600, minimum=1, maximum=3600,
            help="How long to wait for Ready.",
        ),
        SettingSpec(
            "min_replicas", int, default=1, minimum=0, maximum=100,
            help="spec.predictor.minReplicas.",
        ),
        SettingSpec(
            "max_replicas", int, default=1, minimum=1, maximum=100,
            help="spec.predictor.maxReplicas.",
        ),
        SettingSpec("cpu_request", str, help="e.g. 500m."),
        SettingSpec("memory_request", str, help="e.g. 1Gi."),
        SettingSpec("cpu_limit", str, help="e.g. 1."),
        SettingSpec("memory_limit", str, help="e.g. 2Gi."),
        SettingSpec("runtime", str, help="A ServingRuntime name; KServe picks one if blank."),
        SettingSpec(
            "service_account", str, help="serviceAccountName (credentials for the storage)."
        ),
    )  # fmt: skip

    @classmethod
    def clean_settings(cls, raw, previous=None):
        if isinstance(raw, dict) and raw.get("in_cluster") is True and not raw.get("kubeconfig"):
            # Switching to in-cluster credentials drops the stored kubeconfig, which a
            # blank secret would otherwise keep.
            previous = {k: v for k, v in (previous or {}).items() if k != "kubeconfig"}
        return super().clean_settings(raw, previous)

    @classmethod
    def check_values(cls, cleaned):
        errors = []
        if not SERVICE_NAME.match(cleaned.get("service_name", "x")):
            errors.append(
                "service_name must start with a letter, hold only lowercase letters, digits "
                "and '-', end with a letter or digit, and be at most 45 characters."
            )
        if not NAMESPACE.match(cleaned.get("namespace", "default")):
            errors.append("namespace must be a DNS label (lowercase letters, digits, '-').")
        errors += credential_errors(cleaned)
        if cleaned.get("min_replicas", 1) > cleaned.get("max_replicas", 1):
            errors.append(
                "Replicas need min_replicas ≤ max_replicas (max_replicas is 1 when not set)."
            )
        for name, _, _ in RESOURCES:
            if name in cleaned and not QUANTITY.match(cleaned[name]):
                errors.append(f"{name} must be a Kubernetes quantity such as 500m, 1 or 2Gi.")
        return errors

    # --- deploy, stop, status ----------------------------------------------------------

    def deploy(self, deployment, log) -> Outcome:
        spec = self.spec_for(deployment, log)
        with self.cluster() as cluster:
            applied, replaced = self.apply(cluster, deployment.pk, spec, log)
            state = {**self.location(), "applied_spec": spec, "replaced": replaced}
            if not record_state(deployment, state, running_only=True):
                restore(cluster, replaced)
                raise DeployError("The deployment ended while its InferenceService was applied.")
            steps.reached("server_started")
            ready = self.wait_until_ready(cluster, applied["metadata"]["generation"], log)
        url = ready["status"]["url"]
        log(f"InferenceService {cluster} is Ready at {url}.")
        return Outcome(endpoint=url)

    def stop(self, deployment) -> str | None:
        """Put back the spec `deployment` replaced (or delete the service it created), but
        only while the service still holds its spec: once a newer deployment owns the
        service, there is nothing of this one left to stop."""
        state = deployment.backend_state or {}
        if "service" not in state:
            return None
        try:
            with self.cluster(state) as cluster:
                current = cluster.get()
                if current is None or owner(current) != str(deployment.pk):
                    return None
                return restore(cluster, state.get("replaced"))
        except DeployError as exc:
            logger.warning("Could not stop deployment #%s: %s", deployment.pk, exc)
            return None  # status stays "unhealthy": the reconciler tries again

    def status(self, deployment) -> str:
        state = deployment.backend_state or {}
        if "service" not in state:
            return "stopped"
        try:
            with self.cluster(state, timeout=STATUS_TIMEOUT) as cluster:
                current = cluster.get()
        except DeployError:
            return "unhealthy"  # cannot tell; a pending stop must be tried again
        if current is None or being_deleted(current) or owner(current) != str(deployment.pk):
            return "stopped"
        return "serving" if condition(current, "Ready").get("status") == "True" else "unhealthy"

    # --- canary (KServe's canaryTrafficPercent) ------------------------------------------

    def start_canary(self, deployment, stable, weight: int, log) -> Outcome:
        """Apply `deployment`'s spec to the service `stable` serves, with `weight` % of the
        traffic for it; KServe keeps `stable`'s revision for the rest."""
        check_weight(weight)
        spec = self.spec_for(deployment, log)
        with self.cluster() as cluster:
            current = cluster.get()
            if current is None or owner(current) != str(stable.pk):
                raise DeployError(
                    f"InferenceService {cluster} does not serve #{stable.pk}; a canary starts "
                    "from the live deployment."
                )
            canary = with_canary(spec, weight)
            applied, replaced = self.apply(cluster, deployment.pk, canary, log, current=current)
            state = {**self.location(), "applied_spec": spec, "replaced": replaced}
            record_state(deployment, {**state, "canary_percent": weight})
            ready = self.wait_until_ready(
                cluster, applied["metadata"]["generation"], log, latest_percent=weight
            )
        log(f"Canary: {weight} % of {cluster}'s traffic goes to #{deployment.pk}.")
        return Outcome(endpoint=ready["status"]["url"])

    def set_canary_weight(self, deployment, stable, weight: int, log) -> None:
        check_weight(weight)
        self.patch_canary(deployment, weight, log)
        record_state(deployment, {**deployment.backend_state, "canary_percent": weight})
        log(f"Canary: {weight} % of the traffic goes to #{deployment.pk}.")

    def promote_canary(self, deployment, stable, log) -> Outcome:
        """Remove canaryTrafficPercent: KServe rolls the latest revision out to 100 %."""
        ready = self.patch_canary(deployment, None, log)
        state = dict(deployment.backend_state)
        state.pop("canary_percent", None)
        record_state(deployment, state)
        log(f"Canary promoted: #{deployment.pk} takes all the traffic.")
        return Outcome(endpoint=ready["status"]["url"])

    def abort_canary(self, deployment, stable, log) -> None:
        """Give all traffic back to `stable` at once, then roll its spec out again.

        Not by re-applying `stable`'s spec alone: without canaryTrafficPercent, Knative
        sends everything to the latest *ready* revision, the candidate's, until the new
        revision of the stable spec is Ready. So first the stable spec with 0 % for the
        latest revision (the last one rolled out, stable's, takes 100 % at once), then,
        once that revision is Ready, the field removed."""
        spec = (stable.backend_state or {}).get("applied_spec")
        if not spec:
            raise DeployError(f"#{stable.pk} recorded no spec to go back to.")
        with self.cluster() as cluster:
            applied, _ = self.apply(cluster, stable.pk, with_canary(spec, 0), log)
            self.wait_until_ready(cluster, applied["metadata"]["generation"], log, latest_percent=0)
            log(f"Canary aborted: #{stable.pk}'s revision takes all the traffic again.")
            self.roll_out(cluster, log)

    def patch_canary(self, deployment, weight: int | None, log) -> dict:
        with self.cluster() as cluster:
            current = cluster.get()
            if current is None or owner(current) != str(deployment.pk):
                raise DeployError(f"InferenceService {cluster} does not hold #{deployment.pk}.")
            if weight is None:
                return self.roll_out(cluster, log)
            log(f"Setting canaryTrafficPercent of {cluster} to {weight}.")
            patched = cluster.patch({"spec": {"predictor": {"canaryTrafficPercent": weight}}})
            return self.wait_until_ready(
                cluster, patched["metadata"]["generation"], log, latest_percent=weight
            )

    def roll_out(self, cluster, log) -> dict:
        """Remove canaryTrafficPercent and wait until the latest revision takes 100 %."""
        log(f"Removing canaryTrafficPercent of {cluster}: the latest revision takes 100 %.")
        patched = cluster.patch({"spec": {"predictor": {"canaryTrafficPercent": None}}})
        return self.wait_until_ready(
            cluster, patched["metadata"]["generation"], log, latest_percent=100
        )

    # --- the InferenceService ------------------------------------------------------------

    def spec_for(self, deployment, log) -> dict:
        """The spec to apply: for a rollback, the one its version last served with on this
        target (so the rollback restores exactly that); otherwise a new one."""
        if deployment.rollback_of_id:
            earlier = last_served_with(deployment)
            if earlier is not None:
                log(f"Rollback: re-applying the spec deployment #{earlier.pk} applied.")
                return earlier.backend_state["applied_spec"]
        return {"predictor": self.predictor(deployment.version)}

    def predictor(self, version) -> dict:
        if version.flavor not in MODEL_FORMATS:
            raise DeployError(f"KServe has no model format for the {version.flavor} flavor.")
        name, protocol = MODEL_FORMATS[version.flavor]
        model = {"modelFormat": {"name": name}, "storageUri": storage.storage_uri(version)}
        if protocol:
            model["protocolVersion"] = protocol
        if self.settings.get("runtime"):
            model["runtime"] = self.settings["runtime"]
        resources = {}
        for setting, group, resource in RESOURCES:
            if self.settings.get(setting):
                resources.setdefault(group, {})[resource] = self.settings[setting]
        if resources:
            model["resources"] = resources
        predictor = {
            "minReplicas": self.settings["min_replicas"],
            "maxReplicas": self.settings["max_replicas"],
            "model": model,
        }
        if self.settings.get("service_account"):
            predictor["serviceAccountName"] = self.settings["service_account"]
        return predictor

    def apply(self, cluster, owner_id, spec, log, current=None) -> tuple[dict, dict | None]:
        """Create the service with `spec`, or merge-patch its spec to `spec`; return the
        object the API answered and what was replaced ({"spec", "owner"}, or None)."""
        current = current or cluster.get()
        if current is None:
            log(f"Creating InferenceService {cluster}.")
            return cluster.create(manifest(cluster, owner_id, spec)), None
        replaced = {"spec": current.get("spec", {}), "owner": owner(current)}
        log(f"Patching InferenceService {cluster} (it held #{replaced['owner'] or '—'}).")
        patched = cluster.patch(spec_patch(current, owner_id, spec))
        return patched, replaced

    def wait_until_ready(self, cluster, generation, log, latest_percent=None) -> dict:
        """Watch the service until it is Ready for `generation` with its URL set (and, for a
        canary, `latest_percent` % of the traffic on the latest revision); the object then.
        Raises DeployError, naming the last condition seen, after `timeout_seconds`."""
        timeout = self.settings["timeout_seconds"]
        deadline = time.monotonic() + timeout
        last = None
        while (remaining := deadline - time.monotonic()) > 0:
            for event_type, obj in cluster.watch(min(remaining, WATCH_SLICE_SECONDS)):
                if event_type == "DELETED":
                    raise DeployError(f"InferenceService {cluster} was deleted meanwhile.")
                last = obj
                if is_ready(obj, generation, latest_percent):
                    return obj
            log(f"Waiting for {cluster} to be Ready: {describe(last, generation)}")
        raise DeployError(
            f"InferenceService {cluster} did not become Ready within {timeout} s: "
            f"{describe(last, generation)}"
        )

    # --- the API client ----------------------------------------------------------------

    def location(self) -> dict:
        return {"namespace": self.settings["namespace"], "service": self.settings["service_name"]}

    @contextmanager
    def cluster(self, state: dict | None = None, timeout=REQUEST_TIMEOUT):
        """A client of the target's cluster for one service (`state` names it when it is
        not the one the settings name today)."""
        where = state or self.location()
        api_client = kube.ApiClient(self.client_configuration())
        api = kube.CustomObjectsApi(api_client)
        try:
            yield Cluster(api, where["namespace"], where["service"], timeout)
        finally:
            api_client.close()

    def client_configuration(self) -> kube.Configuration:
        configuration = kube.Configuration()
        try:
            if self.settings.get("in_cluster"):
                kube_config.load_incluster_config(client_configuration=configuration)
            else:
                load_kubeconfig(self.settings.get("kubeconfig", ""), configuration)
        except ConfigException as exc:
            raise DeployError(f"Kubernetes credentials: {exc}") from exc
        configuration.retries = 1  # fail within the deadline rather than retry thrice
        return configuration


class Cluster:
    """One InferenceService through the official client; API errors become DeployError."""

    def __init__(self, api: kube.CustomObjectsApi, namespace: str, name: str, timeout):
        self.api, self.namespace, self.name = api, namespace, name
        self.timeout = timeout  # (connect, read) seconds of each call but the watch

    def __str__(self):
        return f"{self.namespace}/{self.name}"

    def get(self) -> dict | None:
        with self.errors(missing_ok=True):
            return self.api.get_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, self.name, _request_timeout=self.timeout
            )
        return None

    def create(self, body: dict) -> dict:
        with self.errors():
            return self.api.create_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, body, _request_timeout=self.timeout
            )

    def patch(self, body: dict) -> dict:
        """A JSON merge patch (RFC 7386): null removes a field."""
        with self.errors():
            return self.api.patch_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, self.name, body,
                _request_timeout=self.timeout,
            )  # fmt: skip

    def delete(self) -> None:
        with self.errors(missing_ok=True):
            self.api.delete_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, self.name, _request_timeout=self.timeout
            )

    def watch(self, seconds: float):
        """(event type, object) of this service for about `seconds`, starting with its
        current state."""
        seconds = max(1, math.ceil(seconds))
        watcher = kube_watch.Watch()
        with self.errors():
            for event in watcher.stream(
                self.api.list_namespaced_custom_object, GROUP, VERSION, self.namespace, PLURAL,
                field_selector=f"metadata.name={self.name}", timeout_seconds=seconds,
                _request_timeout=(self.timeout[0], seconds + 5),
            ):  # fmt: skip
                yield event["type"], event["object"]

    @contextmanager
    def errors(self, missing_ok=False):
        try:
            yield
        except kube.ApiException as exc:
            if missing_ok and exc.status == 404:
                return
            raise DeployError(f"The Kubernetes API refused: {api_error(exc)}") from exc
        except urllib3.exceptions.HTTPError as exc:
            raise DeployError(f"Could not reach the Kubernetes API: {exc}") from exc


# --- helpers ---------------------------------------------------------------------------


def credential_errors(cleaned: dict) -> list[str]:
    if cleaned.get("in_cluster"):
        return (
            ["Give either kubeconfig or in_cluster, not both."] if "kubeconfig" in cleaned else []
        )
    if "kubeconfig" not in cleaned:
        return ["kubeconfig is required (or set in_cluster to true inside the cluster)."]
    try:
        load_kubeconfig(cleaned["kubeconfig"], kube.Configuration())
    except (ConfigException, DeployError) as exc:
        return [f"kubeconfig is not usable: {exc}"]
    return []


def load_kubeconfig(text: str, configuration) -> None:
    try:
        parsed = yaml.safe_load(text or "")
    except yaml.YAMLError:
        raise DeployError("it is not YAML.") from None
    if not isinstance(parsed, dict):
        raise DeployError("it is not a kubeconfig (a YAML mapping).")
    kube_config.load_kube_config_from_dict(
        parsed, client_configuration=configuration, persist_config=False
    )


def api_error(exc) -> str:
    """The Status message of a Kubernetes API error (never its headers)."""
    try:
        message = yaml.safe_load(exc.body or "")["message"]
    except (TypeError, KeyError, yaml.YAMLError):
        message = (exc.body or "")[:300]
    return f"HTTP {exc.status} {exc.reason}: {message}"


def manifest(cluster, owner_id, spec: dict) -> dict:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "InferenceService",
        "metadata": {
            "name": cluster.name,
            "namespace": cluster.namespace,
            "labels": {"app.kubernetes.io/managed-by": "mlops-portal"},
            "annotations": {OWNER_ANNOTATION: str(owner_id)},
        },
        "spec": spec,
    }


def spec_patch(current: dict, owner_id, spec: dict) -> dict:
    """The merge patch that makes `current`'s spec `spec` and names its owner."""
    return {
        "metadata": {
            "annotations": {OWNER_ANNOTATION: None if owner_id is None else str(owner_id)}
        },
        "spec": merge_diff(current.get("spec", {}), spec),
    }


def merge_diff(old: dict, new: dict) -> dict:
    """A JSON merge patch turning `old` into `new`: removed keys are set to null."""
    patch = {key: None for key in old if key not in new}
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(old.get(key), dict):
            patch[key] = merge_diff(old[key], value)
        else:
            patch[key] = value
    return patch


def restore(cluster, replaced: dict | None) -> str:
    """Put back the spec (and owner) a deployment replaced, or delete the service when it
    created it; say which, for the timeline. During a canary the restored spec keeps
    canaryTrafficPercent at 0, so the stable revision keeps all the traffic (see
    `abort_canary`); the next deploy removes the field."""
    if not replaced:
        cluster.delete()
        return f"InferenceService {cluster} deleted."
    current = cluster.get()
    if current is None:
        return f"InferenceService {cluster} was already gone."
    spec = replaced["spec"]
    during_canary = "canaryTrafficPercent" in current.get("spec", {}).get("predictor", {})
    if during_canary:
        spec = with_canary(spec, 0)
    cluster.patch(spec_patch(current, replaced.get("owner"), spec))
    held = f"#{replaced['owner']}" if replaced.get("owner") else "the previous"
    note = " (canaryTrafficPercent 0: its revision keeps all the traffic)" if during_canary else ""
    return f"InferenceService {cluster} restored to {held}'s spec{note}."


def with_canary(spec: dict, weight: int) -> dict:
    return {**spec, "predictor": {**spec["predictor"], "canaryTrafficPercent": weight}}


def check_weight(weight) -> None:
    if isinstance(weight, bool) or not isinstance(weight, int) or not 0 <= weight <= 100:
        raise DeployError(f"A canary weight is a whole percentage from 0 to 100, not {weight!r}.")


def owner(obj: dict) -> str | None:
    return ((obj.get("metadata") or {}).get("annotations") or {}).get(OWNER_ANNOTATION)


def being_deleted(obj: dict) -> bool:
    return bool(obj.get("metadata", {}).get("deletionTimestamp"))


def condition(obj: dict | None, kind: str) -> dict:
    for item in ((obj or {}).get("status") or {}).get("conditions") or []:
        if item.get("type") == kind:
            return item
    return {}


def latest_traffic(obj: dict) -> int | None:
    """The percentage of the predictor's traffic on its latest revision, if reported."""
    predictor = (obj.get("status", {}).get("components") or {}).get("predictor") or {}
    for entry in predictor.get("traffic") or []:
        if entry.get("latestRevision"):
            return entry.get("percent")
    return None


def is_ready(obj: dict, generation: int, latest_percent: int | None) -> bool:
    status = obj.get("status") or {}
    return (
        status.get("observedGeneration", 0) >= generation
        and condition(obj, "Ready").get("status") == "True"
        and bool(status.get("url"))
        and (latest_percent is None or latest_traffic(obj) == latest_percent)
    )


def describe(obj: dict | None, generation: int) -> str:
    """What the service last reported, for the log and the failure reason."""
    if obj is None:
        return "the service was not seen."
    observed = (obj.get("status") or {}).get("observedGeneration", 0)
    if observed < generation:
        return f"KServe has not reconciled generation {generation} yet (it saw {observed})."
    ready = condition(obj, "Ready")
    if not ready:
        return "no Ready condition yet."
    detail = ": ".join(filter(None, (ready.get("reason"), ready.get("message"))))
    return f"Ready={ready.get('status')}" + (f" ({detail})." if detail else ".")


def record_state(deployment, state: dict, running_only: bool = False) -> bool:
    """Save `state` as the deployment's backend_state at once (the reconciler and `stop`
    read it); with `running_only`, only while it runs. False when nothing was saved."""
    from deployments.choices import DeploymentState
    from deployments.models import Deployment

    deployment.backend_state = state
    rows = Deployment.objects.filter(pk=deployment.pk)
    if running_only:
        rows = rows.filter(state=DeploymentState.RUNNING)
    return bool(rows.update(backend_state=state))


def last_served_with(deployment):
    """The latest deployment of the same version on the same target that was live with a
    recorded spec, or None."""
    from deployments.choices import WAS_LIVE_STATES
    from deployments.models import Deployment

    return (
        Deployment.objects.filter(
            target_id=deployment.target_id,
            version_id=deployment.version_id,
            state__in=WAS_LIVE_STATES,
            backend_state__has_key="applied_spec",
        )
        .exclude(pk=deployment.pk)
        .order_by("-finished_at")
        .first()
    )
