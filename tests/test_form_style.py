"""One form style on every form page (django-bootstrap5): each visible field has its label
above it, is full width with Bootstrap's class, and shows its errors under it; no label
stands without its field; a chosen file that a form error loses is named for the user."""

from html.parser import HTMLParser

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from deployments import services as deploy
from docs_app import services as docs
from monitoring.services import checks
from tests.factories import iris_artifact, register_iris_version, validated

CONTROL_CLASSES = {"form-control", "form-select", "form-check-input"}


class FormAudit(HTMLParser):
    """The labels and fields inside <form method=post> elements, in document order."""

    def __init__(self):
        super().__init__()
        self.in_post_form = False
        self.items = []  # ("label", for) or ("field", id, classes)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form":
            self.in_post_form = (attrs.get("method") or "").lower() == "post"
        elif self.in_post_form and tag == "label":
            self.items.append(("label", attrs.get("for")))
        elif self.in_post_form and tag in ("input", "textarea", "select"):
            if attrs.get("type") in ("hidden", "submit"):
                return
            classes = set((attrs.get("class") or "").split())
            self.items.append(("field", attrs.get("id"), classes))

    def handle_endtag(self, tag):
        if tag == "form":
            self.in_post_form = False


def audit(html):
    found = FormAudit()
    found.feed(html)
    return found.items


@pytest.fixture
def form_pages(alice, bob):
    model = deploy.create_model(alice, name="iris", team="botany")
    version = validated(register_iris_version(alice, model))
    deploy.create_target(bob, name="iris-staging", environment="staging")
    check = checks.create_check(bob, name="iris", url="http://127.0.0.1:9/health")
    page = docs.create_page(alice, title="Iris runbook", body="# Steps")
    return [
        "/models/new/",
        "/models/iris/edit/",
        "/models/iris/versions/new/",
        f"/models/iris/versions/{version.number}/edit/",
        "/targets/new/",
        "/targets/iris-staging/edit/",
        f"/deployments/new/?model=iris&version={version.number}",
        "/checks/new/",
        f"/checks/{check.pk}/edit/",
        "/incidents/new/",
        "/docs/new/",
        f"/docs/{page.slug}/edit/",
        "/tokens/",
        "/notifications/",
        "/notifications/channels/",
    ]


def test_every_form_field_has_its_label_above_and_bootstraps_class(client, bob, form_pages):
    client.force_login(bob)
    for path in form_pages:
        response = client.get(path)
        assert response.status_code == 200, path
        items = audit(response.content.decode())
        fields = [item for item in items if item[0] == "field"]
        assert fields, path
        labelled = {item[1] for item in items if item[0] == "label"} - {None}  # a group
        field_ids = {item[1] for item in fields}
        # No label without its field (the doc form's "Base revision" was one).
        assert labelled <= field_ids, (path, labelled - field_ids)
        for index, item in enumerate(items):
            if item[0] != "field":
                continue
            assert item[2] & CONTROL_CLASSES, (path, item)
            if "form-check-input" not in item[2]:
                assert items[index - 1] == ("label", item[1]), (path, item[1])


def test_the_doc_form_has_no_base_revision_label(client, alice, form_pages):
    client.force_login(alice)
    html = client.get("/docs/iris-runbook/edit/").content.decode()
    assert "Base revision" not in html
    assert 'type="hidden" name="base_revision"' in html


def test_a_form_error_shows_under_its_field_and_names_the_file_to_choose_again(client, alice):
    deploy.create_model(alice, name="churn")
    client.force_login(alice)
    response = client.post(
        "/models/churn/versions/new/",
        {
            "artifact": SimpleUploadedFile("model.joblib", iris_artifact()[0]),
            "flavor": "sklearn",
            "sample_input": "[[1, 2",
        },
    )
    assert response.status_code == 200
    html = response.content.decode()
    field = html.index('name="sample_input"')
    error = html.index("not valid JSON")
    assert field < error < html.rindex("</form>")
    assert "Choose “model.joblib” again" in html
    assert "is-invalid" in html[html.rindex("<textarea", 0, field) : field + 200]
