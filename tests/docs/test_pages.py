"""Documentation pages: revisions, diffs, restore, edit conflicts, links, attachments,
postmortems, model cards."""

import re

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile

from deployments import services as registry
from docs_app import services
from docs_app.models import Page
from monitoring.services import incidents
from tests.factories import register_iris_version

PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00"
    b"\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\xff\xff?\x00\x05\xfe\x02\xfe\xa7\x35\x81\x84"
    b"\x00\x00\x00\x00IEND\xaeB`\x82"
)


def save(user, page, base, body, **extra):
    return services.save_page(user, page, base_revision=base, title=page.title, body=body, **extra)


def test_every_save_is_a_revision_with_author_and_summary(runbook, bob):
    save(bob, runbook, 1, "## Rollback\nUse the Roll back button.", summary="Clearer")
    revisions = list(runbook.revisions.values_list("number", "author__username", "summary"))
    assert revisions == [(2, "bob", "Clearer"), (1, "alice", "Created.")]
    runbook.refresh_from_db()
    assert runbook.revision_number == 2


def test_the_second_of_two_concurrent_saves_is_refused_not_lost(runbook, alice, bob):
    save(alice, runbook, 1, "alice's text")
    with pytest.raises(services.EditConflict, match="alice saved this page"):
        save(bob, runbook, 1, "bob's text")
    runbook.refresh_from_db()
    assert runbook.body == "alice's text"


def test_restoring_an_old_revision_is_a_new_revision(runbook, bob):
    original = runbook.body
    save(bob, runbook, 1, "rewritten")
    runbook.refresh_from_db()
    services.restore_revision(bob, runbook, runbook.revisions.get(number=1))
    runbook.refresh_from_db()
    assert (runbook.body, runbook.revision_number) == (original, 3)
    assert runbook.revisions.first().summary == "Restored revision 1."


def test_viewers_cannot_write(carol):
    with pytest.raises(PermissionDenied):
        services.create_page(carol, title="x")


def test_a_page_cannot_sit_under_its_own_child(runbook, alice):
    child = services.create_page(alice, title="Child", parent=runbook)
    with pytest.raises(ValidationError) as excinfo:
        save(alice, runbook, 1, "", parent=child)
    assert "parent" in excinfo.value.message_dict


def test_an_image_named_like_html_is_still_served_as_an_image(client, runbook, alice):
    attachment = services.attach_image(alice, runbook, SimpleUploadedFile("page.html", PNG))
    client.force_login(alice)
    response = client.get(f"/docs/attachments/{attachment.pk}/page.html")
    assert response["Content-Type"] == "image/png"
    assert response["Content-Security-Policy"] == "default-src 'none'"


def test_only_images_are_attached(runbook, alice):
    with pytest.raises(ValidationError):
        services.attach_image(alice, runbook, SimpleUploadedFile("x.png", b"<script>"))
    attachment = services.attach_image(alice, runbook, SimpleUploadedFile("dot.png", PNG))
    assert attachment.size == len(PNG)


def test_the_page_renders_links_toc_and_images(client, alice, runbook):
    iris = registry.create_model(alice, name="iris")
    register_iris_version(alice, iris)
    attachment = services.attach_image(alice, runbook, SimpleUploadedFile("dot.png", PNG))
    body = (
        "# Intro\nSee [[churn-runbook]], [[nowhere]] and model:iris@1.\n\n"
        f"![dot](/docs/attachments/{attachment.pk}/dot.png)\n\n## Details\n"
    )
    page = services.create_page(alice, title="Overview", body=body)
    client.force_login(alice)
    response = client.get(page.get_absolute_url())
    html = response.content.decode()
    assert 'href="/docs/churn-runbook/"' in html
    assert "missing-link" in html
    assert 'href="/models/iris/versions/1/"' in html
    assert f'src="/docs/attachments/{attachment.pk}/dot.png"' in html
    assert [e.anchor for e in response.context["rendered"].toc] == ["intro", "details"]
    image = client.get(f"/docs/attachments/{attachment.pk}/dot.png")
    assert b"".join(image.streaming_content) == PNG
    assert image["Content-Type"] == "image/png"


def test_the_edit_form_keeps_my_text_when_someone_saved_first(client, alice, bob, runbook):
    client.force_login(bob)
    form = client.get(f"/docs/{runbook.slug}/edit/").context["form"]
    assert form.initial["base_revision"] == 1
    save(alice, runbook, 1, "alice was first")
    response = client.post(
        f"/docs/{runbook.slug}/edit/",
        {"title": runbook.title, "body": "bob's careful edit", "base_revision": 1},
    )
    page = response.content.decode()
    assert "Not saved." in page and "bob&#x27;s careful edit" in page
    assert "alice was first" in page  # their text, to compare
    assert Page.objects.get(pk=runbook.pk).body == "alice was first"


def test_history_diff_and_restore_pages(client, alice, runbook):
    save(alice, runbook, 1, "## Rollback\nRoll back from the live deployment page.")
    client.force_login(alice)
    history = client.get(f"/docs/{runbook.slug}/history/").content.decode()
    assert "r2" in history and "r1" in history
    diff = client.get(f"/docs/{runbook.slug}/diff/?a=1&b=2").content.decode().replace("&nbsp;", " ")
    assert '<span class="diff_add"> live</span>' in diff  # the inserted word, highlighted
    client.post(f"/docs/{runbook.slug}/restore/1/")
    runbook.refresh_from_db()
    assert runbook.revision_number == 3
    assert runbook.body == "## Rollback\nRoll back from the deployment page."


def test_live_preview_and_print_view(client, alice, runbook):
    client.force_login(alice)
    preview = client.post("/docs/preview/", {"body": "# Hello\n| a | b |\n|---|---|\n| 1 | 2 |"})
    assert "<table>" in preview.content.decode() and 'id="hello"' in preview.content.decode()
    printable = client.get(f"/docs/{runbook.slug}/print/").content.decode()
    assert "navbar" not in printable and "Roll back from the deployment page." in printable


def test_starter_templates(client, alice):
    client.force_login(alice)
    form = client.get("/docs/new/?template=postmortem").context["form"]
    assert "## Timeline" in form.initial["body"]


def test_a_postmortem_from_an_incident_carries_its_timeline(client, alice, bob):
    incident = incidents.open_incident(alice, title="Scores drifted", severity="sev2")
    incidents.acknowledge(bob, incident, "Looking at inputs")
    client.force_login(bob)
    response = client.post(f"/docs/postmortem/{incident.pk}/")
    page = Page.objects.get(slug=f"postmortem-incident-{incident.pk}")
    assert response["Location"] == f"/docs/{page.slug}/edit/"
    assert "open → acknowledged: Looking at inputs" in page.body
    assert f"Incident #{incident.pk}, SEV2" in page.body


def test_a_model_card_follows_the_registry_and_deployments(client, alice, bob):
    from deployments.models import Deployment

    iris = registry.create_model(alice, name="iris", description="Classifies flowers.")
    v1 = registry.validate_version(register_iris_version(alice, iris, metrics={"acc": 0.9}).pk)
    target = registry.create_target(bob, name="iris-stage", environment="staging")
    deployment = registry.request_deployment(alice, version=v1, target=target, reason="x")
    Deployment.objects.filter(pk=deployment.pk).update(state="running")
    deployment.refresh_from_db()
    registry.complete_deployment(deployment, "http://127.0.0.1:9")
    page = services.create_page(alice, title="Iris design", linked_models=[iris])
    client.force_login(alice)
    card = client.get("/api/v1/models/iris/card/").json()
    assert card["versions"][0]["deployed_now"][0]["target"] == "iris-stage"
    assert card["pages"] == [{"slug": page.slug, "title": "Iris design"}]
    markdown = client.get("/models/iris/card/?format=md")
    assert markdown["Content-Disposition"].endswith('iris-model-card.md"')
    assert "| v1 | ready | 0.9 | iris-stage | — |" in markdown.content.decode()
    register_iris_version(alice, iris)
    assert "| v2 | registered |" in client.get("/models/iris/card/?format=md").content.decode()
    api_markdown = client.get("/api/v1/models/iris/card/?format=md").content.decode()
    assert api_markdown.startswith("# Model card: iris")


def test_the_pages_api_creates_edits_with_conflicts_and_lists_revisions(api_client_for, alice, bob):
    api = api_client_for(alice)
    created = api.post("/api/v1/pages/", {"title": "On-call guide", "body": "v1"}, format="json")
    assert created.status_code == 201 and created.json()["slug"] == "on-call-guide"
    edit = {"title": "On-call guide", "body": "v2", "base_revision": 1}
    edited = api.patch("/api/v1/pages/on-call-guide/", edit, format="json")
    assert edited.status_code == 200
    assert (edited.json()["body"], edited.json()["revision_number"]) == ("v2", 2)
    stale = api_client_for(bob).patch("/api/v1/pages/on-call-guide/", edit, format="json")
    assert stale.status_code == 409
    assert Page.objects.get(slug="on-call-guide").revision_number == 2
    revisions = api.get("/api/v1/pages/on-call-guide/revisions/").json()
    assert [r["number"] for r in revisions] == [2, 1]
    preview = api.post("/api/v1/pages/preview/", {"body": "## Hi"}, format="json").json()
    assert preview["toc"] == [{"level": 2, "text": "Hi", "anchor": "hi"}]
    assert api.delete("/api/v1/pages/on-call-guide/").status_code == 204
    assert not Page.objects.exists()


@pytest.fixture
def linked_postmortem(alice, bob):
    """A postmortem linked to two models and two targets, with a third model to link."""
    models = {
        name: registry.create_model(alice, name=name, team="ml")
        for name in ("diabetes-progression", "iris-classifier", "iris-regressor")
    }
    targets = {
        name: registry.create_target(bob, name=name, environment="staging")
        for name in ("iris-production", "iris-staging")
    }
    page = services.create_page(
        alice,
        title="Postmortem: iris 500s",
        body="What happened.",
        linked_models=[models["iris-classifier"], models["iris-regressor"]],
        linked_targets=list(targets.values()),
    )
    return page, models, targets


def linked_names(page):
    return (
        sorted(page.linked_models.values_list("name", flat=True)),
        sorted(page.linked_targets.values_list("name", flat=True)),
    )


def test_the_edit_form_selects_every_current_link_and_allows_several(
    client, alice, linked_postmortem
):
    page, _, _ = linked_postmortem
    client.force_login(alice)
    html = client.get(f"/docs/{page.slug}/edit/").content.decode()
    for field, linked in (
        ("linked_models", page.linked_models),
        ("linked_targets", page.linked_targets),
    ):
        select = re.search(rf'<select name="{field}"[^>]*>(.*?)</select>', html, re.S)
        assert select and "multiple" in select.group(0)
        chosen = re.findall(r'<option value="(\d+)"[^>]*selected', select.group(1))
        assert sorted(map(int, chosen)) == sorted(linked.values_list("pk", flat=True))


def test_saving_only_the_text_keeps_the_links_and_link_changes_show_in_the_feed(
    client, api_client_for, alice, linked_postmortem
):
    page, models, _ = linked_postmortem
    client.force_login(alice)
    form = client.get(f"/docs/{page.slug}/edit/").context["form"]
    data = {name: form[name].value() for name in ("title", "body", "base_revision")}
    data["linked_models"] = [m.pk for m in page.linked_models.all()]
    data["linked_targets"] = [t.pk for t in page.linked_targets.all()]
    client.post(f"/docs/{page.slug}/edit/", {**data, "body": "What happened, and why."})
    assert linked_names(page) == (
        ["iris-classifier", "iris-regressor"],
        ["iris-production", "iris-staging"],
    )

    relinked = [models["iris-classifier"].pk, models["diabetes-progression"].pk]
    client.post(f"/docs/{page.slug}/edit/", {**data, "base_revision": 2, "linked_models": relinked,
                                             "linked_targets": []})  # fmt: skip
    assert linked_names(page) == (["diabetes-progression", "iris-classifier"], [])
    feed = api_client_for(alice).get(f"/api/v1/changes/?kind=docs_app.page&object={page.pk}")
    changes = [entry["changes"] for entry in feed.json()["results"]]
    assert {"linked_models": ["", "add diabetes-progression"]} in changes
    assert {"linked_models": ["", "delete iris-regressor"]} in changes
    assert {"linked_targets": ["", "delete iris-production, iris-staging"]} in changes


def test_an_api_patch_of_the_body_alone_keeps_title_tags_links_and_parent(
    api_client_for, alice, linked_postmortem
):
    page, _, _ = linked_postmortem
    parent = services.create_page(alice, title="Postmortems")
    services.save_page(alice, page, base_revision=1, tags=["postmortem"], parent=parent)
    api = api_client_for(alice)
    url = f"/api/v1/pages/{page.slug}/"
    response = api.patch(url, {"body": "Root cause: a bad config.", "base_revision": 2},
                         format="json")  # fmt: skip
    assert response.status_code == 200, response.content
    page = Page.objects.get(pk=page.pk)
    assert page.body == "Root cause: a bad config."
    assert (page.title, page.tags, page.parent) == ("Postmortem: iris 500s", ["postmortem"], parent)
    assert linked_names(page) == (
        ["iris-classifier", "iris-regressor"],
        ["iris-production", "iris-staging"],
    )
    assert page.revisions.first().title == "Postmortem: iris 500s"
    # The optimistic lock still holds: the same base revision again is a conflict.
    stale = api.patch(url, {"body": "x", "base_revision": 2}, format="json")
    assert stale.status_code == 409
    # And `parent: null` is a change sent: the page moves to the top.
    moved = api.patch(url, {"parent": None, "base_revision": 3}, format="json")
    assert moved.json()["parent"] is None and Page.objects.get(pk=page.pk).body.startswith("Root")


def test_a_link_to_a_missing_page_offers_writers_to_create_it(client, alice, carol):
    from docs_app import services as docs

    docs.create_page(alice, title="Iris runbook", body="See [[on-call-rota]] and [[iris-runbook]].")
    client.force_login(alice)
    html = client.get("/docs/iris-runbook/").content.decode()
    offer = html.split('data-testid="missing-pages"')[1].split("</div>")[0]
    assert 'href="/docs/new/?slug=on-call-rota"' in offer and "iris-runbook" not in offer
    form = client.get("/docs/new/?slug=on-call-rota").context["form"]
    assert (form["slug"].value(), form["title"].value()) == ("on-call-rota", "On call rota")
    client.force_login(carol)  # a viewer may not write: no offer
    assert 'data-testid="missing-pages"' not in client.get("/docs/iris-runbook/").content.decode()
