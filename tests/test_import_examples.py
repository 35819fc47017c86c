"""Import, the sample as a feed: examples/ is generated from content/, and importing it gives content/ back."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from digest.cli import main


def listed(runner: CliRunner) -> list[tuple[str, str, str, str]]:
    """(title, date, url, kind) of every posted item of `digest list --since 2012-01-01 --json`."""
    result = runner.invoke(main, ["list", "--since", "2012-01-01", "--until", "2099-12-31", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["items"]
    return sorted((r["title"], r["date"], r["url"], r["kind"]) for r in rows if r["reason"] == "posted")


def test_init_then_import_the_sample_feed_gives_the_shipped_items(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """digest init x && cd x && digest import ../examples/...rss lists the 47 shipped titles, dates and links."""
    monkeypatch.setenv("DIGEST_NO_CACHE", "1")
    runner = CliRunner()
    monkeypatch.chdir(repo)
    shipped = listed(runner)
    assert len(shipped) == 47
    monkeypatch.chdir(tmp_path)
    assert runner.invoke(main, ["init", "x"]).exit_code == 0
    monkeypatch.chdir(tmp_path / "x")
    feed = str(repo / "examples" / "mayors-innovation.rss")
    result = runner.invoke(main, ["import", feed])
    assert result.exit_code == 0 and "47 new" in result.output, result.output
    imported = listed(runner)
    # init's own example item (dated the day of init) is the only other one.
    assert [row for row in imported if row not in shipped] == [
        row for row in imported if row[0] == "Welcome to the digest" and row[2].endswith("/news/welcome")
    ]
    assert len(imported) == 48
    assert "0 new" in runner.invoke(main, ["import", feed]).output


def test_examples_are_generated_from_content(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """scripts/make_examples.py run now writes exactly the committed examples/ (regenerate after editing content/)."""
    monkeypatch.setenv("DIGEST_NO_CACHE", "1")
    spec = importlib.util.spec_from_file_location("make_examples", repo / "scripts" / "make_examples.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    from digest.config import load_settings
    from digest.content import load_content

    settings = load_settings(repo / "digest.toml", env={})
    items = list(load_content(settings.path(settings.content_dir), settings).items)
    rss = (repo / "examples" / "mayors-innovation.rss").read_text(encoding="utf-8")
    assert module.rss(items, settings.base_url, settings.name) == rss
    assert module.ics(items, settings.name) == (repo / "examples" / "mayors-innovation-events.ics").read_bytes()
    assert rss.count("<item>") == 47


def test_sample_calendar_imports_its_events(repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The sample .ics gives the 17 shipped events with their start, end and place."""
    monkeypatch.setenv("DIGEST_NO_CACHE", "1")
    config = 'name = "Mayors"\nslug = "mayors"\nsender = "Mayors <news@example.org>"\ntimezone = "America/Chicago"\n'
    (tmp_path / "digest.toml").write_text(config, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    result = runner.invoke(main, ["import", str(repo / "examples" / "mayors-innovation-events.ics")])
    assert result.exit_code == 0 and "17 new" in result.output, result.output
    summer = (tmp_path / "content" / "2020-01-21-summer-2020-annual-meeting.md").read_text(encoding="utf-8")
    assert "  start: 2020-08-20\n  end: 2020-08-22\n  place: Tacoma, WA\n" in summer and "kind: meeting" in summer
