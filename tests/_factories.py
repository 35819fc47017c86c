"""Test factories: Items, Selections and Settings built in code, deterministic, for any stage's tests.

Import them from a test module as `from _factories import make_item, make_selection, ...` (pytest
puts tests/ on sys.path because tests/ is not a package).
"""

from __future__ import annotations

import calendar
import dataclasses
import datetime as dt
import html
import json
import os
import random
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from digest.config import Settings
from digest.deliver.base import Personal
from digest.models import Action, Build, EventInfo, Item, Recipient, Selection, Window

TZ = "America/Chicago"
FRENCH_MONTHS = [
    "janvier", "février", "mars", "avril", "mai", "juin",
    "juillet", "août", "septembre", "octobre", "novembre", "décembre",
]  # fmt: skip
# A whole [words] table in French (docs/TEMPLATES.md): every fixed word of the templates replaced.
FRENCH_WORDS = f"""
[words]
months = {json.dumps(FRENCH_MONTHS, ensure_ascii=False)}
date = "{{day}} {{month}} {{year}}"
month_year = "{{month}} {{year}}"
range_in_month = "{{day}} – {{end_day}} {{month}} {{year}}"
range_in_year = "{{day}} {{month}} – {{end_day}} {{end_month}} {{year}}"
new_items_one = "{{count}} nouvel article de {{period}}"
new_items_other = "{{count}} nouveaux articles de {{period}}"
upcoming_events_one = " et {{count}} événement à venir"
upcoming_events_other = " et {{count}} événements à venir"
view_in_browser = "Voir dans le navigateur"
view_in_browser_text = "Voir cet e-mail dans le navigateur"
when = "Quand"
where = "Où"
posted = "Publié le {{date}}"
online = "En ligne"
more_section = "Autres"
subscribed = "Vous recevez cet e-mail car vous êtes abonné aux nouvelles de {{name}}."
reply = "Répondez-y pour nous écrire."
unsubscribe = "Se désabonner"
and_more_one = "et {{count}} autre"
and_more_other = "et {{count}} autres"
"""

POSTAL_ADDRESS = "Mayors Innovation Project, 1180 Observatory Drive, Madison, WI 53706, USA"


def make_settings(root: Path | None = None, **changes: Any) -> Settings:
    """Settings as a real newsletter has them (postal address, reply-to), rooted at `root` (default: cwd)."""
    base = Settings(
        root=root or Path.cwd(),
        name="Mayors Innovation Project",
        slug="mayors-innovation",
        sender="Mayors Innovation Project <news@example.org>",
        postal_address=POSTAL_ADDRESS,
        reply_to="Mayors Innovation Project <info@example.org>",
    )
    return dataclasses.replace(base, **changes)


def month_window(year: int = 2020, month: int = 1, tz: str = TZ) -> Window:
    """The calendar month as selection.py labels it ("2020-01")."""
    last = calendar.monthrange(year, month)[1]
    return Window(dt.date(year, month, 1), dt.date(year, month, last), tz, f"{year:04d}-{month:02d}")


def make_item(
    id: str = "an-item",
    *,
    title: str | None = None,
    date: dt.date = dt.date(2020, 1, 15),
    kind: str = "news",
    summary: str = "A short summary of the item.",
    url: str | None = None,
    actions: Iterable[tuple[str, str | None]] = (),
    **changes: Any,
) -> Item:
    """An Item whose summary_html/summary_text come from one plain `summary`; action url None = the item's url."""
    link = url or f"https://example.org/news/{id}"
    return Item(
        id=id,
        title=title if title is not None else id.replace("-", " ").capitalize(),
        date=date,
        kind=kind,
        summary_html=f"<p>{html.escape(summary, quote=False)}</p>",
        summary_text=summary,
        url=link,
        source=Path(f"content/{date.isoformat()}-{id}.md"),
        actions=tuple(Action(label, action_url or link) for label, action_url in actions),
        **changes,
    )


def make_event(
    id: str = "an-event",
    *,
    start: dt.date = dt.date(2020, 3, 5),
    end: dt.date | None = None,
    when: str = "",
    place: str = "",
    online: bool = False,
    kind: str = "event",
    **changes: Any,
) -> Item:
    """An event Item (kind event by default) with its EventInfo."""
    return make_item(id, kind=kind, event=EventInfo(start, end, when, place, online), **changes)


def make_selection(
    posted: Iterable[Item] = (),
    upcoming: Iterable[Item] = (),
    *,
    window: Window | None = None,
    upcoming_days: int = 60,
) -> Selection:
    """A Selection over `window` (default January 2020) holding exactly the given items."""
    window = window or month_window()
    return Selection(
        window=window,
        posted=tuple(posted),
        upcoming=tuple(upcoming),
        upcoming_until=window.until + dt.timedelta(days=upcoming_days),
    )


def golden_selection() -> Selection:
    """The fixed January 2020 edition behind the golden snapshots: every section and template branch once."""
    posted = (
        make_item(
            "new-mayors-cohort-2020",
            title="New Mayors Cohort 2020",
            date=dt.date(2020, 1, 28),
            featured=True,
            summary="Grounded in our commitment to inclusion across race, gender & economic status, this cohort "
            "helps mayors in their first term build capacity.",
            actions=[("Read More", None)],
        ),
        make_item(
            "from-seed-to-root",
            title="From Seed to Root",
            subtitle="Early-Stage Strategies for Community Wealth Building",
            date=dt.date(2020, 1, 22),
            featured=True,
            kind="report",
            summary="The U.S. is among the most unequal societies in the world; city leaders can change that.",
            actions=[("Download the report", "https://example.org/files/seed-to-root.pdf")],
        ),
        make_item(
            "women-mayors-network",
            title="Women Mayors’ Network <kickoff>",
            subtitle="Kickoff at the Winter 2020 Policy Meeting in DC",
            date=dt.date(2020, 1, 14),
            summary="We are thrilled to announce the Women Mayors' Network kickoff meeting — café included.",
            image="https://example.org/images/women-mayors.jpg",
            image_alt="Six mayors on a stage",
        ),
        make_event(
            "winter-2020-policy-meeting",
            title="Winter 2020 Policy Meeting",
            date=dt.date(2020, 1, 6),
            kind="meeting",
            start=dt.date(2020, 1, 24),
            end=dt.date(2020, 1, 25),
            when="Friday, January 24 - Saturday, January 25",
            place="Washington, DC",
            summary="We invite all mayors to join us in Washington, DC.",
            actions=[("Register Now", "https://example.org/register?event=winter-2020&src=mail")],
        ),
    )
    upcoming = (
        make_event(
            "summer-2020-annual-meeting",
            title="Summer 2020 Annual Meeting",
            date=dt.date(2019, 12, 20),
            kind="meeting",
            start=dt.date(2020, 2, 20),
            end=dt.date(2020, 2, 22),
            when="February 20 - 22, Tacoma, WA",
            place="Tacoma, WA",
            summary="Hosted by Mayor Woodards: mark your calendars!",
            actions=[("Learn more & register here.", None)],
        ),
        make_event(
            "data-driven-fire-department",
            title="Webinar: The Data-Driven Fire Department",
            date=dt.date(2019, 12, 2),
            kind="webinar",
            start=dt.date(2020, 3, 3),
            when="Webinar: March 3, 1 – 2pm EST",
            online=True,
            summary="How cities use data to prevent fires.",
            actions=[("Register Now", "https://example.org/webinars/fire")],
        ),
    )
    return make_selection(posted, upcoming)


_WORDS = (  # noqa: SIM905 - a sentence reads better than 36 quoted words
    "mayors cities housing water climate transit equity budget workforce data resilience community wealth "
    "policy infrastructure affordability health immigrant freight parking food energy local leaders residents "
    "neighborhoods partners innovation ordinance wages grants pilots cohort meeting research practice"
).split()
_PLACES = ("Washington, DC", "Tacoma, WA", "Detroit, MI", "Des Moines, IA", "Boston, MA", "Pittsburgh, PA")


def _sentence(rng: random.Random, words: int) -> str:
    text = " ".join(rng.choice(_WORDS) for _ in range(words))
    return text[0].upper() + text[1:] + "."


def _summary(rng: random.Random, size: int) -> str:
    parts: list[str] = []
    while sum(len(p) + 1 for p in parts) < size:
        parts.append(_sentence(rng, rng.randint(8, 16)))
    return " ".join(parts)


def realistic_items(
    n: int, *, window: Window | None = None, seed: int = 47
) -> tuple[tuple[Item, ...], tuple[Item, ...]]:
    """(posted, upcoming) with `n` items in all, shaped like the shipped content but a little heavier.

    Summaries are about 300 characters, 60% have a subtitle, one in ten is featured, a quarter are
    events (half of those upcoming after the window), most have one action and some two.
    """
    window = window or month_window()
    rng = random.Random(seed)
    posted: list[Item] = []
    upcoming: list[Item] = []
    days = (window.until - window.since).days + 1
    for i in range(n):
        id = f"item-{i:02d}-" + "-".join(rng.choice(_WORDS) for _ in range(3))
        title = " ".join(w.capitalize() for w in (rng.choice(_WORDS) for _ in range(rng.randint(3, 8))))
        fields: dict[str, Any] = {
            "title": title,
            "date": window.until - dt.timedelta(days=i % days),
            "summary": _summary(rng, rng.randint(260, 340)),
            "featured": i % 10 == 0,
            "subtitle": _sentence(rng, rng.randint(4, 9))[:-1] if rng.random() < 0.6 else "",
            "tags": (rng.choice(_WORDS),),
        }
        actions: list[tuple[str, str | None]] = [("Read More", None)] if rng.random() < 0.85 else []
        if rng.random() < 0.2:
            actions.append(("Download the report", f"https://example.org/files/{id}.pdf"))
        if i % 4 == 3:
            start = window.until + dt.timedelta(days=rng.randint(3, 50))
            end = start + dt.timedelta(days=rng.randint(0, 2))
            place = rng.choice(_PLACES)
            event = make_event(
                id,
                kind=rng.choice(("event", "meeting", "workshop", "webinar")),
                start=start,
                end=end,
                when=f"{start:%B} {start.day} - {end.day}, {place}",
                place=place,
                actions=[*actions, ("Register Now", f"https://example.org/register/{id}")],
                **fields,
            )
            (upcoming if i % 8 == 3 else posted).append(event)
        else:
            posted.append(make_item(id, kind=rng.choice(("news", "report", "news", "job")), actions=actions, **fields))
    return tuple(posted), tuple(upcoming)


def realistic_selection(n: int, *, window: Window | None = None) -> Selection:
    """A Selection of `n` realistic_items over `window` (default January 2020)."""
    window = window or month_window()
    posted, upcoming = realistic_items(n, window=window)
    return make_selection(posted, upcoming, window=window)


# --- delivery ---------------------------------------------------------------------------------------


def make_build(
    html: str = '<p>Hi %%name%%</p><a href="%%unsubscribe_url%%">Unsubscribe</a>',
    text: str = "Hi %%name:text%%\nUnsubscribe: %%unsubscribe_url:text%%\n",
    **changes: Any,
) -> Build:
    """A Build as read back from a build folder, for delivery tests that need no real render."""
    fields: dict[str, Any] = {
        "folder": Path("build"),
        "edition": "mayors-innovation-2020-01",
        "newsletter": "mayors-innovation",
        "period": "2020-01",
        "content_hash": "sha256:abc",
        "subject": "January digest",
        "preheader": "",
        "html": html,
        "text": text,
        "sender": "Mayors Innovation Project <news@example.org>",
        "reply_to": "",
        "manifest": {},
    }
    fields.update(changes)
    return Build(**fields)


def personal(address: str, name: str = "", *, url: str | None = None, one_click: bool = True) -> Personal:
    """A recipient with its placeholder values and (by default) its one-click unsubscribe headers."""
    url = url or f"https://example.org/u?e={address}"
    values = {"name": name, "email": address, "unsubscribe_url": url}
    headers = {"List-Unsubscribe": f"<{url}>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}
    return Personal(Recipient(address, name), values, headers if one_click else {})


def fresh_python(
    code: str, *, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`code` run by a new interpreter (imports, gc and fork decisions start from scratch), output captured
    through pipes; `env` is added to this process's environment."""
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env={**os.environ, **(env or {})},
    )


def copy_newsletter(folder: Path) -> Path:
    """A working copy of the repository's newsletter (digest.toml and the 47 content files) in `folder`."""
    import shutil

    repo = Path(__file__).resolve().parent.parent
    shutil.copytree(repo / "content", folder / "content")
    shutil.copy(repo / "digest.toml", folder / "digest.toml")
    return folder


def send_edition(build: Build, backend: Any, recipients: Any, *, ledger: Any, personalize: Any, **options: Any) -> Any:
    """send.prepare_send + send.execute_send with no confirmation between them (what `--yes` does);
    `options` are prepare_send's (test, dry_run, unknown, ...) and execute_send's `progress`."""
    from digest.send import execute_send, prepare_send

    progress = options.pop("progress", None)
    plan = prepare_send(build, backend, recipients, ledger=ledger, **options)
    return execute_send(plan, personalize=personalize, progress=progress)
