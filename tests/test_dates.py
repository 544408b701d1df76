"""Dates and times read the same on every page: "2 Dec 2026, 14:05 UTC"."""

import re

from django.utils import timezone

from deployments import services as deploy
from tests.factories import register_iris_version

ONE_STYLE = re.compile(r"\b\d{1,2} [A-Z][a-z]{2} \d{4}, \d{2}:\d{2} UTC\b")


def test_absolute_moments_use_one_format_on_pages_and_titles(client, alice):
    version = register_iris_version(alice, deploy.create_model(alice, name="iris"))
    client.force_login(alice)
    expected = timezone.localtime(version.created_at).strftime("%-d %b %Y, %H:%M UTC")
    for path in ("/models/iris/versions/1/", "/models/iris/", "/changes/", "/"):
        html = client.get(path).content.decode()
        assert ONE_STYLE.search(html), path
        assert "a.m." not in html and "p.m." not in html, path
    assert expected in client.get("/models/iris/versions/1/").content.decode()
