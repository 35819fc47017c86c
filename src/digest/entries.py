"""Entries: what every feed format is read into, and the text helpers the readers of feeds share."""

from __future__ import annotations

import datetime as dt
import html
import re
import warnings
from dataclasses import dataclass

import nh3

_SPACES = re.compile(r"[ \t\r\n\f]+")
# RFC 822's named zones: dateutil knows only UTC/GMT, and old RSS feeds still write "EST".
_RFC822_ZONES = {
    "EST": -5 * 3600, "EDT": -4 * 3600, "CST": -6 * 3600, "CDT": -5 * 3600,
    "MST": -7 * 3600, "MDT": -6 * 3600, "PST": -8 * 3600, "PDT": -7 * 3600,
    "UT": 0, "UTC": 0, "GMT": 0, "Z": 0,
}  # fmt: skip


@dataclass(frozen=True)
class EventTimes:
    """When and where a calendar event happens: dates for all-day events, else date-times."""

    start: dt.date | dt.datetime
    end: dt.date | dt.datetime | None  # inclusive for dates (iCalendar's exclusive DTEND is turned back a day)
    place: str = ""


@dataclass(frozen=True)
class Entry:
    """One entry of a feed as the feed states it; `key` identifies it within its feed (guid, else link)."""

    key: str
    title: str  # plain text
    link: str  # absolute, or ""
    posted: dt.datetime | None  # aware; naive when the feed gave no zone; None when it gave no date
    html: str  # the entry's HTML (or text turned into paragraphs), not yet sanitised
    base: str  # the URL relative links in `html` resolve against
    categories: tuple[str, ...] = ()
    image: str = ""
    image_alt: str = ""
    event: EventTimes | None = None
    problem: str = ""  # set when the entry must be skipped (with the reason)


@dataclass(frozen=True)
class Feed:
    """A parsed feed: its format ("rss20", "atom10", "json11", "ical", ...) and entries in feed order."""

    format: str
    title: str
    entries: tuple[Entry, ...]


def plain(text: str) -> str:
    """HTML text -> plain text: tags dropped, entities decoded, whitespace collapsed (no-break spaces kept)."""
    return _SPACES.sub(" ", html.unescape(nh3.clean(text, tags=set()))).strip(" ")


def text_html(text: str) -> str:
    """Plain text -> HTML paragraphs, so every entry's summary goes through one HTML path."""
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text.replace("\r\n", "\n")) if p.strip()]
    return "".join(f"<p>{html.escape(p).replace(chr(10), '<br>')}</p>" for p in paragraphs)


def parse_date(value: str) -> dt.datetime | None:
    """An RFC 822 or ISO 8601 date -> datetime (naive when it names no zone), or None."""
    from dateutil import parser as dateparser

    if not value.strip():
        return None
    with warnings.catch_warnings():
        # A zone name dateutil does not know is dropped with a warning: the time then reads as local.
        warnings.simplefilter("ignore")
        try:
            parsed: dt.datetime = dateparser.parse(value, tzinfos=_RFC822_ZONES)
        except (ValueError, OverflowError):
            return None
    return parsed
