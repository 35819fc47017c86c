"""Archive: two editions sent to three members through the outbox, the build folder deleted, `digest archive`
writes every page at its view_url path, the index, an Atom feed and the .ics files, from the ledger alone."""

from __future__ import annotations

import datetime as dt
import http.client
import mailbox
import os
import re
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import feedparser
import icalendar
import pytest
from _factories import copy_newsletter, make_build, make_settings
from click.testing import CliRunner

from digest.archive import (
    WebEdition,
    pack,
    site_path,
    unpack,
    web_body,
    write_site,
)
from digest.checks import check_build
from digest.cli import main
from digest.errors import ArchiveError
from digest.ledger import Ledger
from digest.ledger.batches import SENT
from digest.serve import ServeError, serve_folder

MEMBERS = [("ada@example.org", "Ada Lovelace"), ("grace@example.org", "Grace Hopper"), ("alan@example.org", "")]
EDITIONS = ("mayors-innovation-2019-12", "mayors-innovation-2020-01")


def digest(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def newsletter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The repository's newsletter in tmp_path, with a members list, working folder set to it."""
    folder = copy_newsletter(tmp_path / "news")
    (folder / "members.csv").write_text("email,name\n" + "".join(f"{a},{n}\n" for a, n in MEMBERS), encoding="utf-8")
    monkeypatch.chdir(folder)
    monkeypatch.setenv("DIGEST_UNSUBSCRIBE_SECRET", "archive-test-secret-0123456789abcdef")
    return folder


@pytest.fixture
def sent(newsletter: Path) -> Path:
    """December 2019 and January 2020 sent to the three members, then build/ deleted."""
    for month in ("2019-12", "2020-01"):
        code, _, err = digest("send", "--month", month, "--recipients", "members.csv", "--yes", "--no-spamassassin")
        assert code == 0, err
    shutil.rmtree(newsletter / "build")
    return newsletter


def tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def outbox_tokens(folder: Path) -> set[str]:
    """The unsubscribe tokens the members got (from the outbox messages' List-Unsubscribe headers)."""
    tokens = set()
    for box in (folder / "outbox").iterdir():
        for message in mailbox.Maildir(box, create=False):
            tokens.update(re.findall(r"token=([A-Za-z0-9_\-]+)", str(message["List-Unsubscribe"])))
    return tokens


def test_archive_from_the_ledger_alone(sent: Path) -> None:
    """Both pages at their view_url paths, the index newest first, a valid feed, three .ics files; build/ gone."""
    code, out, err = digest("archive")
    assert code == 0, err
    assert "2 edition(s), 3 calendar file(s)" in out
    site = sent / "archive"
    pages = [site / "digest" / edition / "index.html" for edition in EDITIONS]
    assert all(page.is_file() for page in pages)
    index = (site / "index.html").read_text(encoding="utf-8")
    assert index.index("digest/mayors-innovation-2020-01/") < index.index("digest/mayors-innovation-2019-12/")
    assert "January 2020" in index and "3 items" in index and "Sent " in index
    assert '<link rel="alternate" type="application/atom+xml"' in index
    feed = feedparser.parse((site / "feed.xml").read_bytes())
    assert not feed.bozo, feed.bozo_exception
    assert [entry.link for entry in feed.entries] == [f"https://www.example.org/digest/{e}" for e in reversed(EDITIONS)]
    assert sorted(p.name for p in (site / "events").iterdir()) == [
        "a-public-water-utility-workshop-on-affordability.ics",
        "summer-2020-annual-meeting.ics",
        "winter-2020-policy-meeting.ics",
    ]


def test_nothing_personal_in_the_archive(sent: Path) -> None:
    """No page, index or feed holds a member's address, name, unsubscribe token or a %% placeholder."""
    assert digest("archive")[0] == 0
    tokens = outbox_tokens(sent)
    assert len(tokens) == 3  # one per member and newsletter
    personal = [a for a, _ in MEMBERS] + [n for _, n in MEMBERS if n] + sorted(tokens)
    for name, data in tree(sent / "archive").items():
        text = data.decode("utf-8")
        found = [p for p in [*personal, "%%", "unsubscribe?token", "Unsubscribe"] if p in text]
        assert not found, f"{name} holds {found}"


def test_edition_page_is_the_email_as_a_web_page(sent: Path) -> None:
    """Title, lang, canonical, Open Graph and Twitter tags, a link back, links tagged utm_medium=web, no view link."""
    assert digest("archive")[0] == 0
    page = (sent / "archive/digest/mayors-innovation-2020-01/index.html").read_text(encoding="utf-8")
    url = "https://www.example.org/digest/mayors-innovation-2020-01"
    assert "<title>Mayors Innovation Project, January 2020: New Mayors Cohort 2020 and 2 more</title>" in page
    assert '<html lang="en" dir="ltr">' in page and f'<link rel="canonical" href="{url}">' in page
    for tag in ("og:title", "og:description", "og:url", "twitter:card", "twitter:title", "twitter:description"):
        assert re.search(rf'<meta (property|name)="{tag}" content="[^"]+">', page), tag
    assert '<meta property="og:description" content="2 new items from January 2020' in page
    assert '<a href="../../index.html">← All editions</a>' in page
    assert "utm_medium=web" in page and "utm_medium=email" not in page
    assert "View in browser" not in page and "preheader" not in page
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page


def test_regeneration_is_byte_identical_and_skips_an_unchanged_archive(sent: Path) -> None:
    """A second run changes nothing (not even mtimes); a deleted archive comes back byte for byte."""
    assert digest("archive")[0] == 0
    first = tree(sent / "archive")
    mtimes = {p: p.stat().st_mtime_ns for p in (sent / "archive").rglob("*") if p.is_file()}
    code, out, _ = digest("archive")
    assert code == 0 and "up to date" in out and "nothing changed" in out
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes
    shutil.rmtree(sent / "archive")
    assert digest("archive")[0] == 0
    assert tree(sent / "archive") == first


def test_a_changed_archive_is_replaced_whole(sent: Path) -> None:
    """A stray file is removed, a changed file rewritten, and unchanged files keep their modification time."""
    assert digest("archive")[0] == 0
    site = sent / "archive"
    (site / "stray.html").write_text("old")
    index = site / "index.html"
    index.write_text("edited")
    page = site / "digest/mayors-innovation-2019-12/index.html"
    os.utime(page, ns=(1_000_000_000, 1_000_000_000))
    code, out, _ = digest("archive")
    assert code == 0 and "1 file(s) written, 1 removed" in out
    assert not (site / "stray.html").exists() and index.read_text().startswith("<!doctype html>")
    assert page.stat().st_mtime_ns == 1_000_000_000
    assert not [p for p in sent.iterdir() if p.name.startswith(".archive")]  # no temp folder left


def test_summer_meeting_ics_parses_back(sent: Path) -> None:
    """The .ics of the Summer 2020 Annual Meeting: all-day 20-22 August (DTEND 23rd, exclusive), Tacoma, WA."""
    assert digest("archive")[0] == 0
    raw = (sent / "archive/events/summer-2020-annual-meeting.ics").read_bytes()
    lines = raw.split(b"\r\n")
    assert raw.endswith(b"\r\n") and b"\n" not in raw.replace(b"\r\n", b"")
    assert max(len(line) for line in lines) <= 75 and any(line.startswith(b" ") for line in lines)
    calendar = icalendar.Calendar.from_ical(raw)
    assert str(calendar["VERSION"]) == "2.0" and "Mayors Innovation Project" in str(calendar["PRODID"])
    (event,) = calendar.walk("VEVENT")
    assert event.decoded("DTSTART") == dt.date(2020, 8, 20)
    assert event.decoded("DTEND") == dt.date(2020, 8, 23)
    assert "VALUE=DATE" in raw.decode() and str(event["LOCATION"]) == "Tacoma, WA"
    assert str(event["SUMMARY"]) == "Summer 2020 Annual Meeting"
    assert str(event["UID"]) == "summer-2020-annual-meeting@www.example.org"
    assert str(event["URL"]) == "https://www.example.org/news/summer-2020-annual-meeting"
    assert "mark your calendars" in str(event["DESCRIPTION"])
    assert isinstance(event.decoded("DTSTAMP"), dt.datetime)


def test_calendar_links_in_both_parts_and_on_the_page(sent: Path) -> None:
    """The members' HTML and text parts and the web page carry the Google Calendar and .ics links of each event."""
    google = "https://calendar.google.com/calendar/render?action=TEMPLATE&text=Summer+2020+Annual+Meeting"
    ics = "https://www.example.org/events/summer-2020-annual-meeting.ics"
    box = mailbox.Maildir(sent / "outbox" / "mayors-innovation-2020-01", create=False)
    message = next(iter(box))
    html = message.get_payload()[1].get_payload(decode=True).decode()
    text = message.get_payload()[0].get_payload(decode=True).decode()
    for part in (html, text):
        assert google in part.replace("&amp;", "&") and "dates=20200820/20200823" in part and ics in part
    assert "Add to calendar:\nGoogle Calendar: " in text
    assert 'aria-label="Google Calendar: Summer 2020 Annual Meeting"' in html
    assert digest("archive")[0] == 0
    page = (sent / "archive/digest/mayors-innovation-2020-01/index.html").read_text(encoding="utf-8")
    assert google in page.replace("&amp;", "&") and ics in page


def test_include_unsent_adds_a_built_edition(sent: Path) -> None:
    """--include-unsent adds an edition built but never sent; without it the archive holds only the sent ones."""
    assert digest("build", "--month", "2020-02")[0] == 0
    assert digest("archive")[0] == 0
    assert not (sent / "archive/digest/mayors-innovation-2020-02").exists()
    assert digest("archive", "--include-unsent")[0] == 0
    assert (sent / "archive/digest/mayors-innovation-2020-02/index.html").is_file()


def test_an_edition_only_tried_is_not_archived(newsletter: Path) -> None:
    """Test sends and dry runs reach no member: the archive stays empty (an index and an empty feed)."""
    assert digest("send", "--month", "2020-01", "--to", "me@example.org", "--no-spamassassin")[0] == 0
    assert digest("send", "--month", "2020-01", "--recipients", "members.csv", "--dry-run")[0] == 0
    code, out, _ = digest("archive")
    assert code == 0 and "0 edition(s)" in out
    assert not feedparser.parse((newsletter / "archive/feed.xml").read_bytes()).entries


def test_view_url_outside_base_url_is_a_warning(sent: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With view_url on another host the archive has no page for it and says so; digest check warns."""
    monkeypatch.setenv("DIGEST_VIEW_URL", "https://elsewhere.example.com/{edition}")
    code, out, err = digest("archive")
    assert code == 0 and "0 edition(s)" in out
    assert "view_url https://elsewhere.example.com/mayors-innovation-2020-01 is not a page under base_url" in err
    code, out, _ = digest("check", "--month", "2020-01", "--no-spamassassin")
    assert code == 0 and re.search(r"WARN\s+web-page\s+view_url https://elsewhere", out)


def test_check_fails_on_a_personal_placeholder_in_the_page() -> None:
    """A greeting by name would put the name on the public page: check fails, naming it, unless marked personal."""
    settings = make_settings()
    build = make_build(html='<html><body><p>Hi %%name%%</p><a href="%%unsubscribe_url%%">Unsubscribe</a></body></html>')
    (result,) = [r for r in check_build(build, settings, spamassassin=False) if r.name == "web-placeholders"]
    assert result.status == "fail" and "%%name%%" in result.detail and 'class="personal"' in result.detail
    greeting = '<p class="personal">Hi %%name%%</p>'
    clean = make_build(html=f'<html><body>{greeting}<a href="%%unsubscribe_url%%">Unsubscribe</a></body></html>')
    (result,) = [r for r in check_build(clean, settings, spamassassin=False) if r.name == "web-placeholders"]
    assert result.status == "pass"


def test_web_body_offers_sign_up_instead_of_unsubscribe() -> None:
    """The unsubscribe link becomes the signup_url link; without signup_url its paragraph goes; tokens blanked."""
    html = (
        '<html><head><style>p{margin:0}</style></head><body style="margin:0"><div class="preheader">pre</div>'
        '<p><a href="%%view_url%%">View in browser</a></p><p>Hi %%name%%</p>'
        '<p><a href="https://e.org/a?utm_source=digest&amp;utm_medium=email&amp;utm_campaign=x">A</a></p>'
        '<p><a href="%%unsubscribe_url%%">Unsubscribe</a></p></body></html>'
    )
    settings = make_settings(signup_url="https://e.org/join")
    parts = web_body(html, settings, "x")
    assert parts.leftovers == ("%%name%%",) and "%%" not in parts.body
    assert '<a href="https://e.org/join">Subscribe</a>' in parts.body
    assert "utm_medium=web" in parts.body and "View in browser" not in parts.body and "pre" not in parts.body
    assert parts.styles == "<style>p{margin:0}</style>" and parts.body_style == "margin:0"
    own = '<a href="https://e.org/b?utm_source=news&amp;utm_medium=email">B</a>'  # an author's own UTM: kept
    assert own in web_body(html.replace("</body>", own + "</body>"), settings, "x").body
    bare = web_body(html, make_settings(), "x").body
    assert "Unsubscribe" not in bare and "Subscribe" not in bare and bare.count("<p>") == 2


def test_site_paths_under_base_url() -> None:
    """view_url paths map to files under the archive folder; URLs elsewhere or climbing out map to None."""
    settings = make_settings(base_url="https://e.org/news/")
    assert site_path(settings, "https://e.org/news/digest/x") == PurePosixPath("digest/x/index.html")
    assert site_path(settings, "https://e.org/news/digest/x.html") == PurePosixPath("digest/x.html")
    assert site_path(settings, "https://e.org/news/") == PurePosixPath("index.html")
    assert site_path(settings, "https://e.org/other/x") is None
    assert site_path(settings, "https://e.org/news/../x") is None


def test_stored_web_version_round_trips_and_a_corrupt_one_is_named() -> None:
    """pack/unpack keep every field (sent_at comes from the ledger); a damaged blob is an ArchiveError."""
    web = WebEdition("e", "n", "2020-01", "January 2020", "S", "P", 3, "en", "ltr", "<p>b</p>", "", "", (), "")
    assert unpack(pack(web), sent_at="2020-02-01T00:00:00Z", where="l") == WebEdition(
        **{**web.__dict__, "sent_at": "2020-02-01T00:00:00Z"}
    )
    with pytest.raises(ArchiveError, match=r"ledger\.sqlite3 \(e\): the stored web version is unreadable"):
        unpack(b"not zlib", sent_at="", where="ledger.sqlite3 (e)")


def test_ledger_keeps_the_first_send_date(tmp_path: Path) -> None:
    """store_page replaces the page but keeps the date of the first store; unsent editions are not listed."""
    from _factories import make_build as build_of

    from digest.models import Recipient

    with Ledger.open(tmp_path / "l.sqlite3") as ledger:
        build = build_of()
        ledger.begin_edition(build.edition, build.newsletter, build.period, build.content_hash, build.subject)
        ledger.store_page(build.edition, b"one")
        assert ledger.sent_pages(build.newsletter) == []  # nobody sent yet
        ledger.add_recipients(build.edition, [Recipient("a@example.org")])
        with ledger._db.tx() as conn:
            conn.execute(f"UPDATE recipients SET state = {SENT}")
        ((_, first, page),) = ledger.sent_pages(build.newsletter)
        ledger.store_page(build.edition, b"two")
        assert ledger.sent_pages(build.newsletter) == [(build.edition, first, b"two")]


def test_archive_folder_that_is_a_file_is_a_clear_error(tmp_path: Path) -> None:
    """archive_dir pointing at a file: ArchiveError naming it and the fix; nothing else written."""
    target = tmp_path / "site"
    target.write_text("x")
    with pytest.raises(ArchiveError, match=r"site: is a file, not a folder; set archive_dir"):
        write_site({PurePosixPath("index.html"): b"i"}, target)
    assert target.read_text() == "x" and sorted(p.name for p in tmp_path.iterdir()) == ["site"]


def test_a_linked_archive_folder_is_replaced_where_it_points(tmp_path: Path) -> None:
    """archive_dir as a symlink to a web root: the web root gets the new files and the link stays a link."""
    root = tmp_path / "www"
    root.mkdir()
    (root / "old.html").write_text("old")
    link = tmp_path / "archive"
    link.symlink_to(root)
    assert write_site({PurePosixPath("index.html"): b"new"}, link) == (1, 1)
    assert link.is_symlink() and sorted(p.name for p in root.iterdir()) == ["index.html"]


@pytest.fixture
def served(sent: Path) -> Iterator[str]:
    """digest's archive server on a free port, over the archive of the two editions."""
    assert digest("archive")[0] == 0
    ready: list[str] = []
    stop = threading.Event()
    thread = threading.Thread(
        target=serve_folder, args=(sent / "archive",), kwargs={"port": 0, "on_ready": ready.append, "stop": stop}
    )
    thread.start()
    try:
        for _ in range(100):
            if ready:
                break
            stop.wait(0.05)
        yield ready[0]
    finally:
        stop.set()
        thread.join(5)


def test_serve_archive_serves_the_pages(served: str) -> None:
    """serve_folder answers the index, an edition page and a .ics file on loopback."""
    host, port = served.removeprefix("http://").rstrip("/").split(":")
    for path, wanted in (
        ("/", b"past editions"),
        ("/digest/mayors-innovation-2020-01/", b"All editions"),
        ("/events/summer-2020-annual-meeting.ics", b"BEGIN:VCALENDAR"),
    ):
        conn = http.client.HTTPConnection(host, int(port), timeout=5)
        conn.request("GET", path)
        answer = conn.getresponse()
        assert answer.status == 200 and wanted in answer.read(), path
        conn.close()


def test_serve_archive_without_an_archive_says_what_to_run(newsletter: Path) -> None:
    """digest serve --archive before digest archive: exit 1 and the command to run."""
    code, _, err = digest("serve", "--archive")
    assert code == 1 and "no archive here yet; run 'digest archive' first" in err
    with pytest.raises(ServeError):
        serve_folder(newsletter / "nope")


def test_readme_cron_line_archives_after_the_send(repo: Path) -> None:
    """The README's cron line runs digest archive after the send."""
    readme = (repo / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```cron\n(.*?)\n```", readme, re.S)
    assert block and re.search(r"&& \S*digest archive\b", block.group(1))


def test_archive_of_a_fresh_folder_is_an_empty_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No ledger yet: an index with no editions and a valid empty feed, so a first publish step works."""
    folder = copy_newsletter(tmp_path / "n")
    monkeypatch.chdir(folder)
    code, out, _ = digest("archive", "--out", "public")
    assert code == 0 and "0 edition(s)" in out
    assert sorted(tree(folder / "public")) == ["feed.xml", "index.html"]
    feed = feedparser.parse((folder / "public/feed.xml").read_bytes())
    assert not feed.bozo and feed.entries == [] and feed.feed.title == "Mayors Innovation Project: past editions"


def test_ics_folds_utf8_at_75_octets_and_depends_only_on_its_input() -> None:
    """Accented text folds at 75 octets, never inside a character; the same event gives the same bytes."""
    from digest.ics import EventRecord, google_url, to_ics

    event = EventRecord("r", "Réunion d’été", dt.date(2020, 8, 20), dt.date(2020, 8, 20), "Québec", "", "", "é" * 200)
    stamp = dt.datetime(2020, 2, 1, 14, tzinfo=dt.UTC)
    raw = to_ics(event, make_settings(), stamp=stamp)
    assert raw == to_ics(event, make_settings(), stamp=stamp)
    assert max(len(line) for line in raw.split(b"\r\n")) <= 75
    assert raw.decode("utf-8").count("é") == 200 + 3 + 1  # strict decoding: no character cut by a fold
    assert b"DTEND;VALUE=DATE:20200821" in raw and b"DTSTAMP:20200201T140000Z" in raw
    assert "dates=20200820/20200821" in google_url(event) and "location=Qu%C3%A9bec" in google_url(event)


def test_a_bad_ics_url_is_a_config_error(newsletter: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ics_url with an unknown placeholder: exit 1 naming the config file, the setting and the allowed ones."""
    monkeypatch.setenv("DIGEST_ICS_URL", "{base_url}/{event}.ics")
    code, _, err = digest("build", "--month", "2020-01")
    assert code == 1 and "digest.toml: 'ics_url' cannot be filled" in err and "{base_url} and {id}" in err
    assert "Traceback" not in err
