"""A real local Ray cluster for the Ray backend's tests: `ray start --head --block` as a
child process with every port of its own (other people's clusters share this machine) and
its own short temp folder; stopped by killing its process group, never with `ray stop`
(which stops every cluster of the machine)."""

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
RAY = Path(sys.executable).parent / "ray"


@dataclass
class RayCluster:
    process: subprocess.Popen
    dashboard_url: str
    serve_port: int  # for Serve's HTTP proxy (the targets' http_port)
    temp_dir: str
    log_path: Path

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"


def free_ports(count: int) -> list[int]:
    """`count` distinct free TCP ports of 127.0.0.1 (held open together, so no repeats)."""
    probes = []
    try:
        for _ in range(count):
            probe = socket.socket()
            probe.bind(("127.0.0.1", 0))
            probes.append(probe)
        return [probe.getsockname()[1] for probe in probes]
    finally:
        for probe in probes:
            probe.close()


def free_port_range(size: int) -> tuple[int, int]:
    """A run of `size` consecutive ports that are free now (for Ray's worker ports)."""
    for start in range(20000 + (os.getpid() % 200) * 100, 60000, 97):
        ports = range(start, start + size)
        if all(_is_free(port) for port in ports):
            return ports[0], ports[-1]
    raise RuntimeError("No free run of ports for Ray's workers.")


def _is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def start(num_cpus: int = 2, timeout: float = 120) -> RayCluster:
    """Start a head node and wait until its dashboard (and Serve's REST API) answers."""
    (gcs, dashboard, client, node_manager, object_manager, agent_listen, agent_grpc, metrics,
     runtime_env, serve) = free_ports(10)  # fmt: skip
    min_worker, max_worker = free_port_range(40)
    temp_dir = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    log_path = Path(temp_dir) / "head.log"
    command = [
        str(RAY), "start", "--head", "--block", "--disable-usage-stats",
        "--num-cpus", str(num_cpus), "--object-store-memory", str(100 * 1024 * 1024),
        "--node-ip-address", "127.0.0.1", "--dashboard-host", "127.0.0.1",
        "--port", str(gcs), "--dashboard-port", str(dashboard),
        "--ray-client-server-port", str(client), "--node-manager-port", str(node_manager),
        "--object-manager-port", str(object_manager),
        "--dashboard-agent-listen-port", str(agent_listen),
        "--dashboard-agent-grpc-port", str(agent_grpc),
        "--metrics-export-port", str(metrics), "--runtime-env-agent-port", str(runtime_env),
        "--min-worker-port", str(min_worker), "--max-worker-port", str(max_worker),
        "--temp-dir", temp_dir,
    ]  # fmt: skip
    env = {
        **os.environ,
        # The replicas import the repository's serving code (a real cluster gets it through
        # the target's runtime_env working_dir instead).
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    cluster = RayCluster(process, f"http://127.0.0.1:{dashboard}", serve, temp_dir, log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"ray start exited ({process.returncode}):\n{cluster.log_tail()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{cluster.dashboard_url}/api/serve/applications/", timeout=2).is_success:
                return cluster
        time.sleep(0.5)
    stop(cluster)
    raise RuntimeError(f"The Ray dashboard did not answer in {timeout} s:\n{cluster.log_tail()}")


def descendants(pid: int) -> list[int]:
    """The pids of every process below `pid` (Ray's workers lead process groups of their
    own, so killing the head's group alone could leave them)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, queue = [], [pid]
    while queue:
        for child in children.get(queue.pop(), []):
            found.append(child)
            queue.append(child)
    return found


def stop(cluster: RayCluster, grace: float = 10) -> None:
    """Stop the head node and everything it started: its process group (the raylet, GCS,
    dashboard) and every process below it (workers, Serve's actors), by pid only."""
    below = descendants(cluster.process.pid)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(cluster.process.pid, signal.SIGTERM)
    try:
        cluster.process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(cluster.process.pid, signal.SIGKILL)
    for pid in below:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        cluster.process.wait(timeout=5)
    shutil.rmtree(cluster.temp_dir, ignore_errors=True)
