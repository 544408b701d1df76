#!/usr/bin/env python
"""`make audit` (part of `make test`): known vulnerabilities in the locked packages.

Runs pip-audit on each lock (requirements/dev.txt holds every package of the portal's
virtualenv, requirements/mlflow-peer.txt the MLflow peer's) with hashes checked and nothing
installed, asking PyPI's vulnerability data for each pinned version. Prints one line per
finding and a summary per lock. Exits 1 on any known vulnerability not listed in IGNORED.

A package the service cannot look up (PyPI answers 404 for that version, or does not
answer) is counted as "not audited": that is no finding, but it is no all-clear either, so
the summary says how many, and --strict turns them into a failure (for a CI whose PyPI
answers every version).

    .venv/bin/python scripts/audit.py [--strict] [LOCK ...]
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCKS = ["requirements/dev.txt", "requirements/mlflow-peer.txt"]
PIP_AUDIT = ROOT / ".venv" / "bin" / "pip-audit"

# {vulnerability id: why it does not apply or cannot be fixed yet}. Each entry is a decision
# someone took; pip-audit is told to skip it and the summary prints it.
IGNORED: dict[str, str] = {}


def audit(lock: str) -> dict:
    """pip-audit's JSON report of one lock (hash-checked, without pip or any install)."""
    command = [str(PIP_AUDIT), "--format", "json", "--progress-spinner", "off", "--disable-pip",
               "--require-hashes", "-r", str(ROOT / lock)]  # fmt: skip
    for vuln_id in IGNORED:
        command += ["--ignore-vuln", vuln_id]
    ran = subprocess.run(command, capture_output=True, text=True, timeout=900)
    if not ran.stdout.strip():  # pip-audit itself failed (a bad lock, no network at all)
        sys.exit(f"pip-audit failed on {lock}:\n{ran.stderr}")
    return json.loads(ran.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strict", action="store_true", help="fail on packages not audited")
    parser.add_argument("locks", nargs="*", default=LOCKS)
    args = parser.parse_args()
    vulnerable = not_audited = 0
    for lock in args.locks:
        packages = audit(lock)["dependencies"]
        skipped = [p for p in packages if "skip_reason" in p]
        found = [(p, v) for p in packages for v in p.get("vulns", [])]
        for package, vuln in found:
            fixed = ", ".join(vuln.get("fix_versions") or []) or "no fixed version"
            name, version = package["name"], package["version"]
            print(f"VULNERABLE {name} {version}: {vuln['id']} (fixed in {fixed})")
        print(f"{lock}: {len(packages)} packages, {len(found)} known vulnerabilities, "
              f"{len(skipped)} not audited (no answer for that version)")  # fmt: skip
        vulnerable += len(found)
        not_audited += len(skipped)
    for vuln_id, reason in IGNORED.items():
        print(f"ignored {vuln_id}: {reason}")
    if not_audited:
        print(f"WARNING: {not_audited} pinned versions were not audited; --strict fails on that")
    return 1 if vulnerable or (args.strict and not_audited) else 0


if __name__ == "__main__":
    sys.exit(main())
