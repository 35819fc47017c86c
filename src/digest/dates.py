"""Dates as readers say them: a day, a range, a window (the words come from settings.words).

Apart from render.py so the web archive can title an edition without importing the render stack.
"""

from __future__ import annotations

import calendar
import datetime as dt

from .config import Words
from .models import Window

# Month names come from settings.words, not the locale-dependent calendar.month_name: same bytes everywhere.
ENGLISH = Words()


def long_date(day: dt.date, words: Words = ENGLISH) -> str:
    """Format a day as "January 5, 2020" (words.date): month names from `words`, no leading zero."""
    return words.date.format(month=words.months[day.month - 1], day=day.day, year=day.year)


def date_range(start: dt.date, end: dt.date | None = None, words: Words = ENGLISH) -> str:
    """Format a range as "January 1 – 15, 2020", "January 25 – February 5, 2020" or "December 20, 2019 – ..."."""
    if end is None or end == start:
        return long_date(start, words)
    if start.year != end.year:
        return f"{long_date(start, words)} – {long_date(end, words)}"
    month, end_month = words.months[start.month - 1], words.months[end.month - 1]
    phrase = words.range_in_year if start.month != end.month else words.range_in_month
    return phrase.format(month=month, day=start.day, end_month=end_month, end_day=end.day, year=end.year)


def period_title(window: Window, words: Words = ENGLISH) -> str:
    """The window as readers say it: "January 2020" for a whole calendar month, else its date range."""
    last = calendar.monthrange(window.since.year, window.since.month)[1]
    whole_month = window.since.day == 1 and window.until == window.since.replace(day=last)
    if whole_month:
        return words.month_year.format(month=words.months[window.since.month - 1], year=window.since.year)
    return date_range(window.since, window.until, words)
