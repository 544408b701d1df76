"""How `mlops` gets installed: `make run`/`make test` write a launcher into the virtualenv,
and a pipeline pip-installs the CLI alone from pyproject.toml."""

import subprocess
import sys
import tarfile

from tests.conftest import ROOT


def test_the_makefile_writes_a_launcher_that_runs_from_any_folder(tmp_path):
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    (venv / "bin" / "python").chmod(0o755)
    (venv / ".runtime").touch()  # the requirements are installed (newer than their lists)
    made = subprocess.run(
        ["make", "-s", f"VENV={venv}", f"{venv}/bin/mlops"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "mlops_cli").mkdir(parents=True)  # a folder that would shadow the package
    ran = subprocess.run(
        [str(venv / "bin" / "mlops"), "--help"],
        cwd=elsewhere, capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert "Exit codes:" in ran.stdout and "4  timed out" in ran.stdout


def test_the_cli_is_a_package_of_its_own_with_the_mlops_entry_point(tmp_path):
    """What `pip install "mlops-portal-cli @ git+…"` builds: the CLI alone (an sdist here:
    building a wheel needs the `wheel` package, which the portal's virtualenv lacks)."""
    source = tmp_path / "source"
    source.mkdir()
    (source / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
    subprocess.run(["cp", "-r", str(ROOT / "mlops_cli"), str(source)], check=True)
    dist = tmp_path / "dist"
    dist.mkdir()
    build = f"from setuptools import build_meta; build_meta.build_sdist({str(dist)!r})"
    built = subprocess.run(
        [sys.executable, "-c", build],
        cwd=source, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    with tarfile.open(dist / "mlops-portal-cli-1.0.0.tar.gz") as sdist:
        names = sdist.getnames()
        entry_points = sdist.extractfile(
            "mlops-portal-cli-1.0.0/mlops_portal_cli.egg-info/entry_points.txt"
        ).read()
        requires = sdist.extractfile(
            "mlops-portal-cli-1.0.0/mlops_portal_cli.egg-info/requires.txt"
        ).read()
    assert "mlops-portal-cli-1.0.0/mlops_cli/main.py" in names
    assert b"mlops = mlops_cli.main:main" in entry_points
    assert requires.split() == [b"click>=8.1", b"httpx>=0.27"]
