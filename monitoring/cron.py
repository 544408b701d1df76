"""Cron schedules of heartbeat checks: "when is the job next due after this moment?".

Five standard fields (minute hour day-of-month month day-of-week; names like `mon-fri` and
steps like `*/15` allowed), read with Celery's own cron field parser, evaluated in the
check's time zone. As in cron, when both day fields are restricted a day matching either
one runs the job."""

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from celery.schedules import crontab_parser

FIELDS = (("minute", 60, 0), ("hour", 24, 0), ("day of month", 31, 1), ("month", 12, 1),
          ("day of week", 7, 0))  # fmt: skip
SEARCH_DAYS = 366 * 4 + 1  # "29 2 *" runs once in four years


def problem(expression: str, timezone: str) -> dict[str, str]:
    """{field: what is wrong} for a cron expression and a time zone name; {} when fine."""
    errors = {}
    try:
        parse(expression)
    except ValueError as exc:
        errors["cron_expression"] = str(exc)
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        errors["cron_timezone"] = f"Unknown time zone {timezone!r}; e.g. Europe/Paris or UTC."
    return errors


def parse(expression: str) -> list[set[int]]:
    parts = (expression or "").split()
    if len(parts) != len(FIELDS):
        raise ValueError("Five fields: minute hour day-of-month month day-of-week, e.g. 0 2 * * *.")
    sets = []
    for part, (name, size, start) in zip(parts, FIELDS, strict=True):
        try:
            values = crontab_parser(size, start).parse(part)
        except Exception as exc:  # the parser raises ValueError and its own ParseException
            raise ValueError(f"The {name} field {part!r} is not valid: {exc}") from exc
        sets.append({0 if (name == "day of week" and v == 7) else v for v in values})
    return sets


def next_run(expression: str, timezone: str, after: datetime) -> datetime:
    """The first time the schedule fires strictly after `after` (aware), as an aware UTC
    datetime."""
    minutes, hours, days, months, weekdays = parse(expression)
    parts = expression.split()
    any_day, any_weekday = parts[2] == "*", parts[4] == "*"
    zone = ZoneInfo(timezone)
    local = after.astimezone(zone).replace(second=0, microsecond=0, tzinfo=None)
    for offset in range(SEARCH_DAYS):
        day = (local + timedelta(days=offset)).date()
        in_month = day.day in days
        on_weekday = (day.weekday() + 1) % 7 in weekdays
        if day.month not in months or not _day_matches(in_month, on_weekday, any_day,
                                                        any_weekday):  # fmt: skip
            continue
        for hour in sorted(hours):
            for minute in sorted(minutes):
                candidate = datetime(day.year, day.month, day.day, hour, minute, tzinfo=zone)
                if candidate > after:
                    return candidate.astimezone(ZoneInfo("UTC"))
    raise ValueError(f"{expression!r} never fires.")


def _day_matches(in_month, on_weekday, any_day, any_weekday) -> bool:
    if any_day and any_weekday:
        return True
    if any_day:
        return on_weekday
    if any_weekday:
        return in_month
    return in_month or on_weekday
