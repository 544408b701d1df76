"""Typed readers for settings that come from environment variables.

Each helper reads one variable once; a value that cannot be parsed stops start-up with a
message naming the variable, so a typo never turns into a silent default.
"""

import os
from datetime import time

from django.core.exceptions import ImproperlyConfigured

TRUE_VALUES = {"1", "true", "yes", "on"}
FALSE_VALUES = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in TRUE_VALUES:
        return True
    if value in FALSE_VALUES:
        return False
    raise ImproperlyConfigured(f"{name} must be true/false (1/0, yes/no), not {raw!r}")


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, not {raw!r}") from None


def env_fraction(name: str, default: float) -> float:
    """A share between 0 and 1: "0.1", or "10%"."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    text = raw.strip()
    try:
        value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise ImproperlyConfigured(
            f"{name} must be a share from 0 to 1 (or 0% to 100%), not {raw!r}"
        )
    return value


def env_time(name: str, default: str) -> time:
    raw = os.environ.get(name) or default
    try:
        return time.fromisoformat(raw.strip())
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a time of day as HH:MM, not {raw!r}") from None


RATE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def env_rate(name: str, default: str) -> str | None:
    """A request rate as DRF writes it, `<count>/<second|minute|hour|day>` (only the unit's
    first letter counts); `off` or empty: no limit (None)."""
    raw = os.environ.get(name, default).strip()
    if raw.lower() in ("", "off"):
        return None
    count, _, unit = raw.partition("/")
    if not count.isdigit() or int(count) < 1 or unit[:1].lower() not in RATE_UNITS:
        raise ImproperlyConfigured(
            f"{name} must be a rate like 600/minute (second, minute, hour, day) or off, not {raw!r}"
        )
    return raw


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_secret(name: str, *, required: bool, fallback: str) -> str:
    """Return the secret, or `fallback` when it is not required; refuse to start without it."""
    value = os.environ.get(name, "")
    if value:
        return value
    if required:
        raise ImproperlyConfigured(f"{name} must be set when DJANGO_DEBUG is off")
    return fallback
