"""Secrets come only from the environment and never appear in output, logs, reports, builds or the ledger."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from _factories import copy_newsletter
from click.testing import CliRunner

from digest.cli import main
from digest.testing.sendgrid_emulator import SendGridEmulator

API_KEY = "SG.very-secret-api-key-4f9d2c"
UNSUB_SECRET = "unsubscribe-secret-7c1e9a0b5d3f"


def every_file_under(folder: Path) -> bytes:
    return b"\n".join(p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file())


@pytest.fixture
def newsletter(tmp_path: Path, repo: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "news"
    copy_newsletter(folder)
    (folder / "members.csv").write_text("email,name\na@example.org,A\nb@example.org,B\n", encoding="utf-8")
    monkeypatch.chdir(folder)
    monkeypatch.setenv("DIGEST_UNSUBSCRIBE_SECRET", UNSUB_SECRET)
    return folder


def test_sendgrid_key_and_unsubscribe_secret_never_leak(
    newsletter: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A list send, a status and a history at DEBUG log level: neither secret is anywhere we write or print."""
    caplog.set_level(logging.DEBUG)
    with SendGridEmulator(keys=(API_KEY,)) as emulator:
        runner = CliRunner(env={"DIGEST_SENDGRID_HOST": emulator.url, "SENDGRID_API_KEY": API_KEY})
        outputs = []
        for args in (
            [
                "send",
                "--month",
                "2020-01",
                "--recipients",
                "members.csv",
                "--backend",
                "sendgrid",
                "--yes",
                "--no-spamassassin",
                "--report",
                "report.json",
            ],
            ["status", "--json"],
            ["history"],
            ["send", "--month", "2020-01", "--to", "me@example.org", "--backend", "sendgrid", "--no-spamassassin"],
        ):
            result = runner.invoke(main, args, catch_exceptions=False)
            assert result.exit_code == 0, result.stderr
            outputs.append(result.stdout + result.stderr)
        assert len(emulator.messages(to="a@example.org")) == 1
    written = every_file_under(newsletter)
    for secret in (API_KEY, UNSUB_SECRET):
        assert secret not in "".join(outputs)
        assert secret not in caplog.text
        assert secret.encode() not in written, "a file under the newsletter folder holds a secret"


def test_rejected_key_message_names_the_variable_not_the_key(
    newsletter: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """SendGrid's 401 stops the run with a message about SENDGRID_API_KEY that does not repeat the key."""
    caplog.set_level(logging.DEBUG)
    with SendGridEmulator() as emulator:
        runner = CliRunner(env={"DIGEST_SENDGRID_HOST": emulator.url, "SENDGRID_API_KEY": API_KEY})
        result = runner.invoke(
            main,
            [
                "send",
                "--month",
                "2020-01",
                "--recipients",
                "members.csv",
                "--backend",
                "sendgrid",
                "--yes",
                "--no-spamassassin",
            ],
            catch_exceptions=False,
        )
    assert result.exit_code == 1
    assert "SENDGRID_API_KEY" in result.stderr and "Traceback" not in result.stderr
    assert API_KEY not in result.stdout + result.stderr + caplog.text


def test_smtp_password_missing_names_the_variable(newsletter: Path) -> None:
    """An SMTP user without DIGEST_SMTP_PASSWORD is refused before connecting, naming the variable."""
    runner = CliRunner(env={"DIGEST_SMTP_USER": "someone", "DIGEST_SMTP_PASSWORD": None, "DIGEST_SMTP_PORT": "1"})
    result = runner.invoke(
        main,
        [
            "send",
            "--month",
            "2020-01",
            "--recipients",
            "members.csv",
            "--backend",
            "smtp",
            "--yes",
            "--no-spamassassin",
        ],
    )
    assert result.exit_code == 1 and "DIGEST_SMTP_PASSWORD" in result.stderr
