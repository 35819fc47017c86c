"""Choose: date windows, periods relative to a frozen today, upcoming events, filters."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from digest.errors import EmptySelection, UsageError
from digest.models import EventInfo, Item
from digest.selection import SelectionOptions, require_items, resolve_window, select, today_in

TZ = "America/Chicago"


def item(id: str, date: str, kind: str = "news", event: tuple[str, str] | None = None, **kw: object) -> Item:
    ev = EventInfo(dt.date.fromisoformat(event[0]), dt.date.fromisoformat(event[1])) if event else None
    return Item(
        id=id,
        title=id.title(),
        date=dt.date.fromisoformat(date),
        kind=kind,
        summary_html="<p>x</p>",
        summary_text="x",
        url=f"https://example.org/{id}",
        source=Path(f"{id}.md"),
        event=ev,
        **kw,  # type: ignore[arg-type]
    )


ITEMS = [
    item("jan-news", "2020-01-28"),
    item("jan-meeting", "2020-01-21", "meeting", ("2020-08-20", "2020-08-22"), tags=("meetings",)),
    item("dec-workshop", "2019-12-19", "workshop", ("2020-04-02", "2020-04-03")),
    item("feb-report", "2020-02-05", "report"),
    item("draft", "2020-01-10", status="draft"),
    item("late-event", "2020-02-10", "event", ("2020-02-20", "2020-02-20")),
]


def test_month_window_is_inclusive_calendar_month() -> None:
    """--month gives the first to the last day of that month, labelled YYYY-MM."""
    w = resolve_window(SelectionOptions(month="2020-02"), TZ)
    assert (w.since, w.until, w.label) == (dt.date(2020, 2, 1), dt.date(2020, 2, 29), "2020-02")


def test_previous_month_relative_to_pinned_today() -> None:
    """--period previous-month uses --today, across a year boundary."""
    w = resolve_window(SelectionOptions(period="previous-month", today=dt.date(2021, 1, 3)), TZ)
    assert (w.since, w.until, w.label) == (dt.date(2020, 12, 1), dt.date(2020, 12, 31), "2020-12")


def test_this_month_and_last_n_days() -> None:
    """this-month covers the whole month of today; last-7-days ends today and spans 7 days."""
    today = dt.date(2020, 3, 17)
    w = resolve_window(SelectionOptions(period="this-month", today=today), TZ)
    assert (w.since, w.until) == (dt.date(2020, 3, 1), dt.date(2020, 3, 31))
    w = resolve_window(SelectionOptions(period="last-7-days", today=today), TZ)
    assert (w.since, w.until, w.label) == (dt.date(2020, 3, 11), today, "2020-03-11..2020-03-17")


def test_default_period_is_previous_month() -> None:
    """No window flags means the previous month, the monthly digest's usual run."""
    w = resolve_window(SelectionOptions(today=dt.date(2020, 2, 14)), TZ)
    assert w.label == "2020-01"


def test_since_until_inclusive() -> None:
    """--since/--until are inclusive calendar dates."""
    w = resolve_window(SelectionOptions(since=dt.date(2020, 1, 21), until=dt.date(2020, 1, 28)), TZ)
    sel = select(ITEMS, w, SelectionOptions(), 0)
    assert [i.id for i in sel.posted] == ["jan-news", "jan-meeting"]


def test_today_depends_on_time_zone() -> None:
    """'Today' is computed in the newsletter's zone: Kiritimati and Midway are a day apart or more."""
    assert today_in("Pacific/Kiritimati") != today_in("Pacific/Midway")


@pytest.mark.parametrize(
    "opts, message",
    [
        (SelectionOptions(month="2020-13"), "not a month"),
        (SelectionOptions(period="fortnight"), "not a period"),
        (SelectionOptions(month="2020-01", period="this-month"), "cannot be combined"),
        (SelectionOptions(since=dt.date(2020, 2, 1), until=dt.date(2020, 1, 1)), "swap them"),
    ],
)
def test_bad_windows_are_usage_errors(opts: SelectionOptions, message: str) -> None:
    """Impossible or conflicting window flags say what is wrong and how to fix it."""
    with pytest.raises(UsageError, match=message):
        resolve_window(opts, TZ)


def test_month_selects_posted_and_upcoming_events() -> None:
    """January 2020: two posted items; the April workshop is upcoming within 90 days; drafts never."""
    w = resolve_window(SelectionOptions(month="2020-01"), TZ)
    sel = select(ITEMS, w, SelectionOptions(), 90)
    assert [i.id for i in sel.posted] == ["jan-news", "jan-meeting"]
    assert [i.id for i in sel.upcoming] == ["dec-workshop"]
    assert [s.reason for s in sel.items] == ["posted", "posted", "upcoming"]


def test_upcoming_horizon_and_not_yet_announced() -> None:
    """Events beyond the horizon, or announced after the window, are not upcoming."""
    w = resolve_window(SelectionOptions(month="2020-01"), TZ)
    sel = select(ITEMS, w, SelectionOptions(), 30)
    assert sel.upcoming == ()
    assert "late-event" not in [i.id for i in select(ITEMS, w, SelectionOptions(), 365).upcoming]


def test_kind_tag_and_limit_filters() -> None:
    """--kind and --tag filter; --limit caps posted items only."""
    w = resolve_window(SelectionOptions(since=dt.date(2019, 1, 1), until=dt.date(2020, 12, 31)), TZ)
    assert [i.id for i in select(ITEMS, w, SelectionOptions(kinds=("report",)), 0).posted] == ["feb-report"]
    assert [i.id for i in select(ITEMS, w, SelectionOptions(tags=("Meetings",)), 0).posted] == ["jan-meeting"]
    limited = select(ITEMS, w, SelectionOptions(limit=2), 0)
    assert [i.id for i in limited.posted] == ["late-event", "feb-report"]


def test_empty_selection_has_its_own_error() -> None:
    """An empty window is EmptySelection (exit 3), never an empty email."""
    w = resolve_window(SelectionOptions(month="2021-05"), TZ)
    with pytest.raises(EmptySelection) as err:
        require_items(select(ITEMS, w, SelectionOptions(), 90))
    assert err.value.exit_code == 3
    assert "2021-05-01" in str(err.value)
