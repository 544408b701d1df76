"""docs/ops: the Prometheus alert rules and the Grafana dashboard name only metrics that
/metrics serves. The rules are checked with a parser (structure, durations, balanced
expressions, every metric name against a real scrape) and with `promtool check rules`, which
`make test` unpacks from Debian's prometheus package into .venv/bin."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from mlops_portal.core import metrics
from tests.conftest import ROOT

RULES = ROOT / "docs" / "ops" / "alerts.yml"
DASHBOARD = ROOT / "docs" / "ops" / "grafana-dashboard.json"
TOKEN = "scrape-secret-for-ops-files"
DURATION = re.compile(r"^\d+[smhdw]$")
METRIC = re.compile(r"\bportal_[a-z0-9_]+\b")


@pytest.fixture
def served_names(client, settings, bob) -> set[str]:
    """The sample names of a real scrape, with every family holding at least one sample."""
    settings.METRICS_TOKEN = TOKEN
    client.force_login(bob)
    client.get("/")  # a request, its latency and its queries
    metrics.record_job("tests.ops_files", "success", 0.2)  # job counts (Redis)
    metrics.record_probes(1)
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    return {
        sample.name
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }


def expressions_of_rules() -> list[str]:
    document = yaml.safe_load(RULES.read_text())
    assert set(document) == {"groups"}
    exprs = []
    for group in document["groups"]:
        assert group["name"] and group["rules"], group
        for rule in group["rules"]:
            assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
            assert re.fullmatch(r"[A-Z][A-Za-z0-9]+", rule["alert"])
            assert DURATION.match(rule.get("for", "0s")), rule["alert"]
            assert rule["labels"]["severity"] in ("page", "ticket"), rule["alert"]
            assert rule["annotations"]["summary"], rule["alert"]
            exprs.append(rule["expr"])
    return exprs


def expressions_of_dashboard() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


@pytest.mark.django_db
@pytest.mark.parametrize("source", [expressions_of_rules, expressions_of_dashboard])
def test_every_expression_names_metrics_that_metrics_serves(served_names, source):
    expressions = source()
    assert expressions
    for expr in expressions:
        assert expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}"), expr
        names = METRIC.findall(expr)
        assert names, f"no portal metric in {expr!r}"
        for name in names:
            assert name in served_names, f"{name} (in {expr!r}) is not in /metrics"


def test_the_dashboard_covers_every_family_of_the_issue():
    exprs = " ".join(expressions_of_dashboard())
    for name in (
        "portal_http_requests_total", "portal_http_request_duration_seconds_bucket",
        "portal_db_queries_total", "portal_celery_jobs_total",
        "portal_celery_job_duration_seconds_bucket", "portal_celery_queue_length",
        "portal_celery_queue_oldest_job_age_seconds", "portal_probes_total",
        "portal_probe_lag_seconds", "portal_deployments", "portal_incidents_open",
        "portal_outbox_pending",
    ):  # fmt: skip
        assert name in exprs


def test_promtool_accepts_the_rules():
    promtool = Path(sys.executable).parent / "promtool"  # `make test` puts it there
    assert promtool.exists(), "promtool is missing: run `make test`, which unpacks it"
    result = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True)
    assert result.returncode == 0, result.stdout + result.stderr
