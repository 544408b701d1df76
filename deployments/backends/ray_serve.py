"""The `ray` backend: serves a version on a Ray cluster as a Ray Serve application.

One Serve application per target (`mlops-target-<id>`, at the target's route prefix), built
by `deployments.serving.ray_app` from `args` naming the version and its signed artifact URL.
A deploy submits the cluster's whole Serve config through its REST API (`PUT
/api/serve/applications/`, what `serve deploy` does; the other applications are sent back
as they are), waits until the application is RUNNING with the new args, and probes
`/v2/health/ready` and `/health` until the new version answers. The portal imports no Ray.

A new version changes the application's `args`, so Serve replaces its replicas; with
`max_surge_percent: 100` it starts the new ones before stopping the old, so the endpoint
(which stays the same) keeps answering during the switch, and if the new replicas cannot
start the old ones keep serving. The config the application had before is recorded in
`Deployment.backend_state["previous_config"]` (without its signed URL): `stop` of a failed
deployment puts it back (re-signed), or deletes the application when there was none.
`stop` of a replaced deployment does nothing: the application serves its successor.

A canary (`start_canary` …) re-submits the application with both versions behind a router
deployment (ray_app.CanaryRouter) whose `user_config` holds the canary's weight: a step
changes that alone, which Serve applies in place. The router counts each side, and the
step analysis reads it at `<endpoint>/-/metrics/stable|canary`. Promotion and abort
submit one version's config again (docs/architecture.md, "Canary releases", says why a
router and not Serve's model multiplexing)."""

import copy
import time
from urllib.parse import urlsplit

import httpx

from deployments import steps, storage
from deployments.backends import DeployBackend, DeployError, Outcome, SettingSpec
from deployments.serving import canary_split

IMPORT_PATH = "deployments.serving.ray_app:build"
DEPLOYMENT_NAME = "ModelServer"  # the @serve.deployment name in ray_app
APPLICATIONS = "/api/serve/applications/"
# Replicas restarted after a crash fetch the artifact again: the URL must outlive the
# deployment's start (the app also keeps the artifact on each node, by SHA-256).
ARTIFACT_URL_SECONDS = 7 * 24 * 3600
REDACTED = "(signed URL, not stored)"
ROUTER_CPUS = 0.1  # it forwards requests through handles: no model, little CPU


class RayServeBackend(DeployBackend):
    supports_canary = True
    settings_spec = (
        SettingSpec(
            "dashboard_url", str, required=True,
            help="The Ray dashboard's address, whose Serve REST API takes the deploy "
            "(http://head:8265).",
        ),
        SettingSpec("route_prefix", str, help="Where the model answers; default /<target name>."),
        SettingSpec(
            "num_replicas", int, default=1, minimum=1, maximum=64,
            help="Replicas serving the model (1-64).",
        ),
        SettingSpec(
            "num_cpus", float, default=1, minimum=0, above_minimum=True, maximum=64,
            help="CPUs per replica (fractions allowed).",
        ),
        SettingSpec("num_gpus", float, minimum=0, maximum=16, help="GPUs per replica."),
        SettingSpec(
            "memory_mb", int, minimum=1, maximum=1024 * 1024,
            help="Memory reserved per replica, in MiB.",
        ),
        SettingSpec(
            "http_port", int, default=8000, minimum=1, maximum=65535,
            help="Serve's HTTP port, used when Serve is not running on the cluster yet.",
        ),
        SettingSpec(
            "http_host", str, default="0.0.0.0",
            help="Where Serve's HTTP proxy listens, used when Serve is not running yet.",
        ),
        SettingSpec(
            "serve_url", str,
            help="The base URL clients reach Serve's HTTP proxy at; default: the dashboard's "
            "host with Serve's port.",
        ),
        SettingSpec(
            "working_dir", str,
            help="runtime_env working_dir: a URL of a zip of this repository, for a cluster "
            "whose Python cannot import deployments.serving.",
        ),
        SettingSpec(
            "timeout_seconds", int, default=300, minimum=1, maximum=3600,
            help="How long to wait for RUNNING.",
        ),
    )  # fmt: skip

    @classmethod
    def check_values(cls, cleaned):
        errors = []
        for name in ("dashboard_url", "serve_url"):
            parsed = urlsplit(cleaned.get(name, ""))
            if cleaned.get(name) and (
                parsed.scheme not in ("http", "https") or not host_of(parsed)
            ):
                errors.append(f"{name} must be an http:// or https:// URL.")
        prefix = cleaned.get("route_prefix")
        if prefix is not None and (not prefix.startswith("/") or " " in prefix):
            errors.append("route_prefix must start with / and contain no spaces.")
        return errors

    # --- names and configs ----------------------------------------------------------------

    @property
    def app_name(self) -> str:
        return f"mlops-target-{self.target.pk}"

    @property
    def route_prefix(self) -> str:
        return self.settings.get("route_prefix") or f"/{self.target.name}"

    def app_config(self, deployment, artifact: storage.SignedArtifact) -> dict:
        """The Serve application config that serves `deployment`'s version."""
        config = {
            "name": self.app_name,
            "route_prefix": self.route_prefix,
            "import_path": IMPORT_PATH,
            "args": self.model_args(deployment, artifact),
            "deployments": [self.model_options(DEPLOYMENT_NAME)],
        }
        if self.settings.get("working_dir"):
            config["runtime_env"] = {"working_dir": self.settings["working_dir"]}
        return config

    def canary_config(self, deployment, stable, weight: int) -> dict:
        """The config serving `stable` and `deployment` behind the weighted router: the
        candidate's args under `args["canary"]`, the router's weight in its user_config."""
        config = self.app_config(stable, signed(stable))
        config["args"]["canary"] = self.model_args(deployment, signed(deployment))
        config["deployments"] += [
            self.model_options(canary_split.CANARY_DEPLOYMENT),
            {
                "name": canary_split.ROUTER_DEPLOYMENT,
                "num_replicas": 1,  # its counters are the analysis' figures: one set
                "user_config": {"weight": weight},
                "ray_actor_options": {"num_cpus": ROUTER_CPUS},
            },
        ]
        return config

    def model_args(self, deployment, artifact: storage.SignedArtifact) -> dict:
        """One version's part of the application's `args` (ray_app.model_server_args)."""
        version = deployment.version
        return {
            "artifact_url": artifact.url,
            # Of the served file (the pickle, or the portal's bundle of an MLflow model),
            # which the replica checks before loading it.
            "sha256": artifact.sha256,
            "flavor": version.flavor,
            "model": version.model.name,
            "version": version.number,
            "deployment": deployment.pk,
        }

    def model_options(self, name: str) -> dict:
        """The config of one model version's Serve deployment, from the target's settings."""
        actor_options = {"num_cpus": self.settings["num_cpus"]}
        if self.settings.get("num_gpus"):
            actor_options["num_gpus"] = self.settings["num_gpus"]
        if self.settings.get("memory_mb"):
            actor_options["memory"] = self.settings["memory_mb"] * 1024 * 1024
        return {
            "name": name,
            "num_replicas": self.settings["num_replicas"],
            # New replicas start before old ones stop: no gap in serving.
            "max_surge_percent": 100,
            "ray_actor_options": actor_options,
        }

    # --- the cluster's Serve REST API ---------------------------------------------------

    def read_cluster(self, timeout: float = 10.0) -> dict:
        """GET the cluster's Serve details (applications, http_options); DeployError when
        the dashboard cannot be reached or answers something else."""
        url = self.settings["dashboard_url"].rstrip("/") + APPLICATIONS
        try:
            response = httpx.get(url, timeout=timeout, trust_env=False)
        except httpx.HTTPError as exc:
            raise DeployError(f"Could not reach the Ray dashboard at {url}: {exc}") from exc
        if response.status_code != 200:
            raise DeployError(f"The Ray dashboard answered HTTP {response.status_code}: "
                              f"{response.text[:300]}")  # fmt: skip
        try:
            return response.json()
        except ValueError:
            raise DeployError("The Ray dashboard's answer is not JSON.") from None

    def submit(self, cluster: dict, ours: dict | None) -> None:
        """PUT the whole Serve config: every other application as the cluster runs it, and
        ours (`None`: without ours, which deletes it)."""
        applications = [
            app["deployed_app_config"]
            for name, app in (cluster.get("applications") or {}).items()
            if name != self.app_name and app.get("deployed_app_config")
        ]
        if ours is not None:
            applications.append(ours)
        body = {"http_options": self.http_options(cluster), "applications": applications}
        url = self.settings["dashboard_url"].rstrip("/") + APPLICATIONS
        try:
            response = httpx.put(url, json=body, timeout=60.0, trust_env=False)
        except httpx.HTTPError as exc:
            raise DeployError(f"Could not submit the Serve config to {url}: {exc}") from exc
        if response.status_code != 200:
            raise DeployError(f"The Ray dashboard refused the Serve config (HTTP "
                              f"{response.status_code}): {response.text[:500]}")  # fmt: skip

    def http_options(self, cluster: dict) -> dict:
        """Serve's HTTP options: the running ones (Serve cannot change them live), else
        the target's host and port."""
        running = cluster.get("http_options") if cluster.get("proxies") else None
        if running and running.get("port"):
            return {"host": running.get("host") or "0.0.0.0", "port": running["port"]}
        return {"host": self.settings["http_host"], "port": self.settings["http_port"]}

    def endpoint(self, cluster: dict) -> str:
        base = self.settings.get("serve_url")
        if not base:
            dashboard = urlsplit(self.settings["dashboard_url"])
            port = self.http_options(cluster)["port"]
            base = f"{dashboard.scheme}://{dashboard.hostname}:{port}"
        return base.rstrip("/") + ("" if self.route_prefix == "/" else self.route_prefix)

    # --- deploy, stop, status --------------------------------------------------------------

    def deploy(self, deployment, log) -> Outcome:
        version = deployment.version
        config = self.app_config(deployment, signed(deployment))
        cluster = self.read_cluster()
        self.check_route_prefix_is_free(cluster)
        current = (cluster.get("applications") or {}).get(self.app_name) or {}
        previous = current.get("deployed_app_config")
        replicas = self.settings["num_replicas"]
        endpoint = self.submit_and_wait(
            deployment, cluster, config, previous, log,
            f"Submitting Serve application {self.app_name} ({version}, {replicas} replica(s)) "
            f"at {self.route_prefix} to {self.settings['dashboard_url']}.",
        )  # fmt: skip
        self.wait_until_serving(deployment, endpoint, log)
        log(f"Serve application {self.app_name} answers /v2/health/ready at {endpoint}.")
        return Outcome(endpoint=endpoint)

    def submit_and_wait(self, deployment, cluster, config, previous, log, announce) -> str:
        """Record `config` (and the `previous` one, for a rollback) on the deployment, submit
        it, wait until the application is RUNNING; its endpoint."""
        if not record_state(
            deployment, app=self.app_name, config=redacted(config),
            previous_config=redacted(previous) if previous else None,
        ):  # fmt: skip
            raise DeployError("The deployment ended before its Serve config was submitted.")
        log(announce)
        self.submit(cluster, config)
        steps.reached("server_started")
        self.wait_until_running(deployment, log)
        return self.endpoint(cluster)

    def check_route_prefix_is_free(self, cluster: dict) -> None:
        for name, app in (cluster.get("applications") or {}).items():
            if name != self.app_name and app.get("route_prefix") == self.route_prefix:
                raise DeployError(
                    f"The cluster's application {name!r} already serves {self.route_prefix}; "
                    "give this target another route_prefix."
                )

    def wait_until_running(self, deployment, log) -> None:
        """Until the cluster runs our config RUNNING; DeployError on DEPLOY_FAILED or at
        the timeout (the previous replicas are still serving then)."""
        deadline = time.monotonic() + self.settings["timeout_seconds"]
        next_note = time.monotonic() + 2
        status = "not submitted"
        while time.monotonic() < deadline:
            try:
                app = self.our_app(self.read_cluster())
            except DeployError as exc:  # a dashboard restart: keep waiting until the deadline
                app, status = None, str(exc)
            if app and serves(app, deployment):
                status = app.get("status", "")
                if status == "RUNNING":
                    log(f"Serve reports {self.app_name} RUNNING.")
                    return
                if status == "DEPLOY_FAILED":
                    raise DeployError(f"Serve could not deploy {self.app_name}: "
                                      f"{failure_message(app)}")  # fmt: skip
            if time.monotonic() >= next_note:
                log(f"Waiting for Serve: {self.app_name} is {status}…")  # renews the lease
                next_note = time.monotonic() + 2
            time.sleep(0.5)
        seconds = self.settings["timeout_seconds"]
        raise DeployError(
            f"Serve did not run {self.app_name} within {seconds} s (last status: {status})."
        )

    def wait_until_serving(self, deployment, endpoint, log, timeout: float = 60) -> None:
        """Until `/v2/health/ready` answers and `/health` names this deployment (the old
        replicas drain for a moment after RUNNING)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if serving_deployment(endpoint) == deployment.pk:
                return
            time.sleep(0.2)
        raise DeployError(f"{endpoint} did not answer /v2/health/ready for this deployment "
                          f"within {timeout:.0f} s.")  # fmt: skip

    def our_app(self, cluster: dict) -> dict | None:
        return (cluster.get("applications") or {}).get(self.app_name)

    def stop(self, deployment) -> str | None:
        """Undo a deployment that did not go live: put the config back that the
        application had before it (or delete the application). A deployment that was
        replaced has nothing to stop: the application already serves its successor."""
        state = deployment.backend_state or {}
        if not state.get("app"):
            return None
        try:
            cluster = self.read_cluster()
            app = self.our_app(cluster)
            if not app or not serves(app, deployment):
                return None
            previous = state.get("previous_config")
            if previous:
                self.submit(cluster, resigned(previous))
                return (f"Serve application {self.app_name} put back to deployment "
                        f"#{previous['args']['deployment']}'s config.")  # fmt: skip
            self.submit(cluster, None)
            return f"Serve application {self.app_name} deleted."
        except DeployError:
            return None  # the flag stays; the reconciler tries again

    def status(self, deployment) -> str:
        try:
            cluster = self.read_cluster(timeout=3.0)
        except DeployError:
            return "unhealthy"
        app = self.our_app(cluster)
        if not app or not serves(app, deployment):
            return "stopped"
        if app.get("status") == "RUNNING" and serving_deployment(deployment.endpoint):
            return "serving"
        return "unhealthy"

    # --- canary: a router deployment in front of both versions ---------------------------

    def start_canary(self, deployment, stable, weight: int, log) -> Outcome:
        """Rebuild the application with `stable`'s and `deployment`'s model deployments
        behind the router, at `weight` %; the endpoint stays the application's."""
        cluster = self.read_cluster()
        current = self.our_app(cluster)
        if not current or not serves(current, stable) or canary_of(current):
            raise DeployError(f"Serve application {self.app_name} does not serve #{stable.pk} "
                              "alone; deploy all at once.")  # fmt: skip
        config = self.canary_config(deployment, stable, weight)
        endpoint = self.submit_and_wait(
            deployment, cluster, config, current["deployed_app_config"], log,
            f"Submitting {self.app_name} with a canary router: {weight} % to "
            f"{deployment.version}, the rest to #{stable.pk} ({stable.version}).",
        )  # fmt: skip
        self.wait_for_weight(deployment, endpoint, weight)
        log(f"Canary router of {self.app_name} at {endpoint}: {weight} % to #{deployment.pk}.")
        return Outcome(endpoint=endpoint)

    def set_canary_weight(self, deployment, stable, weight: int, log) -> None:
        """Re-submit the running config with the router's new weight only: Serve
        reconfigures the router in place (same args, so no replica restarts)."""
        cluster = self.read_cluster()
        app = self.our_app(cluster)
        if not app or canary_of(app) != deployment.pk:
            raise DeployError(f"Serve application {self.app_name} no longer runs this canary.")
        config = with_weight(app["deployed_app_config"], weight)
        record_state(deployment, config=redacted(config))
        self.submit(cluster, config)
        self.wait_for_weight(deployment, self.endpoint(cluster), weight)
        log(f"Canary router: {weight} % of the requests go to #{deployment.pk}.")

    def promote_canary(self, deployment, stable, log) -> Outcome:
        """All requests to the candidate, then the application becomes the candidate's
        alone (the router and the stable version's replicas go, as in a plain deploy)."""
        self.set_canary_weight(deployment, stable, 100, log)
        return self.serve_alone(deployment, log)

    def abort_canary(self, deployment, stable, log) -> None:
        """No request to the candidate any more, then the application becomes `stable`'s
        alone again (the config it had before the canary, re-signed)."""
        try:
            self.set_canary_weight(deployment, stable, 0, log)
        except DeployError as exc:  # putting the stable config back still frees the traffic
            log(f"Could not set the canary's weight to 0: {exc}")
        self.serve_alone(stable, log)

    def serve_alone(self, deployment, log) -> Outcome:
        """Submit the config serving `deployment` only; wait until it answers."""
        config = self.app_config(deployment, signed(deployment))
        # A promoted canary's state names its config from now on (a no-op for the stable
        # one of an abort, which is not running).
        record_state(deployment, config=redacted(config))
        log(f"Submitting {self.app_name} serving #{deployment.pk} ({deployment.version}) alone.")
        self.submit(self.read_cluster(), config)
        self.wait_until_running(deployment, log)
        endpoint = self.endpoint(self.read_cluster())
        self.wait_until_serving(deployment, endpoint, log)
        self.wait_until_router_gone(endpoint)
        return Outcome(endpoint=endpoint)

    def canary_metrics_urls(self, deployment, stable) -> tuple[str, str] | None:
        """The router's counters of each side (one router replica: the whole traffic)."""
        endpoint = deployment.endpoint or stable.endpoint
        if not endpoint:
            return None
        return tuple(f"{endpoint}{canary_split.METRICS_PATH}{side}" for side in canary_split.SIDES)

    def wait_until_router_gone(self, endpoint: str, timeout=60.0) -> None:
        """Until Serve's proxy sends the route to the model deployment, not the router."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if router_status(endpoint) is None:
                return
            time.sleep(0.2)
        raise DeployError(f"The canary router still answers at {endpoint} after {timeout:.0f} s.")

    def wait_for_weight(self, deployment, endpoint: str, weight: int, timeout=30.0) -> None:
        """Until the router of `deployment`'s canary says it applies `weight`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            seen = router_status(endpoint) or {}
            if seen.get("weight") == weight and seen.get("deployments", {}).get("canary") == (
                deployment.pk
            ):
                return
            time.sleep(0.2)
        raise DeployError(f"The canary router at {endpoint} did not take {weight} % within "
                          f"{timeout:.0f} s.")  # fmt: skip


def host_of(parsed) -> str | None:
    try:
        return parsed.hostname
    except ValueError:  # a malformed port or bracketed host
        return None


def serves(app: dict, deployment) -> bool:
    """Whether the application's submitted config serves `deployment` (alone, or as a
    canary's stable or candidate version)."""
    args = (app.get("deployed_app_config") or {}).get("args") or {}
    return deployment.pk in (args.get("deployment"), canary_of(app))


def canary_of(app: dict) -> int | None:
    """The deployment id of the canary the application runs, if it runs one."""
    args = (app.get("deployed_app_config") or {}).get("args") or {}
    return (args.get("canary") or {}).get("deployment")


def with_weight(config: dict, weight: int) -> dict:
    """A copy of a canary config with the router's weight set to `weight`."""
    changed = copy.deepcopy(config)
    for options in changed.get("deployments") or []:
        if options.get("name") == canary_split.ROUTER_DEPLOYMENT:
            options["user_config"] = {"weight": weight}
            return changed
    raise DeployError("The application's config has no canary router.")


def failure_message(app: dict) -> str:
    """Why Serve failed: for each deployment, the last line of the replica's traceback
    (the exception and its message), then where to read the rest."""
    reasons = []
    for name, details in (app.get("deployments") or {}).items():
        lines = [line.strip() for line in (details.get("message") or "").splitlines()]
        lines = [line for line in lines if line]
        if lines:
            reasons.append(f"{name}: {lines[-1]}")
    reasons = reasons or [(app.get("message") or "no message").strip().splitlines()[0]]
    detail = " | ".join(reasons)[:1500]
    return f"{detail} (the whole traceback is in the Ray dashboard's Serve page)"


def serving_deployment(endpoint: str) -> int | None:
    """The deployment id the endpoint's replicas answer /health with, once
    /v2/health/ready answers; None when it does not answer."""
    try:
        with httpx.Client(timeout=2.0, trust_env=False) as client:
            if client.get(f"{endpoint}/v2/health/ready").status_code != 200:
                return None
            return client.get(f"{endpoint}/health").json()["deployment"]
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        return None


def router_status(endpoint: str) -> dict | None:
    """What the canary router at `endpoint` says (canary_split.Router.own_answer); None
    when no router answers there (the model server answers 404 to its path)."""
    try:
        response = httpx.get(f"{endpoint}{canary_split.STATUS_PATH}", timeout=2.0, trust_env=False)
        seen = response.json() if response.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        return None
    return seen if isinstance(seen, dict) else None


def redacted(config: dict) -> dict:
    """`config` without its signed URLs, which grant access to the artifacts."""
    kept = copy.deepcopy(config)
    for part in version_parts(kept.setdefault("args", {})):
        part["artifact_url"] = REDACTED
    return kept


def resigned(config: dict) -> dict:
    """A recorded config with fresh signed URLs of its deployments' versions."""
    from deployments.models import Deployment

    restored = copy.deepcopy(config)
    for part in version_parts(restored["args"]):
        owner = Deployment.objects.select_related("version").get(pk=part["deployment"])
        part["artifact_url"] = storage.signed_artifact_url(
            owner.version, expires_in=ARTIFACT_URL_SECONDS
        )
    return restored


def version_parts(args: dict) -> list[dict]:
    """The parts of an application's args that each name one version: the args
    themselves, and the canary's during a canary."""
    return [args] + ([args["canary"]] if args.get("canary") else [])


def signed(deployment) -> storage.SignedArtifact:
    """`deployment`'s served file behind a URL that outlives replica restarts."""
    return storage.signed_artifact(deployment.version, expires_in=ARTIFACT_URL_SECONDS)


def record_state(deployment, **state) -> bool:
    """Save the backend state before submitting, so a reconciler can undo the submit if the
    job dies; False when the deployment is no longer running."""
    from deployments.backends.local import record_process

    return record_process(deployment, **state)
