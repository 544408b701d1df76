"""What the portal writes to its logs: one line per refusal, emails at INFO."""

import logging

import pytest


@pytest.mark.parametrize("path", ["/models/new/", "/api/v1/targets/"])
def test_a_refusal_is_one_line_without_a_traceback(client, carol, caplog, path):
    client.force_login(carol)
    with caplog.at_level(logging.INFO):
        response = (client.get if path.endswith("new/") else client.post)(path, {})
    assert response.status_code == 403
    # One warning (the security log's line); the access log's INFO line is not a refusal.
    refusals = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(refusals) == 1, [r.getMessage() for r in caplog.records]
    assert refusals[0].exc_info is None and "Traceback" not in caplog.text


def test_what_a_worker_prints_such_as_a_console_email_is_logged_at_info():
    from mlops_portal.celery import app

    assert app.conf.worker_redirect_stdouts_level == "INFO"


def test_the_favicon_is_served_to_anyone_and_every_page_links_it(client, alice):
    from django.contrib.staticfiles import finders

    from docs_app import services as docs

    icon = client.get("/favicon.ico")  # anonymous: no login redirect
    assert icon.status_code == 302 and icon["Location"].endswith("mlops_portal/favicon.svg")
    assert "<svg" in open(finders.find("mlops_portal/favicon.svg")).read()
    page = docs.create_page(alice, title="Runbook", body="# Steps")
    client.force_login(alice)
    for path in (f"/docs/{page.slug}/print/", "/"):
        assert 'rel="icon" href="/static/mlops_portal/favicon' in client.get(path).content.decode()
