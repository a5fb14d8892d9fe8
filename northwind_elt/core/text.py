"""How counts, numbers and durations read wherever a person sees them (`nw status`, `nw ads
status`, messages): one format everywhere, so a figure reads the same in every view."""

from __future__ import annotations

import datetime as dt

# Largest first: a span is said in the largest unit that divides it ("7 days", not "168 hours").
_UNITS = (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1))


def plural(count: int, word: str, words: str | None = None) -> str:
    """'1 day', '2 days', '1,234 rows'; `words` where adding an s is wrong."""
    return f"{count:,} {word if count == 1 else words or word + 's'}"


def number(value: int | None) -> str:
    """A count with thousands separators; nothing for an unknown one."""
    return "" if value is None else f"{value:,}"


def seconds(value: float | None) -> str:
    """Seconds with one decimal and thousands separators; a quick step is '<0.1', never a 0-second one."""
    if value is None:
        return ""
    return "<0.1" if 0 < value < 0.05 else f"{value:,.1f}"


def duration(span: dt.timedelta) -> str:
    """'7 days', '36 hours', '90 minutes': never Python's '7 days, 0:00:00'."""
    total = round(span.total_seconds())
    for unit, size in _UNITS:
        if total and total % size == 0:
            return plural(total // size, unit)
    return plural(total, "second")
