"""Writing documentation in a real browser: a page with a Mermaid diagram and an image,
an edit, the diff, and restoring the first revision. No request leaves the portal."""

import pytest
from playwright.sync_api import expect

from mlops_portal.core.roles import Role
from tests.docs.test_pages import PNG
from tests.factories import UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
# Mermaid lays a diagram out in the browser, after the preview's own round trip: on a
# loaded 2-core machine that outlasted Playwright's 5 s default once (as Plotly's charts
# did in test_csp.py).
DRAWN = 20_000

FIRST = """## Serving path
```mermaid
graph LR
  Client --> Endpoint --> Model
```
"""


def test_write_a_page_with_a_diagram_and_an_image_edit_diff_and_restore(
    page, live_server, log_in, screenshot, tmp_path
):
    requests = []
    page.on("request", lambda request: requests.append(request.url))
    alice = UserFactory(username="alice", role=Role.DATA_SCIENTIST)
    image = tmp_path / "dot.png"
    image.write_bytes(PNG)

    log_in(alice)
    page.get_by_role("link", name="Docs", exact=True).click()
    page.get_by_role("link", name="New page", exact=True).click()
    page.fill("#id_title", "Iris serving")
    page.fill("#id_body", FIRST)
    expect(page.get_by_test_id("preview").locator("pre.mermaid svg")).to_be_visible(timeout=DRAWN)
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("heading", name="Iris serving")).to_be_visible()
    expect(page.locator("pre.mermaid svg")).to_be_visible(timeout=DRAWN)  # rendered in the browser

    page.set_input_files("input[name=file]", str(image))
    page.get_by_role("button", name="Attach image").click()
    markdown_image = page.locator("aside code", has_text="![dot.png]").inner_text()

    page.get_by_role("link", name="Edit").click()
    page.fill("#id_body", FIRST + "\nThe endpoint:\n\n" + markdown_image + "\n")
    page.fill("#id_summary", "Add a picture")
    page.get_by_role("button", name="Save").click()
    rendered_image = page.get_by_test_id("page-body").locator("img")
    expect(rendered_image).to_be_visible()
    assert page.evaluate("img => img.naturalWidth", rendered_image.element_handle()) == 1

    page.get_by_role("link", name="Revisions").click()
    page.get_by_role("button", name="Compare selected").click()
    expect(page.get_by_test_id("diff")).to_contain_text("The endpoint:")
    page.go_back()
    page.get_by_role("button", name="Restore").click()
    expect(page.get_by_text("Revision 1 restored as a new revision.")).to_be_visible()
    expect(page.get_by_test_id("page-body").locator("img")).to_have_count(0)
    expect(page.locator("pre.mermaid svg")).to_be_visible(timeout=DRAWN)
    screenshot("restored")

    outside = [url for url in requests if not url.startswith(live_server.url)]
    assert outside == []


def test_saving_a_page_keeps_its_links_and_links_change_only_when_asked(
    page, live_server, log_in, screenshot
):
    from deployments import services as registry
    from deployments.models import RegisteredModel, Target
    from docs_app import services as docs

    alice = UserFactory(username="alice", role=Role.DATA_SCIENTIST)
    bob = UserFactory(username="bob", role=Role.MLOPS_ENGINEER)
    for name in ("diabetes-progression", "iris-classifier", "iris-regressor"):
        registry.create_model(alice, name=name, team="ml")
    for name in ("iris-production", "iris-staging", "churn-staging"):
        registry.create_target(bob, name=name, environment="staging")
    postmortem = docs.create_page(
        alice,
        title="Postmortem: iris 500s",
        body="What happened.",
        linked_models=list(RegisteredModel.objects.filter(name__startswith="iris-")),
        linked_targets=list(Target.objects.filter(name__startswith="iris-")),
    )
    linked = page.get_by_role("heading", name="Linked", exact=True).locator(
        "xpath=following-sibling::ul[1]"
    )

    log_in(alice)
    page.goto(f"{live_server.url}{postmortem.get_absolute_url()}")
    page.get_by_role("link", name="Edit").click()
    models = page.get_by_label("Linked models")
    targets = page.get_by_label("Linked targets")
    expect(models).to_have_values([str(m.pk) for m in postmortem.linked_models.order_by("name")])
    page.fill("#id_body", "What happened, and why.")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_test_id("page-body")).to_contain_text("and why")
    expect(linked.locator("li")).to_have_text(
        ["model iris-classifier", "model iris-regressor", "target iris-production",
         "target iris-staging"]
    )  # fmt: skip

    page.get_by_role("link", name="Edit").click()
    # As a person does it: Ctrl-click adds or removes one option, keeping the others.
    models.locator("option", has_text="diabetes-progression").click(modifiers=["Control"])
    models.locator("option", has_text="iris-regressor").click(modifiers=["Control"])
    targets.locator("option", has_text="iris-production").click(modifiers=["Control"])
    screenshot("edit-form")
    page.get_by_role("button", name="Save").click()
    expect(linked.locator("li")).to_have_text(
        ["model diabetes-progression", "model iris-classifier", "target iris-staging"]
    )
    screenshot("relinked")
    assert sorted(postmortem.linked_models.values_list("name", flat=True)) == [
        "diabetes-progression", "iris-classifier",
    ]  # fmt: skip
