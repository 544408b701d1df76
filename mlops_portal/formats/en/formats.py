"""One way to write a moment on every page: "2 Dec 2026, 14:05 UTC" (a date alone:
"2 Dec 2026"). Django's English default ("Dec. 2, 2026, 2:05 p.m.") is replaced for the whole
portal here (FORMAT_MODULE_PATH); relative times ("3 hours ago") carry it as their title."""

DATE_FORMAT = "j M Y"
DATETIME_FORMAT = "j M Y, H:i T"
TIME_FORMAT = "H:i"
SHORT_DATE_FORMAT = "j M Y"
SHORT_DATETIME_FORMAT = "j M Y, H:i T"
MONTH_DAY_FORMAT = "j M"
YEAR_MONTH_FORMAT = "M Y"
