"""The `local` backend: runs the model server (deployments/serving/server.py) as its own
process on a free port of this host, blue/green: the new process must answer /health
before the target switches to it, and the previous one is stopped afterwards.

The process is started in its own session, so it keeps serving when the worker or the
portal restarts; its pid and port live in `Deployment.backend_state`.

Canary (`start_canary` …): the candidate's model server starts as for a deploy, and a
weighted reverse proxy (deployments/serving/canary_proxy.py) in front of the stable server
and the candidate's sends it the canary's share; the proxy's URL is the canary's endpoint
while it runs. The share is a file the proxy re-reads. Promoted, the candidate's own server
is the endpoint and the proxy stops; aborted, the proxy sends everything to the stable
server until the failed deployment is stopped (proxy and candidate server with it)."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from django.conf import settings

from deployments import artifacts, sources, steps, storage
from deployments.backends import DeployBackend, DeployError, Outcome, SettingSpec
from deployments.serving.loading import file_digest
from mlops_portal.core import logs

SERVER_MODULE = "deployments.serving.server"
PROXY_MODULE = "deployments.serving.canary_proxy"
WEIGHT_APPLY_SECONDS = 5.0
MAX_WORKERS = 16


class LocalBackend(DeployBackend):
    supports_canary = True
    settings_spec = (
        SettingSpec("host", str, default="127.0.0.1", help="Interface the model server binds."),
        SettingSpec(
            "startup_timeout_seconds",
            int,
            default=60,
            minimum=1,
            maximum=600,
            help="How long to wait for /health.",
        ),
        SettingSpec(
            "prediction_sample_rate",
            float,
            minimum=0,
            maximum=1,
            help="Share of requests logged for drift and live quality, 0 to 1 "
            "(default: the portal's PREDICTION_SAMPLE_RATE).",
        ),
        SettingSpec(
            "workers",
            int,
            default=1,
            minimum=1,
            maximum=MAX_WORKERS,
            help="Processes of each model server, sharing its port (1-16); /metrics counts "
            "the requests of all of them.",
        ),
    )

    @classmethod
    def check_values(cls, cleaned):
        errors = []
        if cleaned.get("host", "127.0.0.1") not in ("127.0.0.1", "0.0.0.0", "localhost"):
            errors.append("host must be 127.0.0.1, localhost or 0.0.0.0.")
        return errors

    def deploy(self, deployment, log) -> Outcome:
        version = deployment.version
        artifact, flavor = self.artifact_path(deployment, log)
        port = free_port()
        log_file = serving_dir() / f"deployment-{deployment.pk}.log"
        log(f"Starting the model server for {version} on port {port}.")
        process = self.start_process(deployment, artifact, port, log_file, flavor)
        if not record_process(deployment, pid=process.pid, port=port, log_file=str(log_file)):
            terminate(process.pid)
            raise DeployError("The deployment ended while its model server started.")
        steps.reached("server_started")
        endpoint = f"http://127.0.0.1:{port}"
        self.wait_until_healthy(process, endpoint, log_file, log)
        log(f"Model server pid {process.pid} answers /health at {endpoint}.")
        return Outcome(endpoint=endpoint)

    def artifact_path(self, deployment, log) -> tuple[str, str]:
        """The path the model server loads and its flavor. A joblib pickle is used where it
        lies (or downloaded once per version); an MLflow model is laid out afresh in the
        deployment's own folder, checked against the SHA-256 measured on validation."""
        version = deployment.version
        over_http = version.artifact_uri.startswith(("http://", "https://"))
        if version.flavor != "mlflow" and (version.artifact or over_http):
            return self.joblib_path(version, log), version.flavor
        return self.model_folder(deployment, log)

    def model_folder(self, deployment, log) -> tuple[str, str]:
        version = deployment.version
        folder = deployment_folder(deployment)
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        log(f"Laying out {version.artifact_location} in {folder}.")
        try:
            local = sources.local_copy(version, folder)
        except (sources.SourceError, artifacts.Refused, httpx.HTTPError) as exc:
            raise DeployError(f"Could not fetch {version.artifact_location}: {exc}") from exc
        if version.artifact_sha256 and local.sha256 != version.artifact_sha256:
            raise DeployError(f"The artifact's SHA-256 changed since validation ({local.sha256}).")
        return str(local.path), local.flavor

    def joblib_path(self, version, log) -> str:
        """A pickle in the local artifact folder is used where it lies; one in remote
        storage or at a URL is downloaded once per version into SERVING_DIR."""
        if version.artifact and (path := storage.stored_path(version.artifact.name)):
            log(f"Using the uploaded artifact {version.artifact.name}.")
            return str(path)
        cached = serving_dir() / "artifacts" / f"version-{version.pk}.artifact"
        if not cached.exists():
            if version.artifact:
                log(f"Downloading {version.artifact.name} from the artifact storage.")
                copy_from_storage(version.artifact.name, cached)
            else:
                log(f"Downloading {version.artifact_uri}.")
                download_to(version.artifact_uri, cached)
        digest, _ = file_digest(cached)
        if version.artifact_sha256 and digest != version.artifact_sha256:
            cached.unlink()
            raise DeployError(f"The artifact's SHA-256 changed since validation ({digest}).")
        return str(cached)

    def start_process(self, deployment, artifact, port, log_file, flavor) -> subprocess.Popen:
        version = deployment.version
        command = [
            sys.executable, "-m", SERVER_MODULE,
            "--artifact", artifact, "--flavor", flavor,
            "--model", version.model.name, "--version", str(version.number),
            "--host", self.settings["host"], "--port", str(port),
            "--deployment-id", str(deployment.pk), "--version-id", str(version.pk),
            "--workers", str(self.settings["workers"]),
        ]  # fmt: skip
        with open(log_file, "ab") as output:
            return subprocess.Popen(
                command,
                cwd=settings.BASE_DIR,
                stdout=output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                # Its log lines carry the id of the request that asked for the deployment.
                env={
                    **os.environ,
                    logs.REQUEST_ID_ENV: logs.current_request_id() or "",
                    **prediction_log_environment(self.sample_rate()),
                },
                start_new_session=True,  # survives the worker; stopped only by `stop`
            )

    def sample_rate(self) -> float:
        """The share of requests this target's model servers log."""
        rate = self.settings.get("prediction_sample_rate")
        return settings.PREDICTION_SAMPLE_RATE if rate is None else float(rate)

    def wait_until_healthy(self, process, endpoint, log_file, log) -> None:
        deadline = time.monotonic() + self.settings["startup_timeout_seconds"]
        next_note = time.monotonic() + 2
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise DeployError(
                    f"The model server exited with status {process.returncode}: {tail(log_file)}"
                )
            if health_ok(endpoint):
                return
            if time.monotonic() >= next_note:
                log("Waiting for the model server's /health…")  # also renews the job's lease
                next_note = time.monotonic() + 2
            time.sleep(0.1)
        terminate(process.pid)
        raise DeployError(
            f"The model server did not answer /health within "
            f"{self.settings['startup_timeout_seconds']} s."
        )

    def stop(self, deployment) -> str | None:
        state = deployment.backend_state or {}
        stopped = stop_proxy(state)
        pid = state.get("pid")
        if pid and is_model_server(pid):
            terminate(pid)
            shutil.rmtree(deployment_folder(deployment), ignore_errors=True)
            stopped.append(f"Model server stopped (pid {pid}).")
        return " ".join(stopped) or None

    def status(self, deployment) -> str:
        state = deployment.backend_state or {}
        if state.get("proxy_pid") and is_proxy(state["proxy_pid"]):
            return "serving" if health_ok(deployment.endpoint) else "unhealthy"
        if not state.get("pid") or not is_model_server(state["pid"]):
            return "stopped"
        endpoint = state.get("server_endpoint") or deployment.endpoint
        return "serving" if health_ok(endpoint) else "unhealthy"

    # --- canary: a weighted reverse proxy in front of the two servers ---------------------

    def start_canary(self, deployment, stable, weight: int, log) -> Outcome:
        """Start `deployment`'s model server, then the proxy sending it `weight` % of the
        requests and `stable`'s server the rest; the proxy's URL is the outcome."""
        if not stable.endpoint:
            raise DeployError(f"#{stable.pk} has no endpoint to split traffic with.")
        server = self.deploy(deployment, log).endpoint
        weight_file = serving_dir() / f"deployment-{deployment.pk}.weight"
        write_weight(weight_file, weight)
        port = free_port()
        log_file = serving_dir() / f"deployment-{deployment.pk}-proxy.log"
        command = [
            sys.executable, "-m", PROXY_MODULE, "--stable", stable.endpoint,
            "--canary", server, "--weight-file", str(weight_file),
            "--host", self.settings["host"], "--port", str(port),
        ]  # fmt: skip
        with open(log_file, "ab") as output:
            process = subprocess.Popen(
                command, cwd=settings.BASE_DIR, stdout=output, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        proxy = f"http://127.0.0.1:{port}"
        recorded = record_process(
            deployment, proxy_pid=process.pid, proxy_port=port, server_endpoint=server,
            weight_file=str(weight_file),
        )  # fmt: skip
        if not recorded:
            terminate(process.pid, module=PROXY_MODULE)
            raise DeployError("The deployment ended while its canary proxy started.")
        self.wait_for_weight(proxy, weight, process)
        log(f"Canary proxy pid {process.pid} at {proxy}: {weight} % to {server}, the rest "
            f"to #{stable.pk} at {stable.endpoint}.")  # fmt: skip
        return Outcome(endpoint=proxy)

    def set_canary_weight(self, deployment, stable, weight: int, log) -> None:
        state = deployment.backend_state or {}
        write_weight(Path(state["weight_file"]), weight)
        self.wait_for_weight(f"http://127.0.0.1:{state['proxy_port']}", weight)
        log(f"Canary proxy: {weight} % of the requests go to #{deployment.pk}.")

    def promote_canary(self, deployment, stable, log) -> Outcome:
        """All requests to the candidate, then the proxy stops: its own server is the
        endpoint from now on."""
        self.set_canary_weight(deployment, stable, 100, log)
        state = dict(deployment.backend_state)
        stopped = stop_proxy(state)
        for name in ("proxy_pid", "proxy_port", "weight_file"):
            state.pop(name, None)
        deployment.backend_state = {}
        record_process(deployment, **state)  # the proxy's keys removed
        log(" ".join(stopped) or "The canary proxy had already stopped.")
        return Outcome(endpoint=state["server_endpoint"])

    def abort_canary(self, deployment, stable, log) -> None:
        """Every request through the proxy to the stable server; stopping the failed
        deployment then stops the proxy and the candidate's server."""
        self.set_canary_weight(deployment, stable, 0, log)

    def canary_metrics_urls(self, deployment, stable) -> tuple[str, str] | None:
        server = (deployment.backend_state or {}).get("server_endpoint")
        if not (server and stable.endpoint):
            return None
        return f"{stable.endpoint}/metrics", f"{server}/metrics"

    def wait_for_weight(self, proxy: str, weight: int, process=None) -> None:
        """Until the proxy says it applies `weight` (it re-reads the file per request)."""
        deadline = time.monotonic() + WEIGHT_APPLY_SECONDS
        while time.monotonic() < deadline:
            if process is not None and process.poll() is not None:
                raise DeployError(f"The canary proxy exited with status {process.returncode}.")
            try:
                if httpx.get(f"{proxy}/_canary", timeout=1.0).json().get("weight") == weight:
                    return
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.05)
        raise DeployError(f"The canary proxy at {proxy} did not take the weight {weight} %.")


def prediction_log_environment(rate: float) -> dict[str, str]:
    """How the model server samples requests into the prediction log: `rate`, and the
    portal's settings for the stream (see deployments.serving.prediction_log)."""
    return {
        "PREDICTION_SAMPLE_RATE": str(rate),
        "PREDICTION_LOG_URL": settings.PREDICTION_LOG_URL,
        "PREDICTION_LOG_STREAM": settings.PREDICTION_LOG_STREAM,
        "PREDICTION_LOG_MAXLEN": str(settings.PREDICTION_LOG_MAXLEN),
    }


def serving_dir() -> Path:
    path = Path(settings.SERVING_DIR)
    (path / "artifacts").mkdir(parents=True, exist_ok=True)
    return path


def deployment_folder(deployment) -> Path:
    """Where an MLflow model is laid out for one deployment's server (removed on stop)."""
    return serving_dir() / "artifacts" / f"deployment-{deployment.pk}"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def record_process(deployment, **state) -> bool:
    """Save pid and port at once, so a reconciler can stop the process if the job dies.

    False when the deployment is no longer running (the reconciler ended it meanwhile):
    then nobody else knows the pid, and the caller must stop the process itself."""
    from deployments.choices import DeploymentState
    from deployments.models import Deployment

    deployment.backend_state = {**(deployment.backend_state or {}), **state}
    saved = Deployment.objects.filter(pk=deployment.pk, state=DeploymentState.RUNNING).update(
        backend_state=deployment.backend_state
    )
    return bool(saved)


def health_ok(endpoint: str) -> bool:
    try:
        return httpx.get(f"{endpoint}/health", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def is_model_server(pid: int, module: str = SERVER_MODULE) -> bool:
    """True when `pid` is alive and is one of our model servers (pids get reused)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return module.encode() in cmdline


def is_proxy(pid: int) -> bool:
    """True when `pid` is alive and is one of our canary proxies."""
    return is_model_server(pid, module=PROXY_MODULE)


def stop_proxy(state: dict) -> list[str]:
    """Stop the canary proxy of a backend_state, if it runs; say so (or nothing)."""
    pid = state.get("proxy_pid")
    if not (pid and is_proxy(pid)):
        return []
    terminate(pid, module=PROXY_MODULE)
    Path(state.get("weight_file") or "/nonexistent").unlink(missing_ok=True)
    return [f"Canary proxy stopped (pid {pid})."]


def write_weight(path: Path, weight: int) -> None:
    """Write the canary's share for the proxy: a whole file appears at once (rename)."""
    partial = path.with_suffix(".part")
    partial.write_text(f"{int(weight)}\n")
    partial.replace(path)


def terminate(pid: int, grace_seconds: float = 5.0, module: str = SERVER_MODULE) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_seconds
    while time.monotonic() < deadline:
        _reap(pid)
        if not is_model_server(pid, module):
            return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    _reap(pid)


def _reap(pid: int) -> None:
    """Collect the exit status when the process is our child, so it leaves no zombie."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def tail(path, lines: int = 5) -> str:
    try:
        text = Path(path).read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no output)"
    return " | ".join(text[-lines:]) or "(no output)"


def download_to(uri: str, destination: Path) -> None:
    """Download the artifact at `uri` to `destination`, inside the network policy and the
    size limit (deployments.artifacts); a partial file never takes its name."""
    partial = destination.with_suffix(".part")
    try:
        with open(partial, "wb") as handle:
            artifacts.download(
                uri,
                handle,
                limit=settings.ARTIFACT_MAX_BYTES,
                timeout=settings.ARTIFACT_DOWNLOAD_TIMEOUT,
            )
    except (artifacts.Refused, ValueError, httpx.HTTPError) as exc:
        partial.unlink(missing_ok=True)
        raise DeployError(f"Could not download {uri}: {exc}") from exc
    partial.rename(destination)


def copy_from_storage(name: str, destination: Path) -> None:
    """Copy the stored file `name` to `destination`; a partial copy never takes its name."""
    partial = destination.with_suffix(".part")
    partial.unlink(missing_ok=True)
    try:
        storage.copy_to(name, partial)
    except Exception as exc:  # boto3 and OS errors alike: the deploy cannot go on
        partial.unlink(missing_ok=True)
        raise DeployError(f"Could not read {name} from the artifact storage: {exc}") from exc
    partial.rename(destination)
