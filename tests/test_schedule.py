"""Scheduling: the README's cron line works as written, run after run, and the exit codes are the documented ones."""

from __future__ import annotations

import datetime as dt
import re
import shlex
from pathlib import Path

import pytest
from _factories import copy_newsletter
from click.testing import CliRunner

from digest.cli import main
from digest.selection import today_in
from digest.testing.sendgrid_emulator import SendGridEmulator


def cron_command(repo: Path) -> list[str]:
    """The arguments of the crontab line's `digest send` in the README (between 'digest' and the redirection)."""
    readme = (repo / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```cron\n(.*?)\n```", readme, re.S)
    assert block, "README has no ```cron block"
    line = block.group(1).strip().splitlines()[0]  # the monthly line; the next ones re-run it
    command = line.split("digest send ", 1)[1].split(">>", 1)[0]
    return ["send", *shlex.split(command)]


@pytest.fixture
def newsletter(tmp_path: Path, repo: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A newsletter whose content has an item posted last month (relative to the real today)."""
    folder = tmp_path / "srv"
    copy_newsletter(folder)
    first = today_in("America/Chicago").replace(day=1)
    last_month = first - dt.timedelta(days=1)
    posted = last_month.replace(day=min(15, last_month.day))
    (folder / "content" / f"{posted}-monthly-news.md").write_text(
        f"---\ntitle: Monthly news\ndate: {posted}\nkind: news\n---\nWhat happened last month.\n", encoding="utf-8"
    )
    (folder / "members.csv").write_text("email,name\na@example.org,A\nb@example.org,B\n", encoding="utf-8")
    monkeypatch.chdir(folder)
    monkeypatch.setenv("SENDGRID_API_KEY", "SG.test-key")
    monkeypatch.setenv("DIGEST_UNSUBSCRIBE_SECRET", "schedule-test-secret-0123456789")
    return folder


def test_readme_cron_line_sends_once_then_does_nothing(repo: Path, newsletter: Path) -> None:
    """The cron line sends last month's edition to everyone; the next runs exit 0 and send nothing more."""
    args = cron_command(repo)
    assert args[:5] == ["send", "--period", "previous-month", "--recipients", "members.csv"]
    assert "--yes" in args
    with SendGridEmulator() as emulator:
        runner = CliRunner(env={"DIGEST_SENDGRID_HOST": emulator.url})
        first = runner.invoke(main, [*args, "--no-spamassassin"], catch_exceptions=False)
        assert first.exit_code == 0, first.stderr
        assert sorted(m["email"] for m in emulator.messages()) == ["a@example.org", "b@example.org"]
        for _ in range(2):
            again = runner.invoke(main, [*args, "--no-spamassassin"], catch_exceptions=False)
            assert again.exit_code == 0, again.stderr
        assert len(emulator.messages()) == 2
        assert "nothing new" in again.stderr or "nothing to do" in again.stdout
        history = runner.invoke(main, ["history"], catch_exceptions=False)
        assert "previous" not in history.stdout and re.search(r"mayors-innovation-\d{4}-\d{2}\s", history.stdout)


def test_if_new_skips_an_empty_month_with_exit_zero(repo: Path, newsletter: Path) -> None:
    """With --if-new, a month with nothing posted is 'nothing new' (exit 0); without it, exit 3."""
    runner = CliRunner()
    args = ["send", "--month", "2011-01", "--recipients", "members.csv", "--yes", "--backend", "outbox"]
    assert runner.invoke(main, args).exit_code == 3
    result = runner.invoke(main, [*args, "--if-new"])
    assert result.exit_code == 0 and "nothing" in result.stderr.lower()
