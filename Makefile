# make run   — set up and serve the portal with demo data (SQLite, web + worker + beat)
# make test  — set up and run ruff, import-linter and the whole test suite (PostgreSQL + Redis)
# make bench — API benchmark (PostgreSQL, gunicorn), approval-to-serving time (local backend), model server per core
# make chaos — attack a live stack (kill -9, Redis restart, races, malformed input, schemathesis)
# make scale-check — 2 web instances, 2 workers, 1 beat driven together (jobs once, one approval wins, kill -9 of a web)
# make lock  — recompile the hashed lock files requirements/*.txt from requirements/*.in
# make audit — known vulnerabilities in the locked packages (pip-audit; part of make test)

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Every install comes from a lock (requirements/*.txt, written by `make lock`): exact versions,
# each file's hash checked, nothing resolved at install time.
# The first install brings the locked pip. Every locked package ships a wheel: nothing is
# built at install time, so there is no build-time dependency to pin either.
PIP_INSTALL := $(VENV)/bin/pip install -q --disable-pip-version-check --require-hashes --no-deps

MERMAID_VERSION := 12.3.0
MERMAID_JS := vendor-static/mermaid/mermaid.min.js
BOOTSTRAP_VERSION := 5.3.8
BOOTSTRAP_CSS := vendor-static/bootstrap/css/bootstrap.min.css
AXE_VERSION := 4.14.1
AXE_JS := vendor-static/axe-core/axe.min.js

.PHONY: run test lint audit lock bench chaos scale-check clean

# requirements/run.txt: web.txt (web, beat, notifier, relay) + ml.txt's ML stack (worker,
# model server) + honcho; dev.txt adds the test tools. Each lock is complete on its own.
$(VENV)/.runtime: requirements/pip.txt requirements/run.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) -r requirements/pip.txt
	$(PIP_INSTALL) -r requirements/run.txt
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements/dev.txt
	$(PIP_INSTALL) -r requirements/dev.txt
	touch $@

# The locks, from the .in files. Deterministic: a pin already in a lock is kept (uv reads the
# existing output file), so only what is new in the .in files is resolved; dev.txt is solved
# first and every other set is constrained by it, so a package has one version in all locks.
# Move a pin on purpose with LOCK_ARGS="--upgrade-package NAME" (or --upgrade for all).
UV_COMPILE = $(VENV)/bin/uv pip compile --quiet --generate-hashes --custom-compile-command "make lock" $(LOCK_ARGS)
lock: | $(VENV)/.dev
	$(UV_COMPILE) --python $(PY) requirements/dev.in -o requirements/dev.txt
	for set in run ml web pip; do \
		$(UV_COMPILE) --python $(PY) -c requirements/dev.txt requirements/$$set.in -o requirements/$$set.txt || exit 1; \
	done
	$(UV_COMPILE) --python $(MLFLOW_VENV)/bin/python requirements/mlflow-peer.in -o requirements/mlflow-peer.txt

# Known vulnerabilities (pip-audit, PyPI's advisory data) in every locked package, without
# installing anything. Fails on any finding; versions the service cannot look up are counted
# as not audited (AUDIT_ARGS=--strict fails on those too). Ignores live in scripts/audit.py.
AUDIT_ARGS ?=
audit: $(VENV)/.dev
	$(PY) scripts/audit.py $(AUDIT_ARGS)

# The real `mlflow server` the tests and the benchmark compare the portal with, in its own
# virtualenv: mlflow pins gunicorn<27, the portal runs gunicorn 27.
MLFLOW_VENV := .venv-mlflow
$(MLFLOW_VENV)/.installed: requirements/pip.txt requirements/mlflow-peer.txt
	test -x $(MLFLOW_VENV)/bin/python || $(PYTHON) -m venv $(MLFLOW_VENV)
	$(MLFLOW_VENV)/bin/pip install -q --disable-pip-version-check --require-hashes --no-deps -r requirements/pip.txt
	$(MLFLOW_VENV)/bin/pip install -q --disable-pip-version-check --require-hashes --no-deps -r requirements/mlflow-peer.txt
	touch $@

# Mermaid (diagrams in docs) comes from the npm registry into a git-ignored folder; only
# its self-contained browser bundle is kept and served by the app.
$(MERMAID_JS):
	rm -rf vendor-static/npm
	npm install --prefix vendor-static/npm --no-audit --no-fund --loglevel=error mermaid@$(MERMAID_VERSION)
	mkdir -p $(dir $@)
	cp vendor-static/npm/node_modules/mermaid/dist/mermaid.min.js $@
	rm -rf vendor-static/npm

# Bootstrap (the pages' CSS and JS) from npm like Mermaid: its dist/ files, source maps
# included (the manifest storage of collectstatic follows the CSS's sourceMappingURL).
$(BOOTSTRAP_CSS):
	rm -rf vendor-static/npm-bootstrap
	npm install --prefix vendor-static/npm-bootstrap --no-audit --no-fund --loglevel=error bootstrap@$(BOOTSTRAP_VERSION)
	rm -rf vendor-static/bootstrap && mkdir -p vendor-static/bootstrap/css vendor-static/bootstrap/js
	cp vendor-static/npm-bootstrap/node_modules/bootstrap/dist/css/bootstrap.min.css* vendor-static/bootstrap/css/
	cp vendor-static/npm-bootstrap/node_modules/bootstrap/dist/js/bootstrap.bundle.min.js* vendor-static/bootstrap/js/
	rm -rf vendor-static/npm-bootstrap

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

run: $(VENV)/.runtime $(VENV)/bin/mlops $(MERMAID_JS) $(BOOTSTRAP_CSS)
	./scripts/run.sh

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports  # the layers: contracts in pyproject.toml [tool.importlinter]

test: lint audit $(VENV)/bin/mlops $(PROMTOOL) $(MERMAID_JS) $(BOOTSTRAP_CSS) $(AXE_JS) $(MLFLOW_VENV)/.installed
	$(PY) -m pytest $(PYTEST_ARGS)

bench: $(VENV)/.dev $(MLFLOW_VENV)/.installed
	$(PY) bench/run.py
	$(PY) bench/deploy_latency.py
	$(PY) bench/mlflow_peer.py
	$(PY) bench/monitoring.py
	$(PY) bench/canary.py
	$(PY) bench/model_server.py

# Starts its own stack (private Redis, a fresh database on DATABASE_URL's PostgreSQL
# server); CHAOS_ARGS=--quick for a few runs of each check.
chaos: $(VENV)/.dev
	$(PY) scripts/chaos.py $(CHAOS_ARGS)

# Starts its own stack like chaos (private Redis, a fresh database on DATABASE_URL's server):
# two gunicorn instances, two workers, notifier, one beat, relay; prints a short report.
scale-check: $(VENV)/.dev
	$(PY) scripts/scale_check.py

clean:
	rm -rf $(VENV) $(MLFLOW_VENV) var test-artifacts vendor-static
