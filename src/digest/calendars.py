"""Calendars: an iCalendar (.ics) feed -> Entries of kind event, read by icalendar and recurring-ical-events.

A one-off event is an entry however old it is (the digest announces what is upcoming); a recurring
event is an entry per occurrence between today and the upcoming-events horizon only, so a weekly
meeting is announced at its next dates, not once per week forever.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from .entries import Entry, EventTimes, Feed, plain, text_html
from .errors import FeedError


def parse(source: str, body: bytes, *, today: dt.date, horizon_days: int) -> Feed:
    import icalendar
    import recurring_ical_events

    try:
        calendar = icalendar.Calendar.from_ical(body.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise FeedError(source, "is not UTF-8 text, as iCalendar requires; the calendar is broken") from None
    except ValueError as exc:
        raise FeedError(source, f"is not a valid iCalendar file ({exc}); is it really a calendar?") from None
    name = str(calendar.get("X-WR-CALNAME", ""))
    entries: list[Entry] = []
    recurring: set[str] = set()
    for event in calendar.walk("VEVENT"):
        if "RRULE" in event or "RDATE" in event or "RECURRENCE-ID" in event:
            recurring.add(str(event.get("UID", "")))
        else:
            entries.append(_entry(event, str(event.get("UID", ""))))
    if recurring:
        until = today + dt.timedelta(days=horizon_days + 1)
        try:
            occurrences = recurring_ical_events.of(calendar).between(today, until)
        except Exception as exc:  # the library raises its own classes for each kind of bad rule
            raise FeedError(source, f"has a recurring event it cannot expand ({exc})") from None
        for event in occurrences:
            uid = str(event.get("UID", ""))
            if uid in recurring:
                # The original start names an occurrence even after it was moved.
                original = event.decoded("RECURRENCE-ID" if "RECURRENCE-ID" in event else "DTSTART")
                entries.append(_entry(event, f"{uid}/{_iso(original)}"))
    return Feed(format="ical", title=name, entries=tuple(entries))


def _entry(event: Any, key: str) -> Entry:
    title = " ".join(str(event.get("SUMMARY", "")).split())
    link = str(event.get("URL", "")).strip()
    description = str(event.get("DESCRIPTION", ""))
    problem = ""
    if str(event.get("STATUS", "")).upper() == "CANCELLED":
        problem = "the event is cancelled"
    times: EventTimes | None = None
    if "DTSTART" not in event:
        problem = problem or "no DTSTART (the event has no date)"
    else:
        times = _times(event)
    created = event.decoded("CREATED") if "CREATED" in event else None
    raw = event.get("CATEGORIES")
    categories = [str(c) for value in (raw if isinstance(raw, list) else [raw] if raw else []) for c in value.cats]
    return Entry(
        key=key or link,
        title=plain(title) if "<" in title else title,
        link=link,
        posted=created if isinstance(created, dt.datetime) else None,
        html=description if "<" in description and ">" in description else text_html(description),
        base=link,
        categories=tuple(c.strip() for c in categories if c.strip()),
        event=times,
        problem=problem,
    )


def _times(event: Any) -> EventTimes:
    start = event.decoded("DTSTART")
    end: dt.date | dt.datetime | None = None
    if "DTEND" in event:
        end = event.decoded("DTEND")
    elif "DURATION" in event:
        end = start + event.decoded("DURATION")
    if end is not None and not isinstance(start, dt.datetime):
        # An all-day DTEND is the day after the last one.
        end = end - dt.timedelta(days=1) if end > start else None
    if end == start:
        end = None
    return EventTimes(start=start, end=end, place=" ".join(str(event.get("LOCATION", "")).split()))


def _iso(value: dt.date | dt.datetime) -> str:
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        value = value.astimezone(dt.UTC)
    return value.isoformat()
