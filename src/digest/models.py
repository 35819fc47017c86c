"""Typed, frozen models shared by every stage: content items, the selection window, the selection."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from .errors import Problem

KINDS = ("news", "report", "event", "webinar", "meeting", "workshop", "job")
EVENT_KINDS = frozenset({"event", "webinar", "meeting", "workshop"})


@dataclass(frozen=True)
class Action:
    """A call to action of an item ("Register Now"); `url` is absolute once links are built."""

    label: str
    url: str


@dataclass(frozen=True)
class EventInfo:
    """When and where an event happens, as the content states it.

    `start`/`end` are calendar dates (for selection); `when` is the human text kept exactly as the
    source wrote it ("Webinar: September 27, 1 – 2pm EST"), since times and zones on the page are
    free text and we invent no facts.
    """

    start: dt.date
    end: dt.date | None = None
    when: str = ""
    place: str = ""
    online: bool = False


@dataclass(frozen=True)
class Item:
    """One content item: one Markdown file in content/."""

    id: str
    title: str
    date: dt.date  # posted date
    kind: str
    summary_html: str  # sanitised HTML from the Markdown body
    summary_text: str  # plain text of the summary, for the text part
    url: str  # absolute link (base_url + slug, or the item's own `url`)
    source: Path
    subtitle: str = ""
    tags: tuple[str, ...] = ()
    status: str = "published"  # published | draft
    featured: bool = False
    truncated: bool = False  # the summary was cut off ("...") on the source page
    event: EventInfo | None = None
    actions: tuple[Action, ...] = ()
    image: str = ""
    image_alt: str = ""

    @property
    def is_event(self) -> bool:
        return self.event is not None


@dataclass(frozen=True)
class Window:
    """An inclusive range of calendar dates in a time zone, with the label used in edition ids."""

    since: dt.date
    until: dt.date
    tz: str
    label: str  # "2020-01" for a month, "2020-01-01..2020-01-15" otherwise

    def contains(self, day: dt.date) -> bool:
        return self.since <= day <= self.until


@dataclass(frozen=True)
class Selected:
    """An item with the reason it was chosen: "posted" in the window or an "upcoming" event."""

    item: Item
    reason: str  # "posted" | "upcoming"


@dataclass(frozen=True)
class Selection:
    window: Window
    posted: tuple[Item, ...]
    upcoming: tuple[Item, ...]
    upcoming_until: dt.date
    filters: dict[str, object] = field(default_factory=dict)

    @property
    def items(self) -> tuple[Selected, ...]:
        return tuple(Selected(i, "posted") for i in self.posted) + tuple(Selected(i, "upcoming") for i in self.upcoming)

    def __len__(self) -> int:
        return len(self.posted) + len(self.upcoming)


@dataclass(frozen=True)
class LoadResult:
    """A content folder read: its items and the warnings (unknown fields and the like)."""

    items: tuple[Item, ...]  # newest first, then by id; drafts included (status "draft")
    warnings: tuple[Problem, ...]


class Recipient(NamedTuple):
    """One row of the recipients file. `line` is its line number there (0 for --to).

    A named tuple, immutable as the frozen models here: a send of a million makes two million (reading the
    list, then personalising), and a tuple is made in half the time of a frozen dataclass."""

    email: str
    name: str = ""
    line: int = 0
    fields: tuple[tuple[str, str], ...] = ()  # other CSV columns, in file order


@dataclass(frozen=True)
class Rendered:
    """What rendering produces once per edition. html/text carry recipient placeholders."""

    subject: str
    preheader: str
    mjml: str
    html: str  # final: compiled, inlined, with doctype
    text: str


@dataclass(frozen=True)
class Build:
    """A build folder read back: the artifact every send reads (render once, send many)."""

    folder: Path
    edition: str  # "<slug>-<window label>", e.g. "mayors-innovation-2020-01"
    newsletter: str  # settings.slug
    period: str  # window label
    content_hash: str  # sha256 over subject, html and text
    subject: str
    preheader: str
    html: str
    text: str
    sender: str
    reply_to: str
    manifest: dict[str, object]
    list_id: str = ""  # RFC 2919 List-Id of every message; "" in a build made before it was recorded
