#!/usr/bin/env bash
# Smoke test of the embedded default (`make run`'s set-up): migrate a fresh SQLite database,
# start the web process with gunicorn, and fetch the login page, a static file and /healthz.
set -euo pipefail
cd "$(dirname "$0")/.."

var_dir="$(mktemp -d)"
port=8765
export VAR_DIR="$var_dir" SECRET_KEY="smoke-test-secret-key-not-for-production-0123456789"
export SECURE_SSL_REDIRECT=false SESSION_COOKIE_SECURE=false CSRF_COOKIE_SECURE=false
export SECURE_HSTS_SECONDS=0 CELERY_BROKER_URL=filesystem:// LOG_LEVEL=WARNING
unset DATABASE_URL

.venv/bin/python manage.py migrate --noinput -v 0
.venv/bin/python manage.py collectstatic --noinput -v 0
.venv/bin/gunicorn mlops_portal.wsgi --bind "127.0.0.1:$port" --workers 1 --pid "$var_dir/web.pid" \
  --log-level warning &
web=$!
trap 'kill "$web" 2>/dev/null; wait "$web" 2>/dev/null; rm -rf "$var_dir"' EXIT

for _ in $(seq 60); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.5; done
login="$(curl -sf "http://127.0.0.1:$port/login/")"
grep -q "Log in" <<<"$login" || { echo "smoke: login page lacks its form" >&2; exit 1; }
css="$(grep -o '/static/bootstrap/css/bootstrap.min[^"]*\.css' <<<"$login" | head -n 1)"
curl -sf -o /dev/null "http://127.0.0.1:$port$css" || { echo "smoke: $css not served" >&2; exit 1; }
curl -sf "http://127.0.0.1:$port/healthz" | grep -q '"database": "ok"'
# An API token used twice: SQLite hands back timestamps its own way (naive, or text).
secret="$(.venv/bin/python manage.py shell -v 0 -c '
from django.contrib.auth.models import User
from mlops_portal.core.tokens import create_token
print(create_token(User.objects.create_user("smoke"), "smoke")[1])')"
for _ in 1 2; do
  curl -sf -H "Authorization: Token $secret" "http://127.0.0.1:$port/api/v1/metrics/dora/" \
    | grep -q '"figure":"dora"' || { echo "smoke: the API refused a token" >&2; exit 1; }
done
echo "smoke: embedded default (SQLite, filesystem broker) serves the login page, $css," \
  "/healthz and the API with a token"
