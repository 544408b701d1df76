"""schemathesis over every operation of the served schema, against a live portal.

Every operation, writes included, in the examples, coverage, fuzzing and stateful phases,
with the standard checks: no 5xx, status codes, content types and bodies as the schema
documents them, negative data refused, and no operation answering without credentials.
The path parameters name real objects (tests/contract/conftest.py), so requests reach the
code behind the 404."""

import json
import os
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ARTIFACTS_DIR, ROOT

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
    "ignored_auth",
]
EXAMPLES = 50
SEED = 14
SCHEMATHESIS = str(Path(sys.executable).parent / "schemathesis")


def operations(schema: dict):
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            yield path, method.upper(), operation


def path_values(schema: dict, paths: dict) -> dict[str, dict]:
    """{"METHOD /path/{param}/": {param: value}}: each path parameter takes the value of the
    object named by the path segment before it (a DELETE takes the spare object)."""
    found = {}
    for path, method, _ in operations(schema):
        segments = path.strip("/").split("/")
        values = {}
        for index, segment in enumerate(segments):
            if segment.startswith("{"):
                kind = paths.get(segments[index - 1], {})
                values[segment[1:-1]] = kind.get(method, kind.get("*"))
        if values:
            found[f"{method} {path}"] = paths.get(f"{method} {path}", values)
    return found


def test_schemathesis_finds_nothing_on_any_operation(portal, portal_gunicorn, tmp_path, capsys):
    schema_path = tmp_path / "schema.json"
    schema_path.write_text(json.dumps(portal.schema))
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "SCHEMATHESIS_HOOKS": "tests.contract.schemathesis_hooks",
        "CONTRACT_PATH_VALUES": json.dumps(path_values(portal.schema, portal.paths)),
    }
    har = tmp_path / "requests.har"
    command = [
        SCHEMATHESIS, "--no-color", "run", str(schema_path),
        "--url", portal.url, "-H", f"Authorization: Token {portal.token}",
        "--checks", ",".join(CHECKS), "--max-examples", str(EXAMPLES), "--seed", str(SEED),
        "--workers", "1", "--phases", "examples,coverage,fuzzing,stateful",
        "--suppress-health-check", "all", "--request-timeout", "30",
        "--generation-database", "none",
        "--report", "har", "--report-har-path", str(har),
    ]  # fmt: skip
    started, server_cpu = time.monotonic(), portal_gunicorn.workers_cpu_seconds()
    client_cpu = children_cpu()
    done = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900
    )
    elapsed = time.monotonic() - started
    server_cpu = portal_gunicorn.workers_cpu_seconds() - server_cpu  # gunicorn's workers
    client_cpu = children_cpu() - client_cpu
    ARTIFACTS_DIR.mkdir(exist_ok=True)
    report = ARTIFACTS_DIR / "schemathesis.txt"
    report.write_text(done.stdout + done.stderr)
    per_operation = requests_per_operation(har, portal.schema)
    fewest = sorted(per_operation.items(), key=lambda item: item[1])[:3]
    with capsys.disabled():  # the figures the README quotes
        print(f"\nschemathesis: {sum(per_operation.values())} requests over "
              f"{len(per_operation)} operations in {elapsed:.0f} s wall (CPU: schemathesis "
              f"{client_cpu:.0f} s, server {server_cpu:.0f} s); "
              f"fewest: {fewest}")  # fmt: skip
    assert done.returncode == 0, f"{report}:\n{done.stdout[-5000:]}{done.stderr[-3000:]}"
    assert len(per_operation) == sum(1 for _ in operations(portal.schema))
    assert min(per_operation.values()) >= EXAMPLES, fewest


def children_cpu() -> float:
    """CPU seconds used so far by this process's finished children (schemathesis)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return children.ru_utime + children.ru_stime


def requests_per_operation(har: Path, schema: dict) -> dict[str, int]:
    """How many requests each operation (`METHOD /path/{param}/`) received."""
    templates = [
        (method, re.compile("^" + re.sub(r"\\{[^/]+\\}", "[^/]+", re.escape(path)) + "$"), path)
        for path, method, _ in operations(schema)
    ]
    # Literal paths first: /pages/preview/ is not /pages/{slug}/.
    templates.sort(key=lambda item: item[2].count("{"))
    counts: dict[str, int] = {}
    entries = json.loads(har.read_text())["log"]["entries"] if har.exists() else []
    for entry in entries:
        method = entry["request"]["method"]
        url = re.sub(r"^https?://[^/]+", "", entry["request"]["url"]).split("?")[0]
        for wanted, pattern, path in templates:
            if wanted == method and pattern.match(url):
                counts[f"{method} {path}"] = counts.get(f"{method} {path}", 0) + 1
                break
    return counts
