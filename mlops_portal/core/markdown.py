"""Markdown to safe HTML, one renderer for the whole portal: descriptions, comments and
notes (`render_markdown`, the `markdown` template filter) and documentation pages
(docs_app.rendering builds its parser with `new_parser` and adds wiki links, model
references and heading anchors).

CommonMark + tables + strikethrough; raw HTML in the source is shown as text, never passed
through. Fenced code is highlighted by Pygments (CSS classes, see
static/docs_app/pygments.css); `mermaid` fences stay escaped source in `<pre class="mermaid">`
for mermaid.js; table cell alignment becomes a Bootstrap class (text-start/center/end): no
style attributes. The HTML is then cleaned by nh3 with one explicit allowlist of tags,
attributes, classes and URL schemes, so a mistake in a rule cannot let active content
through."""

import re

import nh3
from markdown_it import MarkdownIt
from markdown_it.common.utils import escapeHtml, unescapeAll
from markdown_it.rules_core import StateCore
from markdown_it.token import Token
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import get_lexer_by_name
from pygments.token import STANDARD_TYPES
from pygments.util import ClassNotFound

MAX_HIGHLIGHT_CHARS = 100_000  # bigger code blocks are shown plain: Pygments is not linear
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


def render_markdown(text: str) -> str:
    """Return sanitised HTML for `text`; raw HTML and script URLs never survive."""
    return sanitise(_descriptions.render(text or ""))


def new_parser() -> MarkdownIt:
    """A markdown-it parser with the portal's syntax and renderers (docs_app adds its own
    rules to one of these)."""
    parser = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    parser.enable(["table", "strikethrough"])
    parser.core.ruler.push("table_alignment", table_alignment)
    parser.add_render_rule("fence", render_fence)
    return parser


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


def table_alignment(state: StateCore) -> None:
    """markdown-it writes `style="text-align:…"`; style attributes are not allowed, classes are."""
    for token in state.tokens:
        if token.type in ("th_open", "td_open") and "style" in token.attrs:
            align = str(token.attrs.pop("style")).removeprefix("text-align:")
            if align in ALIGN_CLASSES:
                token.attrSet("class", ALIGN_CLASSES[align])


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


_descriptions = new_parser()
