# make run   — set up and serve the portal with demo data (SQLite, web + worker + beat)
# make test  — set up and run ruff, import-linter and the whole test suite (PostgreSQL + Redis)
# make bench — API benchmark (PostgreSQL, gunicorn) and approval-to-serving time (local backend)
# make chaos — attack a live stack (kill -9, Redis restart, races, malformed input, schemathesis)

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP_INSTALL := $(VENV)/bin/pip install -q --disable-pip-version-check --build-constraint build-constraints.txt

MERMAID_VERSION := 12.3.0
MERMAID_JS := vendor-static/mermaid/mermaid.min.js
AXE_VERSION := 4.14.1
AXE_JS := vendor-static/axe-core/axe.min.js

.PHONY: run test lint bench chaos clean

$(VENV)/.runtime: requirements.txt build-constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -U pip
	$(PIP_INSTALL) -r requirements.txt
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt
	$(PIP_INSTALL) -r requirements-dev.txt
	touch $@

# The real `mlflow server` the tests and the benchmark compare the portal with, in its own
# virtualenv: mlflow pins gunicorn<27, the portal runs gunicorn 27.
MLFLOW_VENV := .venv-mlflow
$(MLFLOW_VENV)/.installed: requirements-mlflow-peer.txt
	test -x $(MLFLOW_VENV)/bin/python || $(PYTHON) -m venv $(MLFLOW_VENV)
	$(MLFLOW_VENV)/bin/pip install -q --disable-pip-version-check -r requirements-mlflow-peer.txt
	touch $@

# Mermaid (diagrams in docs) comes from the npm registry into a git-ignored folder; only
# its self-contained browser bundle is kept and served by the app.
$(MERMAID_JS):
	rm -rf vendor-static/npm
	npm install --prefix vendor-static/npm --no-audit --no-fund --loglevel=error mermaid@$(MERMAID_VERSION)
	mkdir -p $(dir $@)
	cp vendor-static/npm/node_modules/mermaid/dist/mermaid.min.js $@
	rm -rf vendor-static/npm

# The `mlops` command line (mlops_cli/, which needs only click and httpx from the runtime
# requirements): a launcher in the virtualenv that runs this checkout's package from anywhere.
# -P: the caller's folder never shadows the package.
$(VENV)/bin/mlops: $(VENV)/.runtime Makefile
	printf '#!/bin/sh\nPYTHONPATH="%s$${PYTHONPATH:+:$$PYTHONPATH}" exec "%s" -P -m mlops_cli "$$@"\n' \
		"$(CURDIR)" "$(abspath $(PY))" > $@
	chmod +x $@

# promtool checks docs/ops/alerts.yml in the tests: only that binary, unpacked from Debian's
# prometheus package into the virtualenv (no Prometheus daemon is installed or started).
PROMTOOL := $(VENV)/bin/promtool
$(PROMTOOL): | $(VENV)/.runtime
	rm -rf $(VENV)/prometheus-deb && mkdir -p $(VENV)/prometheus-deb
	cd $(VENV)/prometheus-deb && (apt-get download -qq prometheus || (apt-get update -qq && apt-get download -qq prometheus)) && dpkg-deb -x prometheus_*.deb root
	install -m 0755 $(VENV)/prometheus-deb/root/usr/bin/promtool $@
	rm -rf $(VENV)/prometheus-deb

# axe-core (accessibility rules the browser tests run on every page), from npm like Mermaid;
# only, never served by the portal.
$(AXE_JS):
	rm -rf vendor-static/npm-axe
	npm install --prefix vendor-static/npm-axe --no-audit --no-fund --loglevel=error axe-core@$(AXE_VERSION)
	mkdir -p $(dir $@)
	cp vendor-static/npm-axe/node_modules/axe-core/axe.min.js $@
	rm -rf vendor-static/npm-axe

run: $(VENV)/.runtime $(VENV)/bin/mlops $(MERMAID_JS)
	./scripts/run.sh

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports  # the layers: contracts in pyproject.toml [tool.importlinter]

test: lint $(VENV)/bin/mlops $(PROMTOOL) $(MERMAID_JS) $(AXE_JS) $(MLFLOW_VENV)/.installed
	$(PY) -m pytest $(PYTEST_ARGS)

bench: $(VENV)/.dev $(MLFLOW_VENV)/.installed
	$(PY) bench/run.py
	$(PY) bench/deploy_latency.py
	$(PY) bench/mlflow_peer.py
	$(PY) bench/monitoring.py

# Starts its own stack (private Redis, a fresh database on DATABASE_URL's PostgreSQL
# server); CHAOS_ARGS=--quick for a few runs of each check.
chaos: $(VENV)/.dev
	$(PY) scripts/chaos.py $(CHAOS_ARGS)

clean:
	rm -rf $(VENV) $(MLFLOW_VENV) var test-artifacts vendor-static
