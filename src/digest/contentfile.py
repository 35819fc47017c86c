"""Content file: one feed entry -> the front matter and Markdown body of the content file it becomes.

The rules an import applies to every entry live here: the posted day in the newsletter's time zone,
the kind from categories, the id from the link, the https image with its alt text, the summary, the
event block of a calendar entry, and the `source` block for provenance.
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import yaml

from .config import FeedSettings, Settings
from .entries import Entry, Feed
from .models import KINDS

try:
    from yaml import CSafeDumper as _Dumper
except ImportError:  # PyYAML built without libyaml: the same text, only slower
    from yaml import SafeDumper as _Dumper  # type: ignore[assignment]

_SLUG_CHARS = re.compile(r"[^a-z0-9]+")
_SLUG_MAX = 60


@dataclass(frozen=True)
class Skipped:
    entry: str  # the entry's guid (else link), or its title when it has neither
    reason: str


@dataclass
class Document:
    """A content file to be: its front matter (in writing order) and Markdown body."""

    front: dict[str, Any]
    body: str

    @property
    def name(self) -> str:
        return f"{self.front['date'].isoformat()}-{self.front['id']}.md"

    def text(self) -> str:
        dumped = yaml.dump(self.front, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=10_000)
        return f"---\n{dumped}---\n\n{self.body}\n" if self.body else f"---\n{dumped}---\n"


def render(settings: Settings, rule: FeedSettings, feed: Feed, entry: Entry, first_seen: dt.date) -> Document | Skipped:
    """An entry -> the content file it becomes, or why it is skipped."""
    from .summaries import first_image, summary

    label = entry.key or entry.title or entry.link
    if entry.problem:
        return Skipped(label, entry.problem)
    if not entry.title:
        return Skipped(label, "no title; the entry is skipped")
    zone = zoneinfo.ZoneInfo(settings.timezone)
    if entry.posted is not None:
        day = local_date(entry.posted, zone)
    elif entry.event is not None:
        day = first_seen  # a calendar event without CREATED: posted the day it was first imported
    else:
        return Skipped(label, "no date (no published or updated time); the entry is skipped")
    front: dict[str, Any] = {"title": entry.title, "date": day, "kind": _kind(rule, feed, entry), "id": _slug(entry)}
    tags = [category.lower() for category in entry.categories if _category_kind(rule, category) is None]
    if tags:
        front["tags"] = list(dict.fromkeys(tags))
    if entry.link.lower().startswith(("https://", "http://")):
        front["url"] = entry.link
    image, alt = entry.image, entry.image_alt
    if not image:
        image, alt = first_image(entry.html, entry.base)
    if image:
        # An image without alt text is described by the entry's title, never left for a screen reader to spell out.
        front["image"], front["image_alt"] = image, alt or entry.title
    body, truncated = summary(entry.html, entry.base, settings.summary_words)
    if truncated:
        front["truncated"] = True
    if entry.event is not None:
        front["event"] = _event(entry, zone, settings)
    front["source"] = {"feed": rule.url, "id": entry.key} if entry.key else {"feed": rule.url}
    return Document(front, body)


def local_date(moment: dt.datetime, zone: zoneinfo.ZoneInfo) -> dt.date:
    """The newsletter's calendar day of a moment; a time without a zone is read as the newsletter's own clock."""
    return (moment.astimezone(zone) if moment.tzinfo is not None else moment).date()


def _event(entry: Entry, zone: zoneinfo.ZoneInfo, settings: Settings) -> dict[str, Any]:
    assert entry.event is not None
    start, end = entry.event.start, entry.event.end
    event: dict[str, Any] = {}
    if isinstance(start, dt.datetime):
        start = start.astimezone(zone) if start.tzinfo is not None else start
        end = end.astimezone(zone) if isinstance(end, dt.datetime) and end.tzinfo is not None else end
        event["start"] = start.date()
        if isinstance(end, dt.datetime) and end.date() > start.date():
            event["end"] = end.date()
        event["when"] = _when(start, end if isinstance(end, dt.datetime) else None, settings)
    else:
        event["start"] = start
        if end is not None and end > start:
            event["end"] = end if not isinstance(end, dt.datetime) else end.date()
    if entry.event.place:
        event["place"] = entry.event.place
    return event


def _when(start: dt.datetime, end: dt.datetime | None, settings: Settings) -> str:
    """Date and times of a timed event in the newsletter's zone, e.g. "March 5, 2026, 14:00 – 15:30 CST"."""
    words = settings.words

    def day(moment: dt.datetime) -> str:
        return words.say("date", month=words.months[moment.month - 1], day=moment.day, year=moment.year)

    zone = start.tzname() or ""
    text = f"{day(start)}, {start:%H:%M}"
    if end is not None and end.date() != start.date():
        text += f" – {day(end)}, {end:%H:%M}"
    elif end is not None and end != start:
        text += f" – {end:%H:%M}"
    return f"{text} {zone}".strip()


def _category_kind(rule: FeedSettings, category: str) -> str | None:
    """The kind a category stands for: the feed's `kinds` rule, else a kind it names ("Webinars"); None for a topic."""
    word = category.strip().lower()
    rules = {name.lower(): kind for name, kind in rule.kinds}
    if word in rules:
        return rules[word]
    return next((candidate for candidate in (word, word.removesuffix("s")) if candidate in KINDS), None)


def _kind(rule: FeedSettings, feed: Feed, entry: Entry) -> str:
    """The first category that stands for a kind, else the feed's kind, else news (event for a calendar)."""
    for category in entry.categories:
        kind = _category_kind(rule, category)
        if kind is not None:
            return kind
    if rule.kind:
        return rule.kind
    return "event" if feed.format == "ical" else "news"


def _slug(entry: Entry) -> str:
    """The entry's id: the last part of its link when that is a readable slug (WordPress), else its title."""
    last = urlsplit(entry.link).path.rstrip("/").rsplit("/", 1)[-1].lower() if entry.link else ""
    last = re.sub(r"\.(html?|php|aspx?)$", "", last)
    if re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)+", last) or re.fullmatch(r"[a-z][a-z0-9]{2,}", last):
        slug = last
    else:
        slug = _SLUG_CHARS.sub("-", entry.title.lower().replace("’", "").replace("'", "")).strip("-")
    slug = slug[:_SLUG_MAX].rstrip("-") or "item"
    if entry.event is not None and "/" in entry.key:  # an occurrence of a recurring event
        start = entry.event.start
        slug = f"{slug}-{(start.date() if isinstance(start, dt.datetime) else start).isoformat()}"
    return slug
