"""Import, end to end through the CLI: feeds served over HTTP on 127.0.0.1 become content files, once each."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from _feed_server import FIXTURES, FeedServer, feed_server
from click.testing import CliRunner, Result

from digest.cli import main
from digest.config import load_settings
from digest.content import load_content

CONFIG = """name = "City Innovation Network"
slug = "city-innovation"
sender = "City Innovation Network <news@example.org>"
postal_address = "1 Main St, Springfield"
base_url = "https://cities.example.org"
timezone = "America/Chicago"
"""


@pytest.fixture
def server() -> Iterator[FeedServer]:
    """The fixture feeds served over HTTP."""
    with feed_server() as running:
        yield running


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty newsletter in America/Chicago, as the working folder."""
    (tmp_path / "digest.toml").write_text(CONFIG, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DIGEST_NO_CACHE", "1")
    return tmp_path


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def front(path: Path) -> tuple[dict[str, object], str]:
    """A content file's front matter (dates as text) and body."""
    _, head, body = path.read_text(encoding="utf-8").split("---\n", 2)
    return yaml.load(head, Loader=yaml.BaseLoader), body.strip()


def snapshot(folder: Path) -> dict[str, tuple[int, bytes]]:
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted((folder / "content").glob("*"))}


def test_wordpress_feed_becomes_content(server: FeedServer, folder: Path) -> None:
    """Entries become files the reader accepts: dates in the newsletter's zone, kinds, tags, image, safe summary."""
    result = run("import", server.url + "/wordpress/feed/")
    assert result.exit_code == 0, result.output
    files = sorted(p.name for p in (folder / "content").glob("*.md"))
    assert files == [
        "2020-02-20-twice.md",
        "2020-03-01-local-time.md",
        "2020-03-17-data-driven-fire.md",
        "2020-03-31-budget-season.md",  # 03:00 UTC on April 1 is March 31 in Chicago
    ]
    budget, body = front(folder / "content" / "2020-03-31-budget-season.md")
    assert budget["title"] == "Budget Season – What “Resilient” Means"
    assert budget["kind"] == "report" and budget["tags"] == ["budgets", "resilience"]
    assert budget["url"] == "https://cities.example.org/2020/04/budget-season/"
    assert budget["image"] == "https://cities.example.org/wp-content/uploads/2020/04/council.jpg"
    assert budget["image_alt"] == "The council chamber"
    assert budget["source"] == {"feed": server.url + "/wordpress/feed/", "id": "https://cities.example.org/?p=501"}
    assert "[our report](https://cities.example.org/reports/budgets-2020/)" in body
    for hostile in ("script", "alert", "color: red", "frame text", "Subscribe here", "onclick", "javascript", "pixel"):
        assert hostile not in body
    webinar, _ = front(folder / "content" / "2020-03-17-data-driven-fire.md")
    assert webinar["kind"] == "webinar" and webinar["image"].endswith("/fire.jpg")  # type: ignore[union-attr]
    assert webinar["image_alt"] == "Webinar: Data-Driven Fire Departments"
    settings = load_settings(folder / "digest.toml", env={})
    items = load_content(folder / "content", settings).items
    assert len(items) == 4
    assert "2020-02-24" not in result.output  # the untitled entry is reported by guid, not written
    assert "skipped https://cities.example.org/?p=490: no title" in result.output
    assert "skipped https://cities.example.org/?p=489: no date" in result.output
    assert "skipped https://cities.example.org/?p=480: the same guid is used by an earlier entry" in result.output
    assert result.output.strip().endswith("4 new, 0 updated from 1 feed.")


def test_second_import_writes_nothing(server: FeedServer, folder: Path) -> None:
    """A second import sends the ETag, gets a 304 and says 0 new; without the 304 it still writes nothing."""
    feed = server.url + "/wordpress/feed/"
    assert run("import", feed).exit_code == 0
    before = snapshot(folder)
    again = run("import", feed)
    assert again.exit_code == 0 and "not modified" in again.output and "0 new" in again.output
    assert server.requests[-1][1]["if-none-match"]
    assert snapshot(folder) == before
    # A server without validators: the feed is read and compared entry by entry.
    file = FIXTURES / "wordpress.rss"
    server.set("/wordpress/feed/", file.read_bytes().replace(b"</channel>", b"<!-- rebuilt --></channel>"))
    third = run("import", feed)
    assert "0 new, 0 updated, 4 unchanged, 3 skipped" in third.output
    assert snapshot(folder) == before


def test_updated_upstream_rewrites_unless_edited_by_hand(server: FeedServer, folder: Path) -> None:
    """An entry changed upstream updates its file; a file edited by hand is left alone and reported."""
    feed = server.url + "/wordpress/feed/"
    assert run("import", feed).exit_code == 0
    content = folder / "content"
    edited = content / "2020-03-01-local-time.md"
    edited.write_text(edited.read_text(encoding="utf-8").replace("half past", "HALF PAST"), encoding="utf-8")
    changed = (FIXTURES / "wordpress.rss").read_bytes()
    changed = changed.replace(b"Join us for a webinar on how", b"Join us on May 5 for a webinar on how")
    changed = changed.replace(b"Posted at half past midnight", b"Posted at 00:30")
    server.set("/wordpress/feed/", changed)
    result = run("import", feed)
    assert result.exit_code == 0, result.output
    assert "1 updated" in result.output and "1 left alone" in result.output
    assert "left alone content/2020-03-01-local-time.md: edited by hand" in result.output
    assert "HALF PAST" in edited.read_text(encoding="utf-8")
    assert "Join us on May 5" in (content / "2020-03-17-data-driven-fire.md").read_text(encoding="utf-8")


def test_bad_feeds_fail_alone(server: FeedServer, folder: Path) -> None:
    """404, 500, HTML, truncated XML, unknown encoding, timeout: one line each, exit 1, good feeds imported."""
    bad = ["/missing", "/error", "/page/", "/truncated.xml", "/odd-encoding.xml", "/slow"]
    result = CliRunner().invoke(
        main, ["import", "--timeout", "0.5", *(server.url + path for path in bad), server.url + "/atom.xml"]
    )
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    for path, problem in [
        ("/missing", "HTTP 404"),
        ("/error", "HTTP 500"),
        ("/page/", "HTML page, not a feed"),
        ("/truncated.xml", "malformed XML (line 4"),
        ("/odd-encoding.xml", "unknown encoding 'x-klingon-7'"),
        ("/slow", "no answer within 0.5 s"),
    ]:
        assert sum(1 for line in lines if line.startswith(f"{server.url}{path}: FAILED: ") and problem in line) == 1
    assert "Traceback" not in result.output
    assert "6 of 7 feeds" in result.stderr and "The other feeds were imported." in result.stderr
    names = sorted(p.name for p in (folder / "content").iterdir())
    assert names == ["2020-01-31-only-updated.md", "2020-02-15-transit-for-everyone.md"]  # nothing of truncated.xml


def test_dry_run_writes_nothing_and_json_reports_per_feed(server: FeedServer, folder: Path) -> None:
    """--dry-run shows the files it would write and creates no file, folder or state; --json has the counts."""
    result = run("import", "--dry-run", "--json", server.url + "/feed.json")
    assert result.exit_code == 0
    report = json.loads(result.output)
    assert report["dry_run"] is True and report["new"] == 2 and report["failed"] == 0
    feed = report["feeds"][0]
    assert feed["format"] == "json11" and feed["error"] is None
    assert [Path(name).name for name in feed["new"]] == [
        "2020-02-20-inclusionary-zoning.md",
        "2020-02-21-plain-text.md",
    ]
    assert sorted(p.name for p in folder.iterdir()) == ["digest.toml"]
    text = run("import", "--dry-run", server.url + "/feed.json").output
    assert "would write content/2020-02-20-inclusionary-zoning.md (new)" in text and "This was a dry run" in text


def test_feeds_from_config_with_category_rules(server: FeedServer, folder: Path) -> None:
    """Without arguments the [[feeds]] are imported; kinds maps categories, matched in any case."""
    config = folder / "digest.toml"
    config.write_text(
        CONFIG
        + f'\n[[feeds]]\nurl = "{server.url}/rss1.rdf"\nkind = "news"\nkinds = {{ "ZONING" = "event" }}\n'
        + f'\n[[feeds]]\nurl = "{server.url}/atom.xml"\nkind = "report"\n',
        encoding="utf-8",
    )
    result = run("import")
    assert result.exit_code == 0, result.output
    hearing, _ = front(folder / "content" / "2020-02-10-zoning-hearing.md")
    assert hearing["kind"] == "event" and "tags" not in hearing
    assert hearing["title"] == "Zoning Hearing & Public Comment"
    transit, _ = front(folder / "content" / "2020-02-15-transit-for-everyone.md")
    assert transit["kind"] == "report"


def test_bad_feeds_setting_is_a_config_error(folder: Path) -> None:
    """A [[feeds]] entry with an unknown kind is refused with the fix, before anything is fetched."""
    (folder / "digest.toml").write_text(CONFIG + '\n[[feeds]]\nurl = "x.xml"\nkind = "podcast"\n', encoding="utf-8")
    result = CliRunner().invoke(main, ["import"])
    assert result.exit_code == 1 and "unknown kind 'podcast'; use one of news" in result.stderr


def test_import_then_build_has_news_and_upcoming_events(server: FeedServer, folder: Path) -> None:
    """A WordPress feed and a calendar, imported, then built: the digest holds their news and upcoming events."""
    result = run("import", "--today", "2020-03-15", server.url + "/wordpress/feed/", server.url + "/events.ics")
    assert result.exit_code == 0, result.output
    built = run("build", "--month", "2020-03", "--today", "2020-04-01", "--out", "out")
    assert built.exit_code == 0, built.output
    text = (folder / "out" / "email.txt").read_text(encoding="utf-8")
    html = (folder / "out" / "email.html").read_text(encoding="utf-8")
    for title in ("Budget Season", "Data-Driven Fire Departments", "Council Budget Hearing", "Mayors' Summit"):
        assert title in text
    assert re.search(r"Mayors(&#39;|&#x27;|')\s*Summit", html)
    assert "April 2, 2020, 18:00 – 20:00 CDT" in text  # 19:00 in New York, shown in Chicago time
    assert "<script" not in html.split("</head>", 1)[1]


def test_no_feeds_configured_is_not_an_error(folder: Path) -> None:
    """Without SOURCE or [[feeds]], import says so and exits 0, so `digest import && digest send` still sends."""
    result = run("import")
    assert result.exit_code == 0 and "No feeds to import" in result.output
    assert not (folder / "content").exists() or not any((folder / "content").iterdir())


def test_readme_recipes_import_then_send(repo: Path) -> None:
    """The cron, systemd and GitHub Actions recipes run digest import before digest send."""
    readme = (repo / "README.md").read_text(encoding="utf-8")
    cron = re.search(r"```cron\n(.*?)\n```", readme, re.S)
    assert cron and ".venv/bin/digest import && .venv/bin/digest send --period previous-month" in cron.group(1)
    assert "ExecStartPre=/srv/newsletter/.venv/bin/digest import\n" in readme
    assert "- run: digest import && digest send --period previous-month" in readme


def test_lost_state_adopts_the_files_already_there(server: FeedServer, folder: Path) -> None:
    """With .digest-import.sqlite3 deleted, a re-import finds its own files unchanged and writes no copies."""
    feed = server.url + "/atom.xml"
    assert run("import", feed).exit_code == 0
    before = snapshot(folder)
    (folder / ".digest-import.sqlite3").unlink()
    again = run("import", feed)
    assert "0 new, 0 updated, 2 unchanged" in again.output
    assert snapshot(folder) == before


def test_calendar_is_read_every_time_for_new_occurrences(server: FeedServer, folder: Path) -> None:
    """A calendar is fetched without validators, so a later run imports the occurrences that entered the horizon."""
    calendar = server.url + "/events.ics"
    assert run("import", "--today", "2020-03-15", calendar).exit_code == 0
    later = run("import", "--today", "2020-03-29", calendar)
    assert "if-none-match" not in server.requests[-1][1]
    assert "2 new, 0 updated" in later.output  # Mondays June 15 and 22 are now within 90 days
    assert (folder / "content" / "2019-12-15-office-hours-2020-06-22.md").exists()


def test_entry_deleted_upstream_is_left_alone(server: FeedServer, folder: Path) -> None:
    """An entry that disappears from the feed keeps its file: the digest's history does not shrink."""
    feed = server.url + "/feed.json"
    assert run("import", feed).exit_code == 0
    data = json.loads((FIXTURES / "feed.json").read_text(encoding="utf-8"))
    data["items"] = data["items"][:1]
    server.set("/feed.json", json.dumps(data).encode(), "application/feed+json")
    again = run("import", feed)
    assert "0 new, 0 updated, 1 unchanged" in again.output
    assert (folder / "content" / "2020-02-21-plain-text.md").exists()


def test_password_in_feed_url_is_used_but_never_shown_or_stored(server: FeedServer, folder: Path) -> None:
    """A feed URL with user:password@ logs in, and the password is in no message, --json, state or content file."""
    secret = "s3cret-feed-pw"
    url = server.url.replace("http://", f"http://reader:{secret}@") + "/private/atom.xml"
    result = run("import", "--json", url)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["new"] == 2
    down = CliRunner().invoke(main, ["import", url.replace(server.url.split("//")[1], "127.0.0.1:9")])
    assert down.exit_code == 1 and "cannot be reached (Connection refused)" in down.output
    stored = [p.read_bytes() for p in folder.rglob("*") if p.is_file()]
    assert all(secret.encode() not in data for data in stored)
    assert secret not in result.output + down.output
    assert "http://reader:***@127.0.0.1:9/private/atom.xml: FAILED" in down.output


@pytest.mark.parametrize("state", ["a folder", "not a database"])
def test_unusable_import_state_is_one_message(server: FeedServer, folder: Path, state: str) -> None:
    """An import state that cannot be opened is named with the fix, exit 1, no traceback."""
    path = folder / ".digest-import.sqlite3"
    if state == "a folder":
        path.mkdir()
    else:
        path.write_bytes(b"these are not the pages of a database" * 200)
    result = CliRunner().invoke(main, ["import", server.url + "/atom.xml"])
    assert result.exit_code == 1 and result.exception is not None and isinstance(result.exception, SystemExit)
    assert f"Error: {path}: cannot open or write the import state" in result.stderr
    assert "make the folder writable" in result.stderr


def test_content_folder_that_cannot_be_made_is_one_message(server: FeedServer, folder: Path) -> None:
    """A content_dir that cannot be created (a file is in the way) is named with the fix, exit 1, no traceback."""
    (folder / "blocker").write_text("a file, not a folder\n", encoding="utf-8")
    with (folder / "digest.toml").open("a", encoding="utf-8") as config:
        config.write('content_dir = "blocker/content"\n')
    result = CliRunner().invoke(main, ["import", server.url + "/atom.xml"])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert f"Error: {folder / 'blocker' / 'content'}: cannot create the content folder" in result.stderr
