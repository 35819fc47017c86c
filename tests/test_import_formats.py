"""Import, formats: RSS 1.0, Atom (xml:base), JSON Feed 1.1, iCalendar (TZID, RRULE) from files; time zones; cuts."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from pathlib import Path

import pytest
import yaml
from _feed_server import FIXTURES
from click.testing import CliRunner

from digest.cli import main
from digest.contentfile import local_date
from digest.entries import parse_date
from digest.summaries import cut, summary

CONFIG = (
    'name = "Cities"\nslug = "cities"\nsender = "Cities <news@example.org>"\n'
    'base_url = "https://cities.example.org"\ntimezone = "America/Chicago"\nsummary_words = {words}\n'
)


def imported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, *args: str, words: int = 60) -> Path:
    """Import one fixture file into a new newsletter in America/Chicago; return its content folder."""
    (tmp_path / "digest.toml").write_text(CONFIG.format(words=words), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["import", *args, str(FIXTURES / name)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return tmp_path / "content"


def read(path: Path) -> tuple[dict[str, object], str]:
    """A content file's front matter (dates as text) and body."""
    _, head, body = path.read_text(encoding="utf-8").split("---\n", 2)
    return yaml.load(head, Loader=yaml.BaseLoader), body.strip()


def test_time_zone_boundary_and_entries_without_a_zone() -> None:
    """03:00 UTC on the 1st is the previous day (and month) in Chicago; a time without a zone is local."""
    chicago = zoneinfo.ZoneInfo("America/Chicago")
    assert local_date(dt.datetime(2020, 4, 1, 3, 0, tzinfo=dt.UTC), chicago) == dt.date(2020, 3, 31)
    assert local_date(dt.datetime(2020, 4, 1, 6, 0, tzinfo=dt.UTC), chicago) == dt.date(2020, 4, 1)
    naive = parse_date("Sun, 01 Mar 2020 00:30:00")
    assert naive is not None and naive.tzinfo is None
    assert local_date(naive, chicago) == dt.date(2020, 3, 1)
    eastern = parse_date("Tue, 31 Mar 2020 23:30:00 EST")  # RFC 822's named zones are known
    assert eastern is not None and local_date(eastern, chicago) == dt.date(2020, 3, 31)


def test_atom_with_xml_base(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Relative links resolve against xml:base; an HTML title loses its tags; updated stands in for published."""
    content = imported(tmp_path, monkeypatch, "atom.xml")
    transit, body = read(content / "2020-02-15-transit-for-everyone.md")
    assert transit["title"] == "Transit for Everyone"
    assert transit["url"] == "https://blog.example.net/mayors/posts/transit-for-everyone"
    assert transit["image"] == "https://blog.example.net/mayors/posts/images/bus.jpg"
    assert transit["image_alt"] == "A city bus"
    assert "[the study](https://blog.example.net/mayors/posts/fares-study)" in body
    assert "[frequent service](https://blog.example.net/mayors/maps/network.html)" in body
    only, _ = read(content / "2020-01-31-only-updated.md")  # 23:30 EST is 22:30 in Chicago, same day
    assert only["date"] == "2020-01-31"


def test_rss_1_0(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """RSS 1.0 (RDF) with dc:date and dc:subject becomes an item with its tag."""
    hearing, body = read(imported(tmp_path, monkeypatch, "rss1.rdf") / "2020-02-10-zoning-hearing.md")
    assert hearing["tags"] == ["zoning"] and hearing["kind"] == "news"
    assert body == "The commission hears comments on the new zoning code."


def test_json_feed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """JSON Feed 1.1: relative urls against home_page_url, its image, text content escaped, not read as HTML."""
    content = imported(tmp_path, monkeypatch, "feed.json")
    zoning, body = read(content / "2020-02-20-inclusionary-zoning.md")
    assert zoning["url"] == "https://housing.example.com/p/42/inclusionary-zoning"
    assert zoning["image"] == "https://housing.example.com/i/iz-cover.png"
    assert zoning["tags"] == ["housing", "zoning"]
    assert "[our guide](https://housing.example.com/guides/iz)" in body and "*inclusionary zoning*" in body
    _, plain = read(content / "2020-02-21-plain-text.md")
    assert plain == "Line one.\n\nLine two <not a tag>."


def test_calendar_with_time_zones_and_recurrence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An .ics: TZID times in the newsletter's zone, all-day ends, next occurrences only, no cancelled events."""
    content = imported(tmp_path, monkeypatch, "calendar.ics", "--today", "2020-03-15")
    names = sorted(p.name for p in content.glob("*.md"))
    hearing, body = read(content / "2020-03-01-budget-hearing.md")
    assert hearing["kind"] == "event" and hearing["url"] == "https://cities.example.org/events/budget-hearing/"
    assert hearing["event"] == {
        "start": "2020-04-02",
        "when": "April 2, 2020, 18:00 – 20:00 CDT",
        "place": "City Hall, Room 200, 1 Main St",
    }
    assert body == "The council hears the public on the 2021 budget.\n\nSign up to speak at the door."
    summit, summit_body = read(content / "2020-03-15-mayors-summit.md")  # no CREATED: posted when first imported
    assert summit["kind"] == "meeting" and summit["event"] == {
        "start": "2020-05-06",
        "end": "2020-05-07",
        "place": "Convention Center",
    }
    assert "alert" not in summit_body and "**workshops**" in summit_body
    late, _ = read(content / "2020-03-31-late-night-call.md")  # 03:00 UTC on April 1 / May 1: the day before
    assert late["event"] == {"start": "2020-04-30", "when": "April 30, 2020, 22:00 – 23:30 CDT"}
    office = [name for name in names if "office-hours" in name]
    # Weekly on Mondays from today to 90 days ahead (March 16 - June 8), minus the EXDATE of March 23.
    assert len(office) == 12 and not any("2020-03-23" in name for name in office)
    moved, _ = read(content / "2019-12-15-office-hours-2020-03-30.md")
    assert moved["title"] == "Office Hours (moved)" and moved["event"]["place"] == "Library annex"  # type: ignore[index]
    assert moved["event"]["when"] == "March 30, 2020, 17:00 – 18:00 CDT"  # type: ignore[index]
    assert not any("cancelled" in name for name in names)


def test_summary_is_cut_at_summary_words(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With summary_words = 8 the summary stops after 8 words with an ellipsis and truncated: true."""
    content = imported(tmp_path, monkeypatch, "wordpress.rss", words=8)
    budget, body = read(content / "2020-03-31-budget-season.md")
    assert budget["truncated"] == "true"
    assert (
        body
        == "Cities face a **new budget season**. Read [our report](https://cities.example.org/reports/budgets-2020/)…"
    )


def test_cut_keeps_links_whole_and_closes_emphasis() -> None:
    """A cut never splits a link and closes bold or italic it leaves open."""
    assert cut("one **two three four** five", 3) == ("one **two three**…", True)
    link = "[a long link text](https://x.org/)"
    assert cut(f"see {link} and more", 2) == (f"see {link}…", True)
    assert cut("short text", 5) == ("short text", False)
    text, was_cut = summary("<p>a b</p><script>c d e f</script>", "https://x.org/", 3)
    assert (text, was_cut) == ("a b", False)


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b'{"items": [', "is not valid JSON (line 1"),
        (b'{"title": "x", "items": []}', "is JSON but not a JSON Feed"),
        (b"BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nDTSTART:notadate\r\n", "is not a valid iCalendar file"),
        (b"just some text", "is not a feed (no RSS, Atom, JSON Feed or iCalendar found)"),
        (b"<?xml version='1.0'?><rss version='2.0'><channel><title>x</title><item>", "is malformed XML"),
    ],
)
def test_unreadable_documents_say_what_they_are(body: bytes, problem: str) -> None:
    """Broken JSON, JSON that is no feed, a broken calendar, plain text, cut XML: one message naming the source."""
    from digest.errors import FeedError
    from digest.feeds import parse

    with pytest.raises(FeedError) as raised:
        parse("https://example.org/feed", body, today=dt.date(2020, 3, 15), horizon_days=90)
    assert str(raised.value).startswith("https://example.org/feed: ") and problem in str(raised.value)


def test_a_bad_source_block_is_a_content_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The reader checks 'source' like any field: a mapping with a feed, else a message with the line and fix."""
    (tmp_path / "digest.toml").write_text(CONFIG.format(words=60), encoding="utf-8")
    (tmp_path / "content").mkdir()
    (tmp_path / "content" / "2020-01-02-x.md").write_text(
        "---\ntitle: X\ndate: 2020-01-02\nsource: a feed\n---\nBody.\n", encoding="utf-8"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DIGEST_NO_CACHE", "1")
    result = CliRunner().invoke(main, ["list", "--since", "2020-01-01", "--until", "2020-01-31"])
    assert result.exit_code == 1
    assert "content/2020-01-02-x.md:4: 'source' must be a mapping" in result.stderr
