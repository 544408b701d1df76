"""Input checks shared by the services of every app."""

import re

from django.core.exceptions import ValidationError

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
