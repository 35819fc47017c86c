"""Choose: which items go into an edition — those posted in the date window, plus upcoming events."""

from __future__ import annotations

import calendar
import datetime as dt
import re
import zoneinfo
from collections.abc import Iterable
from dataclasses import dataclass

from .errors import EmptySelection, UsageError
from .models import Item, Selection, Window

PERIODS = ("previous-month", "this-month", "last-N-days")
_LAST_N = re.compile(r"^last-(\d{1,4})-days$")


@dataclass(frozen=True)
class SelectionOptions:
    """The shared selection flags of every command that selects, as given (None = not given)."""

    since: dt.date | None = None
    until: dt.date | None = None
    month: str | None = None
    period: str | None = None
    today: dt.date | None = None
    tz: str | None = None
    kinds: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    limit: int | None = None
    upcoming_days: int | None = None


def today_in(tz: str) -> dt.date:
    """Today's date where the newsletter lives, not where the server runs (a cron job at 00:30 UTC
    on the 1st is still the previous month in Chicago)."""
    return dt.datetime.now(zoneinfo.ZoneInfo(tz)).date()


def _month_window(year: int, month: int, tz: str) -> Window:
    last = calendar.monthrange(year, month)[1]
    return Window(dt.date(year, month, 1), dt.date(year, month, last), tz, f"{year:04d}-{month:02d}")


def parse_month(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"(\d{4})-(\d{2})", text.strip())
    if not match or not 1 <= int(match.group(2)) <= 12:
        raise UsageError(f"--month: '{text}' is not a month; use YYYY-MM, e.g. 2020-01")
    return int(match.group(1)), int(match.group(2))


def resolve_window(opts: SelectionOptions, tz: str) -> Window:
    """Turn --since/--until, --month or --period (relative to --today) into one inclusive window."""
    ranged = opts.since is not None or opts.until is not None
    chosen = [
        name
        for name, given in (("--month", opts.month), ("--period", opts.period), ("--since/--until", ranged))
        if given
    ]
    if len(chosen) > 1:
        raise UsageError(f"{' and '.join(chosen)} cannot be combined; choose one way to give the window")
    today = opts.today or today_in(tz)
    if opts.month:
        return _month_window(*parse_month(opts.month), tz)
    if ranged:
        until = opts.until or today
        since = opts.since or dt.date(1970, 1, 1)
        if since > until:
            raise UsageError(f"--since {since} is after --until {until}; swap them")
        return Window(since, until, tz, f"{since.isoformat()}..{until.isoformat()}")
    period = opts.period or "previous-month"
    if period == "previous-month":
        first = today.replace(day=1) - dt.timedelta(days=1)
        return _month_window(first.year, first.month, tz)
    if period == "this-month":
        return _month_window(today.year, today.month, tz)
    match = _LAST_N.match(period)
    if match and int(match.group(1)) >= 1:
        since = today - dt.timedelta(days=int(match.group(1)) - 1)
        return Window(since, today, tz, f"{since.isoformat()}..{today.isoformat()}")
    raise UsageError(
        f"--period: '{period}' is not a period; use previous-month, this-month or last-N-days (e.g. last-30-days)"
    )


def select(items: Iterable[Item], window: Window, opts: SelectionOptions, upcoming_days: int) -> Selection:
    """Posted-in-window items (newest first) and events starting within `upcoming_days` after it.

    Drafts are never selected. --kind and --tag filter both groups; --limit caps the posted group
    only, so a short digest still announces the next meeting.
    """
    kinds = {k.lower() for k in opts.kinds}
    tags = {t.lower() for t in opts.tags}
    horizon = window.until + dt.timedelta(days=upcoming_days)
    posted: list[Item] = []
    upcoming: list[Item] = []
    for item in items:
        if item.status != "published":
            continue
        if kinds and item.kind not in kinds:
            continue
        if tags and not tags & {t.lower() for t in item.tags}:
            continue
        if window.contains(item.date):
            posted.append(item)
        elif item.event is not None and window.until < item.event.start <= horizon and item.date <= window.until:
            # Announced before the window ended, happening soon after it: "upcoming".
            upcoming.append(item)
    posted.sort(key=lambda i: (i.date, i.id), reverse=True)
    upcoming.sort(key=lambda i: (i.event.start if i.event else i.date, i.id))
    if opts.limit is not None:
        posted = posted[: opts.limit]
    filters: dict[str, object] = {}
    if kinds:
        filters["kind"] = sorted(kinds)
    if tags:
        filters["tag"] = sorted(tags)
    if opts.limit is not None:
        filters["limit"] = opts.limit
    return Selection(window, tuple(posted), tuple(upcoming), horizon, filters)


def require_items(selection: Selection, items: Iterable[Item] = ()) -> Selection:
    """An empty selection is a normal outcome, but never an empty email; the hint comes from `items`' dates."""
    if not len(selection):
        w = selection.window
        dates = sorted(item.date for item in items if item.status == "published")
        if dates:
            first, last = dates[0].isoformat(), dates[-1].isoformat()
            hint = f"the content is dated {first} .. {last}: try --month {last[:7]}, or --since {first} for all of it"
        else:
            hint = "the content folder has no published items yet"
        raise EmptySelection(
            f"no items posted {w.since.isoformat()} .. {w.until.isoformat()} ({w.tz}) and no events starting "
            f"by {selection.upcoming_until.isoformat()}; nothing to build. {hint[0].upper()}{hint[1:]}"
        )
    return selection
