"""The API's JSON parser: the standard library's, with the limits a public endpoint needs.

- Nesting deeper than JSON_MAX_DEPTH is refused before parsing. Python's decoder recurses
  once per level, so a body of 1,000 brackets raised RecursionError (a 500); the depth is
  measured here by counting brackets, without recursion.
- Text must be storable: a lone surrogate ("\\ud800" is valid JSON but not Unicode text) or a
  NUL character (PostgreSQL text cannot hold one) is a 400 naming the field.
- The body must be UTF-8, and NaN or Infinity are not JSON.
- A body over DATA_UPLOAD_MAX_MEMORY_SIZE is refused (413) without reading the rest.

Every answer is a 400: `{"detail": …}` for a body that cannot be parsed at all, `{"field":
[…]}` for text that parsed but cannot be stored."""

import json
import re
from itertools import accumulate

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from rest_framework.exceptions import ParseError, ValidationError
from rest_framework.parsers import JSONParser
from rest_framework.utils.json import strict_constant

JSON_MAX_DEPTH = 64

# A JSON string, so that brackets inside strings are not counted as nesting.
STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
BRACKETS = re.compile(r"[\[\]{}]")
NOT_TEXT = re.compile("[\ud800-\udfff\x00]")
NOT_TEXT_MESSAGE = "Text must be valid Unicode without NUL characters."


class SafeJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        raw = read_limited(stream)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ParseError("JSON parse error - the body is not UTF-8 text.") from None
        try:
            data = loads(text)
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}") from None
        check_text(data)
        return data


def read_limited(stream) -> bytes:
    """The body, refused (413) as soon as it passes DATA_UPLOAD_MAX_MEMORY_SIZE."""
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE  # None: no limit, as in Django
    if stream is None:
        return b""
    raw = stream.read() if limit is None else stream.read(limit + 1)
    if limit is not None and len(raw) > limit:
        raise RequestDataTooBig(
            f"The body is larger than {limit} bytes (DATA_UPLOAD_MAX_MEMORY_SIZE)."
        )
    return raw


def loads(text: str):
    """Parse JSON text, refusing deep nesting and NaN/Infinity with a ValueError."""
    if json_depth(text) > JSON_MAX_DEPTH:
        raise ValueError(f"nested deeper than {JSON_MAX_DEPTH} levels.")
    return json.loads(text, parse_constant=strict_constant)


def json_depth(text: str) -> int:
    """How deeply `text`'s arrays and objects nest (0 for a scalar). Unbalanced brackets
    are the decoder's to report; only the depth matters here."""
    brackets = BRACKETS.findall(STRING.sub("", text))
    steps = (1 if bracket in "[{" else -1 for bracket in brackets)
    return max(accumulate(steps, initial=0))


def check_text(data) -> None:
    """Refuse strings (keys too) that are not storable text, naming the top-level field."""
    if isinstance(data, dict):
        errors = {
            str(name) if not has_bad_text(name) else "non_field_errors": [NOT_TEXT_MESSAGE]
            for name, value in data.items()
            if has_bad_text(name) or has_bad_text(value)
        }
    else:
        errors = {"non_field_errors": [NOT_TEXT_MESSAGE]} if has_bad_text(data) else {}
    if errors:
        raise ValidationError(errors)


def has_bad_text(value) -> bool:
    """True when any string in `value` (keys included) holds a lone surrogate or a NUL.
    A loop over a stack, not recursion: the depth is bounded, but need not be trusted."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if NOT_TEXT.search(item):
                return True
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False
