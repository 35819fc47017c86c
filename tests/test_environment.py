"""Environment: a misspelt DIGEST_* variable gets a warning naming the one it is close to, never its value."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from digest.cli import main
from digest.config import SECRET_ENV, Settings, _from_env, load_settings
from digest.environment import misspelt

REPO = Path(__file__).resolve().parent.parent
SETTINGS = Settings(root=REPO)


def _misspelt(*names: str) -> dict[str, str]:
    return misspelt(dict.fromkeys(names, "x"), _from_env, SETTINGS, SECRET_ENV)


def test_a_misspelt_variable_is_matched_to_the_one_meant() -> None:
    """Settings, nested settings, secrets and variables read elsewhere are all suggested, whatever the case."""
    assert _misspelt("DIGEST_SMPT_HOST", "DIGEST_TIMEZONES", "DIGEST_UNSUBSCRIBE_SECRETS", "DIGEST_NOCACHE") == {
        "DIGEST_SMPT_HOST": "DIGEST_SMTP_HOST",
        "DIGEST_TIMEZONES": "DIGEST_TIMEZONE",
        "DIGEST_UNSUBSCRIBE_SECRETS": "DIGEST_UNSUBSCRIBE_SECRET",
        "DIGEST_NOCACHE": "DIGEST_NO_CACHE",
    }
    assert _misspelt("digest_smtp_host") == {"digest_smtp_host": "DIGEST_SMTP_HOST"}


def test_known_and_unrelated_variables_are_left_alone() -> None:
    """Variables digest reads, and DIGEST_* names of other tools that are close to none of them, get no warning."""
    assert _misspelt("DIGEST_SMTP_HOST", "DIGEST_WORDS_POSTED", "DIGEST_CONFIG", *SECRET_ENV) == {}
    assert _misspelt("DIGEST_REQUIRE_SPAMASSASSIN", "DIGEST_UPDATE_GOLDEN", "PATH") == {}


def test_every_variable_the_code_and_docs_name_is_read_without_a_warning() -> None:
    """Each DIGEST_* name in the package, README and docs is either read or close to nothing (no false alarm)."""
    files = [*(REPO / "src" / "digest").rglob("*.py"), REPO / "README.md", *(REPO / "docs").glob("*.md")]
    names = {m for f in files for m in re.findall(r"\bDIGEST_[A-Z0-9]+(?:_[A-Z0-9]+)*\b", f.read_text("utf-8"))}
    assert "DIGEST_NO_CACHE" in names and "DIGEST_SMTP_HOST" in names
    assert _misspelt(*names) == {}


def test_loading_settings_logs_the_warning_without_the_value(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """load_settings warns once per misspelt variable and never shows the value, which may be a secret."""
    with caplog.at_level(logging.WARNING, logger="digest"):
        load_settings(REPO / "digest.toml", env={"DIGEST_SMTP_PASWORD": "hunter2-secret"})
    assert [r.getMessage() for r in caplog.records] == [
        "DIGEST_SMTP_PASWORD is not a variable digest reads and is ignored; did you mean DIGEST_SMTP_PASSWORD?"
    ]
    assert "hunter2" not in caplog.text


def test_the_command_line_shows_the_warning_on_stderr(repo: Path) -> None:
    """digest history with DIGEST_SMPT_HOST set still works and says which variable was meant."""
    runner = CliRunner(env={"DIGEST_SMPT_HOST": "mail.example.org"})
    result = runner.invoke(main, ["--config", str(repo / "digest.toml"), "history", "--json"])
    assert result.exit_code == 0, result.output
    warning = "DIGEST_SMPT_HOST is not a variable digest reads and is ignored; did you mean DIGEST_SMTP_HOST?"
    assert f"Warning: {warning}" in result.stderr
    assert "mail.example.org" not in result.stderr
