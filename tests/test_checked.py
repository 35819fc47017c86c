"""checked.py: a build's check results are recorded beside it, reused for the same build, redone for a changed one."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import _factories as factories
import pytest

from digest import checked
from digest.models import Build


@pytest.fixture
def spamassassin_calls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A stand-in `spamassassin` first on PATH: a real program that logs each run and scores the mail 0.1."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "spamassassin.log"
    script = bin_dir / "spamassassin"
    script.write_text(
        "#!/bin/sh\n"
        f"echo run >> {log}\n"
        "cat > /dev/null\n"
        "printf 'X-Spam-Status: No, score=0.1 required=5.0 tests=NONE autolearn=no\\n\\nbody\\n'\n",
        encoding="utf-8",
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    return log


def runs(log: Path) -> int:
    return len(log.read_text().splitlines()) if log.exists() else 0


def built(folder: Path, html_hash: str = "sha256:1") -> Build:
    folder.mkdir(exist_ok=True)
    return factories.make_build(folder=folder, manifest={"files": {"email.html": html_hash}})


def test_a_checked_build_is_not_checked_again(tmp_path: Path, spamassassin_calls: Path) -> None:
    """The second check of the same build and settings reads checks.json: SpamAssassin does not run again."""
    settings = factories.make_settings(tmp_path)
    build = built(tmp_path / "build")
    first = checked.check_once(build, settings)
    again = checked.check_once(build, settings)
    assert runs(spamassassin_calls) == 1 and (build.folder / checked.RECORD_FILE).is_file()
    assert again == first and [r.status for r in again if r.name == "spamassassin"] == ["pass"]


def test_a_changed_build_or_setting_is_checked_again(tmp_path: Path, spamassassin_calls: Path) -> None:
    """A build whose files changed, or other settings, or --no-spamassassin, does not reuse the record."""
    settings = factories.make_settings(tmp_path)
    checked.check_once(built(tmp_path / "build"), settings)
    checked.check_once(built(tmp_path / "build", html_hash="sha256:2"), settings)
    assert runs(spamassassin_calls) == 2
    checked.check_once(built(tmp_path / "build", html_hash="sha256:2"), factories.make_settings(tmp_path, slug="other"))
    assert runs(spamassassin_calls) == 3
    skipped = checked.check_once(built(tmp_path / "build", html_hash="sha256:2"), settings, spamassassin=False)
    assert runs(spamassassin_calls) == 3 and [r.status for r in skipped if r.name == "spamassassin"] == ["skip"]


def test_a_damaged_record_is_ignored(tmp_path: Path, spamassassin_calls: Path) -> None:
    """A checks.json that is not a record (cut short, edited) only means the checks run again."""
    settings = factories.make_settings(tmp_path)
    build = built(tmp_path / "build")
    (build.folder / checked.RECORD_FILE).write_text('{"key": ', encoding="utf-8")
    checked.check_once(build, settings)
    assert runs(spamassassin_calls) == 1 and checked.recorded(build, settings) is not None


def test_where_and_how_it_is_sent_does_not_call_for_a_new_check(tmp_path: Path, spamassassin_calls: Path) -> None:
    """Another backend, ledger or SendGrid host (what `digest send` flags and DIGEST_* change) reuses the record."""
    from digest.config import SendGridSettings

    build = built(tmp_path / "build")
    checked.check_once(build, factories.make_settings(tmp_path))
    elsewhere = factories.make_settings(
        tmp_path / "other",
        backend="sendgrid",
        ledger_path=tmp_path / "l.sqlite3",
        sendgrid=SendGridSettings(host="http://127.0.0.1:9", concurrency=2),
    )
    checked.check_once(build, elsewhere)
    assert runs(spamassassin_calls) == 1
