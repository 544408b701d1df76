"""Small helpers people reach for: copying the one-time token secret, dark mode that
stays chosen (and still passes axe-core), "/" to jump to search."""

import pytest
from playwright.sync_api import expect

from mlops_portal.core.roles import Role
from tests.browser.test_every_page import AXE_JS, RUN_AXE
from tests.factories import UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def browser_context_args(browser_context_args):
    return {**browser_context_args, "permissions": ["clipboard-read", "clipboard-write"]}


def test_copy_the_secret_switch_to_dark_mode_and_jump_to_search(page, live_server, log_in):
    page.context.add_init_script(path=str(AXE_JS))
    log_in(UserFactory(username="bob", role=Role.MLOPS_ENGINEER))

    page.goto(f"{live_server.url}/tokens/")
    page.fill("#id_name", "laptop")
    page.get_by_role("button", name="Create token").click()
    secret = page.locator("#token-secret").inner_text().strip()
    page.get_by_test_id("copy-secret").click()
    expect(page.get_by_test_id("copy-secret")).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == secret

    toggle = page.get_by_role("button", name="Dark mode")
    toggle.click()
    assert page.evaluate("document.documentElement.dataset.bsTheme") == "dark"
    expect(toggle).to_have_attribute("aria-pressed", "true")
    for path in ("/", "/models/", "/tokens/"):
        page.goto(live_server.url + path)  # the choice stays, applied before paint
        assert page.evaluate("document.documentElement.dataset.bsTheme") == "dark"
        assert page.evaluate(RUN_AXE, []) == [], path

    page.locator("main").click()
    page.keyboard.press("/")
    expect(page.locator("#site-search")).to_be_focused()
    page.keyboard.type("iris")
    expect(page.locator("#site-search")).to_have_value("iris")
