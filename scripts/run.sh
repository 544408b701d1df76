#!/usr/bin/env bash
# `make run`: prepare the embedded portal (SQLite and files under var/) and serve it with
# web + workers + beat + the outbox relay (the Procfile). Safe to run again: migrations,
# static files and demo data are idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python

mkdir -p var
[ -s var/secret_key ] || "$PY" -c "import secrets; print(secrets.token_urlsafe(50))" > var/secret_key
SECRET_KEY="$(cat var/secret_key)"
export SECRET_KEY
# Plain http on 127.0.0.1: no https redirect, no secure-only cookies, no HSTS.
export SECURE_SSL_REDIRECT="${SECURE_SSL_REDIRECT:-false}"
export SESSION_COOKIE_SECURE="${SESSION_COOKIE_SECURE:-false}"
export CSRF_COOKIE_SECURE="${CSRF_COOKIE_SECURE:-false}"
export SECURE_HSTS_SECONDS="${SECURE_HSTS_SECONDS:-0}"

# Redis when it answers, else the filesystem broker; prints one line saying which.
CELERY_BROKER_URL="$("$PY" manage.py choose_broker)"
export CELERY_BROKER_URL

# /metrics and /readyz answer curl on this machine (production sets a token or its network).
export METRICS_ALLOWED_NETWORKS="${METRICS_ALLOWED_NETWORKS:-127.0.0.1/32,::1/128}"
# One folder for the prometheus-client counts of every process here (mlops_portal.core.metrics),
# emptied at each start: /metrics sums the files.
export PROMETHEUS_MULTIPROC_DIR="${PROMETHEUS_MULTIPROC_DIR:-$PWD/var/prometheus/run}"
rm -rf "$PROMETHEUS_MULTIPROC_DIR" && mkdir -p "$PROMETHEUS_MULTIPROC_DIR"

# The demo's MLflow model is saved under this folder and registered by its file:// URI.
DEMO_MODELS_DIR="${VAR_DIR:-$PWD/var}/demo-models"
export ARTIFACT_FILE_ROOTS="${ARTIFACT_FILE_ROOTS:-$DEMO_MODELS_DIR}"

"$PY" manage.py migrate --noinput -v 0
"$PY" manage.py collectstatic --noinput -v 0
"$PY" manage.py load_demo_data

# The stock MLflow client registers one more model, as a team would, once the web answers.
"$PY" manage.py register_mlflow_demo "http://${PORTAL_BIND:-127.0.0.1:8000}" --folder "$DEMO_MODELS_DIR" &

# Synthetic traffic for the live demo model (drifting after 3 min) and feedback labels, so
# the prediction log, the live-quality chart and the live-accuracy rule show something.
# It stops when honcho (this shell, after exec) does.
"$PY" manage.py simulate_traffic "http://${PORTAL_BIND:-127.0.0.1:8000}" --stop-with $$ &

echo "Serving the portal at http://${PORTAL_BIND:-127.0.0.1:8000}/ (Ctrl-C stops web, workers, beat and the outbox relay)"
exec .venv/bin/honcho start -f Procfile
