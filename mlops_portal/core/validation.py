"""Input checks shared by the services of every app."""

import re
from datetime import UTC, datetime

from django.core.exceptions import ValidationError
from django.utils import timezone
from django.utils.dateparse import parse_datetime

TAG_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,49}$")


def field_errors(instance, exclude=()) -> dict[str, list[str]]:
    """The model field errors of `instance` (uniqueness and constraints are the caller's)."""
    try:
        instance.full_clean(exclude=exclude, validate_unique=False, validate_constraints=False)
    except ValidationError as exc:
        return dict(exc.message_dict)
    return {}


def clean_tags(names, errors) -> list[str]:
    """Return the tag names normalised and sorted; note an error for names that are not tags."""
    cleaned = sorted({name.strip().lower() for name in names or () if name and name.strip()})
    bad = [name for name in cleaned if not TAG_PATTERN.match(name)]
    if bad:
        errors.setdefault("tags", []).append(
            f"Tags are short lowercase words (letters, digits, . _ -): {', '.join(bad)}."
        )
    return cleaned


def parse_utc_datetime(value: str) -> datetime:
    """`value`, an ISO 8601 date-time, as an aware datetime in UTC; a naive one is read in
    the current time zone. Raises ValueError when it is not one, or when it lies outside
    the years 1 to 9999 once in UTC.

    Converting before the database sees it matters: Python accepts offsets up to ±23:59,
    PostgreSQL only up to ±15:59, so "2026-01-01T00:00:00-19:33" used as-is is a 500."""
    parsed = parse_datetime(value.strip())  # ValueError for a well-formed "month 13"
    if parsed is None:
        raise ValueError(f"{value!r} is not an ISO 8601 date-time.")
    if timezone.is_naive(parsed):
        parsed = parsed.replace(tzinfo=timezone.get_current_timezone())
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"{value!r} is out of range.") from None
