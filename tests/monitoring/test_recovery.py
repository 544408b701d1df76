"""Recovery from `unknown`: a check reset while its incident is unresolved (a deploy, or
a pause and resume) recovers that incident on its first success."""

from datetime import timedelta

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from monitoring.choices import CheckState, IncidentState
from monitoring.models import Incident
from monitoring.services import checks


def probe_at(minutes):
    return checks.run_probes(now=timezone.now() + timedelta(minutes=minutes))


def test_a_resumed_check_that_answers_mitigates_its_incident(make_check, endpoint, bob):
    check = make_check(endpoint.url, failures_before_down=1)
    endpoint.status = 500
    probe_at(5)
    incident = Incident.objects.get(health_check=check)
    checks.set_paused(bob, check, True)
    checks.set_paused(bob, check, False)
    endpoint.status = 200
    probe_at(10)
    check.refresh_from_db()
    incident.refresh_from_db()
    assert (check.state, incident.state) == (CheckState.UP, IncidentState.MITIGATED)
    assert incident.events.filter(message=f"{check.name} answers again.").exists()


def test_checks_coming_up_cost_one_incident_query_however_many(make_check, endpoint):
    def queries_of_a_round(minutes):
        with CaptureQueriesContext(connection) as run:
            probe_at(minutes)
        return len(run.captured_queries)

    make_check(endpoint.url, name="first")
    one = queries_of_a_round(5)
    for n in range(5):
        make_check(endpoint.url, name=f"more {n}")
    assert queries_of_a_round(10) == one  # five more checks came up from unknown
