"""Calendar: an event item as an RFC 5545 .ics file, and its "Add to calendar" links (Google Calendar, the .ics URL).

An event's dates in the content are calendar days (times are free text in `when`), so every event is an
all-day event: DTSTART/DTEND as VALUE=DATE with the exclusive end day RFC 5545 asks for. The archive
keeps an `EventRecord` per event item (in the build's manifest, then in the ledger), so the .ics files
can be written again from the ledger alone.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

from .config import Settings
from .errors import ConfigError
from .models import Item

GOOGLE_TEMPLATE = "https://calendar.google.com/calendar/render"


@dataclass(frozen=True)
class EventRecord:
    """What a calendar file needs of an event item, kept as JSON in the manifest and the ledger."""

    id: str
    title: str
    start: dt.date
    end: dt.date  # the last day (inclusive), as the content says it; the .ics gets the day after
    place: str
    when: str  # the source's own words ("Webinar: March 3, 1 – 2pm EST")
    url: str
    summary: str  # plain text

    @property
    def end_exclusive(self) -> dt.date:
        return self.end + dt.timedelta(days=1)

    def to_json(self) -> dict[str, str]:
        data = asdict(self)
        data["start"], data["end"] = self.start.isoformat(), self.end.isoformat()
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EventRecord:
        return cls(
            id=str(data["id"]),
            title=str(data["title"]),
            start=dt.date.fromisoformat(str(data["start"])),
            end=dt.date.fromisoformat(str(data["end"])),
            place=str(data.get("place", "")),
            when=str(data.get("when", "")),
            url=str(data.get("url", "")),
            summary=str(data.get("summary", "")),
        )


def event_record(item: Item, *, online: str = "Online") -> EventRecord | None:
    """The calendar facts of an event item; None for an item that is not an event."""
    event = item.event
    if event is None:
        return None
    return EventRecord(
        id=item.id,
        title=item.title,
        start=event.start,
        end=max(event.end or event.start, event.start),
        place=event.place or (online if event.online else ""),
        when=event.when.strip(),
        url=item.url,
        summary=item.summary_text.strip(),
    )


def ics_url(settings: Settings, item_id: str) -> str:
    """Where the archive publishes an event's .ics (setting `ics_url`); "" when the setting is empty."""
    if not settings.ics_url:
        return ""
    try:
        return settings.ics_url.format(base_url=settings.base_url.rstrip("/"), id=item_id)
    except (KeyError, IndexError, ValueError) as exc:
        where = settings.config_file or "settings"
        raise ConfigError(f"{where}: 'ics_url' cannot be filled ({exc!r}); use only {{base_url}} and {{id}}") from None


def google_url(event: EventRecord) -> str:
    """A Google Calendar "add event" link (action=TEMPLATE) for the all-day event."""
    params = {
        "action": "TEMPLATE",
        "text": event.title,
        "dates": f"{event.start:%Y%m%d}/{event.end_exclusive:%Y%m%d}",
        "details": event.url,
        "location": event.place,
    }
    return f"{GOOGLE_TEMPLATE}?{urlencode({k: v for k, v in params.items() if v}, safe='/:')}"


@dataclass(frozen=True)
class CalendarLinks:
    """An event item's "Add to calendar" links, as the templates use them."""

    google: str
    ics: str  # "" when no .ics URL is configured


def calendar_links(item: Item, settings: Settings) -> CalendarLinks | None:
    record = event_record(item, online=settings.words.online)
    if record is None:
        return None
    return CalendarLinks(google=google_url(record), ics=ics_url(settings, item.id))


def _description(event: EventRecord) -> str:
    return "\n\n".join(part for part in (event.when, event.summary, event.url) if part)


def to_ics(event: EventRecord, settings: Settings, *, stamp: dt.datetime) -> bytes:
    """The event as a VCALENDAR (CRLF, lines folded at 75 octets by icalendar).

    `stamp` (DTSTAMP) comes from the data, such as the time its edition was sent, never from the clock,
    so writing the file again gives the same bytes. The UID is the item id at the site's host: stable
    across editions and regenerations, so a calendar updates the event instead of adding it twice.
    """
    import icalendar

    host = urlsplit(settings.base_url).hostname or settings.slug
    calendar = icalendar.Calendar()
    calendar.add("prodid", f"-//{settings.name}//digest//{settings.language.upper()}")
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("method", "PUBLISH")
    vevent = icalendar.Event()
    vevent.add("uid", f"{event.id}@{host}")
    vevent.add("dtstamp", stamp.astimezone(dt.UTC))
    vevent.add("dtstart", event.start)
    vevent.add("dtend", event.end_exclusive)
    vevent.add("summary", event.title)
    if event.place:
        vevent.add("location", event.place)
    if event.url:
        vevent.add("url", event.url)
    description = _description(event)
    if description:
        vevent.add("description", description)
    vevent.add("transp", "TRANSPARENT")  # an all-day meeting announcement should not block the day
    calendar.add_component(vevent)
    data: bytes = calendar.to_ical()
    return data
