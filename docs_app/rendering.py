"""Documentation pages: Markdown to safe HTML, with a table of contents and the links made.

CommonMark + tables + strikethrough; raw HTML in the source is shown as text, never passed
through. Additions, all made on markdown-it tokens so nothing in code spans or blocks is
touched and every string reaches the HTML through markdown-it's escaping:

- `[[page-slug]]`, `[[page-slug|label]]`: wiki links (an inline rule);
- `model:churn`, `model:churn@7`: model references (a core rule over text tokens: the
  inline `text` rule swallows "see model" before any inline rule could look at it);
- headings get unique slug ids and a "¶" anchor; levels 1-4 make the table of contents;
- fenced code is highlighted by Pygments (CSS classes, see static/docs_app/pygments.css);
  `mermaid` fences stay escaped source in `<pre class="mermaid">` for mermaid.js;
- table cell alignment becomes a Bootstrap class (text-start/center/end): no style attributes.

The HTML is then cleaned by nh3 with an explicit allowlist of tags, attributes, classes and
URL schemes, so a mistake in a rule above still cannot let active content through."""

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import nh3
from django.utils.text import slugify
from markdown_it import MarkdownIt
from markdown_it.common.utils import escapeHtml, unescapeAll
from markdown_it.rules_core import StateCore
from markdown_it.rules_inline import StateInline
from markdown_it.token import Token
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import get_lexer_by_name
from pygments.token import STANDARD_TYPES
from pygments.util import ClassNotFound

ResolvePage = Callable[[str], tuple[str, str] | None]
ResolveModel = Callable[[str, int | None], str | None]

TOC_MAX_LEVEL = 4
MAX_HIGHLIGHT_CHARS = 100_000  # bigger code blocks are shown plain: Pygments is not linear
ANCHOR_MAX_LENGTH = 80

SLUG_RE = re.compile(r"[-a-zA-Z0-9_]+")  # what Django's SlugField accepts
WIKI_LINK_RE = re.compile(r"\[\[([^\[\]|\n]{1,200})(?:\|([^\[\]\n]{0,200}))?\]\]")
# Model names as registry's model_name_validator has them; `@7` picks a version.
MODEL_REF_RE = re.compile(
    r"(?<![\w:/.@-])model:([a-z0-9](?:[a-z0-9-]{0,98}[a-z0-9])?)(?:@(\d{1,9}))?(?![\w@-])"
)
LANGUAGE_RE = re.compile(r"[A-Za-z0-9_+#.-]{1,40}")
ALIGN_CLASSES = {"left": "text-start", "center": "text-center", "right": "text-end"}

ALLOWED_URL_SCHEMES = {"http", "https", "mailto"}
ALLOWED_TAGS = {
    *("p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "strong", "em", "del", "s"),
    *("code", "pre", "blockquote", "ul", "ol", "li", "a", "img"),
    *("table", "thead", "tbody", "tr", "th", "td", "span", "div", "sup", "sub"),
}
ALLOWED_ATTRIBUTES = {
    "a": {"href", "title", "class"},
    "img": {"src", "alt", "title"},
    "ol": {"start"},
    **{f"h{level}": {"id"} for level in range(1, 7)},
    "span": {"class", "title"},
    **{tag: {"class"} for tag in ("code", "pre", "div", "th", "td")},
}
PYGMENTS_CLASSES = frozenset(name for name in STANDARD_TYPES.values() if name)
ALLOWED_CLASSES = {
    "a": {"anchor"},
    "span": PYGMENTS_CLASSES | {"missing-link"},
    "div": {"highlight"},
    "pre": {"mermaid"},
    "th": set(ALIGN_CLASSES.values()),
    "td": set(ALIGN_CLASSES.values()),
}

_formatter = HtmlFormatter(cssclass="highlight")


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


def sanitise(html: str) -> str:
    return nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        attribute_filter=_filter_attribute,
        url_schemes=ALLOWED_URL_SCHEMES,
        link_rel="noopener noreferrer",
    )


def _filter_attribute(tag: str, attribute: str, value: str) -> str | None:
    # nh3 always lets `lang` and `title` through on every tag; hold them to the allowlist too
    # (`rel` on links is nh3's own link_rel, added before this filter runs).
    if attribute not in ALLOWED_ATTRIBUTES.get(tag, ()) and (tag, attribute) != ("a", "rel"):
        return None
    if attribute != "class":
        return value
    allowed = ALLOWED_CLASSES.get(tag, set())
    kept = [
        name
        for name in value.split()
        if name in allowed or (tag == "code" and _is_language_class(name))
    ]
    return " ".join(kept) or None


def _is_language_class(name: str) -> bool:
    prefix, _, language = name.partition("-")
    return prefix == "language" and LANGUAGE_RE.fullmatch(language) is not None


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


def table_alignment(state: StateCore) -> None:
    """markdown-it writes `style="text-align:…"`; style attributes are not allowed, classes are."""
    for token in state.tokens:
        if token.type in ("th_open", "td_open") and "style" in token.attrs:
            align = str(token.attrs.pop("style")).removeprefix("text-align:")
            if align in ALIGN_CLASSES:
                token.attrSet("class", ALIGN_CLASSES[align])


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


# --- code blocks --------------------------------------------------------------------------


def render_fence(self, tokens: list[Token], index: int, options, env) -> str:
    token = tokens[index]
    info = unescapeAll(token.info).strip() if token.info else ""
    language = info.split(maxsplit=1)[0] if info else ""
    code = token.content
    if language.lower() == "mermaid":
        return f'<pre class="mermaid">{escapeHtml(code)}</pre>\n'
    if language and len(code) <= MAX_HIGHLIGHT_CHARS:
        try:
            lexer = get_lexer_by_name(language)
        except ClassNotFound:
            pass
        else:
            return highlight(code, lexer, _formatter)
    css = f' class="language-{language}"' if LANGUAGE_RE.fullmatch(language) else ""
    return f"<pre><code{css}>{escapeHtml(code)}</code></pre>\n"


_markdown = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
_markdown.enable(["table", "strikethrough"])
_markdown.inline.ruler.before("link", "wiki_link", wiki_link)
_markdown.core.ruler.before("text_join", "model_references", model_references)
_markdown.core.ruler.push("heading_anchors", heading_anchors)
_markdown.core.ruler.push("table_alignment", table_alignment)
_markdown.add_render_rule("fence", render_fence)
