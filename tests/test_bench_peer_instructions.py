"""bench/peer_instructions.py counts MLflow's server on the very requests bench/mlflow_peer.py
sends it, and its measured child (run in .venv-mlflow, which has no Django) imports none."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Run apart: the bench scripts import each other as top-level modules (`run`, ...).
CHECK = r"""
import json, sys
sys.path.insert(0, "bench")
import peer_instructions, profile_endpoint, run, mlflow_peer

assert not [m for m in sys.modules if m.partition(".")[0] == "django"], "imports Django"


class Recorder:
    def request(self, method, path, body=None, headers=None):
        self.sent = (method, path, body or b"", headers["Authorization"])

    def getresponse(self):
        raise OSError("only recorded")

    def close(self):
        pass


def peer_sends(workload, i):
    # What bench/mlflow_peer.py's clients send MLflow (run.drive with an empty secret).
    conn = Recorder()
    headers = {"Content-Type": "application/json", "Authorization": "Token "}
    run.one_request(conn, workload, headers, i, run.Result(workload))
    return conn.sent


def counted_child_serves(workload, i):
    # What peer_instructions' child hands MLflow's app (profile_endpoint.serve's environ).
    env = profile_endpoint.wsgi_environ(workload, i, "")
    path = env["PATH_INFO"] + ("?" + env["QUERY_STRING"] if env["QUERY_STRING"] else "")
    return (env["REQUEST_METHOD"], path, env["wsgi.input"].read(), env["HTTP_AUTHORIZATION"])


workloads = mlflow_peer.mlflow_workloads()
assert sorted(workloads) == sorted(mlflow_peer.PORTAL_V1), sorted(workloads)
for workload in workloads.values():
    for i in (0, 1, 199, 200, 4999, 5000):
        assert peer_sends(workload, i) == counted_child_serves(workload, i), (workload.name, i)
register = workloads["register"]
bodies = [json.loads(counted_child_serves(register, i)[2]) for i in range(200)]
assert len({body["name"] for body in bodies}) == 200, "each creation on its own model"
print("ok")
"""


def test_mlflow_side_gets_the_peers_requests_without_django():
    result = subprocess.run(
        [sys.executable, "-c", CHECK], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
