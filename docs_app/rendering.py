"""Documentation pages: Markdown to safe HTML, with a table of contents and the links made.

The portal's one renderer (mlops_portal.core.markdown: CommonMark + tables + strikethrough,
Pygments, mermaid fences, table alignment classes, and the one nh3 allowlist) with three
additions, all made on markdown-it tokens so nothing in code spans or blocks is touched and
every string reaches the HTML through markdown-it's escaping:

- `[[page-slug]]`, `[[page-slug|label]]`: wiki links (an inline rule);
- `model:churn`, `model:churn@7`: model references (a core rule over text tokens: the
  inline `text` rule swallows "see model" before any inline rule could look at it);
- headings get unique slug ids and a "¶" anchor; levels 1-4 make the table of contents."""

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from django.utils.text import slugify
from markdown_it.rules_core import StateCore
from markdown_it.rules_inline import StateInline
from markdown_it.token import Token

from mlops_portal.core.markdown import new_parser, sanitise

__all__ = ["Rendered", "TocEntry", "render_page", "sanitise"]

ResolvePage = Callable[[str], tuple[str, str] | None]
ResolveModel = Callable[[str, int | None], str | None]

TOC_MAX_LEVEL = 4
ANCHOR_MAX_LENGTH = 80

SLUG_RE = re.compile(r"[-a-zA-Z0-9_]+")  # what Django's SlugField accepts
WIKI_LINK_RE = re.compile(r"\[\[([^\[\]|\n]{1,200})(?:\|([^\[\]\n]{0,200}))?\]\]")
# Model names as registry's model_name_validator has them; `@7` picks a version.
MODEL_REF_RE = re.compile(
    r"(?<![\w:/.@-])model:([a-z0-9](?:[a-z0-9-]{0,98}[a-z0-9])?)(?:@(\d{1,9}))?(?![\w@-])"
)


@dataclass(frozen=True)
class TocEntry:
    level: int
    text: str
    anchor: str


@dataclass(frozen=True)
class Rendered:
    html: str
    toc: list[TocEntry]
    links: list[str]  # page slugs linked with [[...]], resolved or not, first use first
    model_refs: list[tuple[str, int | None]]  # (name, version or None), resolved or not
    missing_pages: list[str] = field(default_factory=list)  # linked slugs with no page


def no_page(slug: str) -> tuple[str, str] | None:
    return None


def no_model(name: str, version: int | None) -> str | None:
    return None


def render_page(
    text: str, *, resolve_page: ResolvePage = no_page, resolve_model: ResolveModel = no_model
) -> Rendered:
    """Render a documentation page. `resolve_page(slug)` answers (title, url) or None;
    `resolve_model(name, version)` answers a url or None. Each is asked once per target."""
    context = _Context(resolve_page, resolve_model)
    html = _markdown.render(text or "", {"docs": context})
    return Rendered(
        html=sanitise(html),
        toc=context.toc,
        links=list(context.pages),
        model_refs=list(context.models),
        missing_pages=[slug for slug, found in context.pages.items() if found is None],
    )


@dataclass
class _Context:
    """One render's resolvers and findings, carried in markdown-it's `env`."""

    resolve_page: ResolvePage
    resolve_model: ResolveModel
    pages: dict[str, tuple[str, str] | None] = field(default_factory=dict)
    models: dict[tuple[str, int | None], str | None] = field(default_factory=dict)
    toc: list[TocEntry] = field(default_factory=list)

    def page(self, slug: str) -> tuple[str, str] | None:
        if slug not in self.pages:
            self.pages[slug] = self.resolve_page(slug)
        return self.pages[slug]

    def model(self, name: str, version: int | None) -> str | None:
        if (name, version) not in self.models:
            self.models[name, version] = self.resolve_model(name, version)
        return self.models[name, version]


# --- wiki links ---------------------------------------------------------------------------


def wiki_link(state: StateInline, silent: bool) -> bool:
    """`[[slug]]` or `[[slug|label]]`; anything else between [[ ]] is left to other rules."""
    if not state.src.startswith("[[", state.pos) or state.linkLevel > 0:
        return False
    match = WIKI_LINK_RE.match(state.src, state.pos, state.posMax)
    slug = match[1].strip() if match else ""
    if not SLUG_RE.fullmatch(slug):
        return False
    if not silent:
        label = (match[2] or "").strip()
        found = state.env["docs"].page(slug)
        if found:
            title, url = found
            state.push("link_open", "a", 1).attrs = {"href": url}
            state.push("text", "", 0).content = label or title
            state.push("link_close", "a", -1)
        else:
            span = state.push("missing_link_open", "span", 1)
            span.attrs = {"class": "missing-link", "title": f"No page named {slug}"}
            state.push("text", "", 0).content = label or slug
            state.push("missing_link_close", "span", -1)
    state.pos = match.end()
    return True


# --- model references ---------------------------------------------------------------------


def model_references(state: StateCore) -> None:
    """Link `model:name[@version]` in text outside links. Runs before text_join, so an
    escaped `model\\:name` is split across tokens and stays text."""
    context = state.env.get("docs")
    if context is None:
        return
    for block in state.tokens:
        if block.type == "inline" and block.children:
            block.children = list(_link_model_references(block.children, context))


def _link_model_references(children: list[Token], context: _Context) -> Iterator[Token]:
    inside_link = 0
    for token in children:
        if token.type in ("link_open", "missing_link_open"):
            inside_link += 1
        elif token.type in ("link_close", "missing_link_close"):
            inside_link -= 1
        if token.type != "text" or inside_link or "model:" not in token.content:
            yield token
            continue
        content, done = token.content, 0
        for match in MODEL_REF_RE.finditer(content):
            name, version = match[1], int(match[2]) if match[2] else None
            url = context.model(name, version)
            if url is None:
                continue
            if match.start() > done:
                yield _text(content[done : match.start()], token.level)
            title = f"Model {name}" + (f" version {version}" if version is not None else "")
            yield _token("link_open", "a", 1, token.level, {"href": url, "title": title})
            yield _text(match[0], token.level + 1)
            yield _token("link_close", "a", -1, token.level)
            done = match.end()
        if done < len(content):
            yield _text(content[done:], token.level)


# --- headings and tables ------------------------------------------------------------------


def heading_anchors(state: StateCore) -> None:
    """Unique ids on every heading, a "¶" link to each, and the table of contents."""
    context = state.env.get("docs")
    used: set[str] = set()
    for index, token in enumerate(state.tokens):
        if token.type != "heading_open":
            continue
        inline = state.tokens[index + 1]
        text = _plain_text(inline.children or [])
        anchor = _unique(slugify(text)[:ANCHOR_MAX_LENGTH].strip("-_") or "section", used)
        token.attrSet("id", anchor)
        level = int(token.tag[1])
        if context is not None and text and level <= TOC_MAX_LEVEL:
            context.toc.append(TocEntry(level=level, text=text, anchor=anchor))
        attrs = {"class": "anchor", "href": f"#{anchor}", "title": "Link to this section"}
        inline.children = [
            *(inline.children or []),
            _text(" ", 0),
            _token("link_open", "a", 1, 0, attrs),
            _text("¶", 1),
            _token("link_close", "a", -1, 0),
        ]


def _plain_text(children: list[Token]) -> str:
    parts = [
        token.content if token.type in ("text", "code_inline") else " "
        for token in children
        if token.type in ("text", "code_inline", "softbreak", "hardbreak")
    ]
    return " ".join("".join(parts).split())


def _unique(base: str, used: set[str]) -> str:
    candidate, number = base, 1
    while candidate in used:
        number += 1
        candidate = f"{base}-{number}"
    used.add(candidate)
    return candidate


def _token(kind: str, tag: str, nesting: int, level: int, attrs=None) -> Token:
    token = Token(kind, tag, nesting, attrs=attrs or {})
    token.level = level
    return token


def _text(content: str, level: int) -> Token:
    token = _token("text", "", 0, level)
    token.content = content
    return token


_markdown = new_parser()
_markdown.inline.ruler.before("link", "wiki_link", wiki_link)
_markdown.core.ruler.before("text_join", "model_references", model_references)
_markdown.core.ruler.push("heading_anchors", heading_anchors)
