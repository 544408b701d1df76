"""One search box over every kind, ranked, for logged-in users only."""

from deployments import services as registry
from docs_app import services as docs
from monitoring.services import incidents


def test_search_finds_each_kind_and_ranks_title_matches_first(client, alice, bob):
    registry.create_model(alice, name="churn", description="Predicts customer churn.")
    registry.create_model(alice, name="fraud", description="Card fraud; churn unrelated.")
    docs.create_page(alice, title="Churn runbook", body="How to roll back churn.")
    docs.create_page(alice, title="Fraud notes", body="Mentions churn once.")
    incidents.open_incident(alice, title="Churn endpoint down")
    client.force_login(bob)
    groups = client.get("/search/?q=churn").context["groups"]
    assert set(groups) == {"models", "pages", "incidents"}
    assert [label for label, _, _ in groups["pages"]] == ["Churn runbook", "Fraud notes"]
    assert [label for label, _, _ in groups["models"]] == ["churn", "fraud"]


def test_search_api_groups_results(api_client_for, alice):
    docs.create_page(alice, title="Rollback guide", body="Roll back from the deployment page.")
    body = api_client_for(alice).get("/api/v1/search/?q=rollback").json()
    assert body["results"]["pages"][0]["url"] == "/docs/rollback-guide/"


def test_search_needs_a_login(client, db):
    assert client.get("/api/v1/search/?q=x").status_code == 401
    assert client.get("/search/?q=x").status_code == 302


def test_one_kind_is_paginated(client, api_client_for, alice):
    for n in range(30):
        docs.create_page(alice, title=f"Retraining note {n}", body="retraining schedule")
    client.force_login(alice)
    first = client.get("/search/?q=retraining&kind=pages")
    assert first.context["page"].paginator.count == 30
    assert len(first.context["groups"]["pages"]) == 25
    api = api_client_for(alice).get("/api/v1/search/?q=retraining&kind=pages&page_size=10").json()
    assert api["count"] == 30 and len(api["results"]) == 10 and api["next"]


def test_a_word_prefix_finds_and_the_index_serves_the_query(client, alice):
    from django.db import connection

    from mlops_portal.search import KINDS_BY_NAME, _ranked, prefix_query

    docs.create_page(alice, title="Churn runbook", body="Rollbacks.")
    client.force_login(alice)
    assert "pages" in client.get("/search/?q=chur").context["groups"]
    with connection.cursor() as cursor:
        cursor.execute("SET enable_seqscan = off")  # a tiny table would be scanned anyway
        plan = _ranked(KINDS_BY_NAME["pages"], "chur").explain()
        cursor.execute("SET enable_seqscan = on")
    assert "page_search_idx" in plan
    assert prefix_query("!!") is None
