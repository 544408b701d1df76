"""Markdown to safe HTML: CommonMark (+ tables) rendered, then sanitised with nh3."""

import nh3
from markdown_it import MarkdownIt

_renderer = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table")

ALLOWED_URL_SCHEMES = {"http", "https", "mailto"}


def render_markdown(text: str) -> str:
    """Return sanitised HTML for `text`; raw HTML and script URLs never survive."""
    html = _renderer.render(text or "")
    return nh3.clean(html, url_schemes=ALLOWED_URL_SCHEMES, link_rel="noopener noreferrer")
