# ruff: noqa: F401, F811  (pytest fixtures imported from _smtp_server are used as test arguments)
"""End to end through the CLI: the shipped content sent to the outbox, to aiosmtpd (STARTTLS + AUTH) and to
the SendGrid emulator; headers checked as messages arrive; a one-click unsubscribe removes a recipient."""

from __future__ import annotations

import email
import email.policy
import http.client
import json
import mailbox
import re
import shutil
import threading
import urllib.parse
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
from _factories import copy_newsletter
from _smtp_server import PASSWORD, USER, smtp_tls_auth, tls_files
from click.testing import CliRunner

from digest.checks import check_message
from digest.cli import main
from digest.config import load_settings
from digest.testing.sendgrid_emulator import SendGridEmulator
from digest.unsubscribe import make_app, make_wsgi_server
from digest.unsubscribe_tokens import verify_token

SECRET = "e2e-unsubscribe-secret-0123456789abcdef"
MEMBERS = [("ada@example.org", "Ada Lovelace"), ("grace@example.org", "Grace Hopper"), ("alan@example.org", "")]


@pytest.fixture
def newsletter(tmp_path: Path, repo: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the repository's newsletter folder (config, content, templates) in tmp_path."""
    folder = tmp_path / "news"
    folder.mkdir()
    copy_newsletter(folder)
    with (folder / "members.csv").open("w", encoding="utf-8") as fh:
        fh.write("email,name\n" + "".join(f"{a},{n}\n" for a, n in MEMBERS))
    monkeypatch.chdir(folder)
    monkeypatch.setenv("DIGEST_UNSUBSCRIBE_SECRET", SECRET)
    for var in ("SENDGRID_API_KEY", "DIGEST_SENDGRID_HOST", "DIGEST_SMTP_PASSWORD"):
        monkeypatch.delenv(var, raising=False)
    return folder


def digest(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def parse(raw: bytes) -> EmailMessage:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def unsubscribe_url(msg: EmailMessage) -> str:
    match = re.search(r"<(https://[^>]+)>", str(msg["List-Unsubscribe"]))
    assert match, msg["List-Unsubscribe"]
    return match.group(1)


def outbox_messages(folder: Path, edition: str = "") -> list[EmailMessage]:
    """Messages in the outbox: one Maildir per edition (all editions when none is named)."""
    boxes = [folder / "outbox" / edition] if edition else sorted((folder / "outbox").iterdir())
    return [parse(bytes(m)) for box in boxes for m in mailbox.Maildir(box, create=False)]


def test_test_send_writes_one_message_to_the_outbox(newsletter: Path) -> None:
    """digest send --to me@example.org writes one '[TEST]' message to the outbox Maildir; the ledger is untouched."""
    code, out, err = digest("send", "--month", "2020-01", "--to", "me@example.org")
    assert code == 0, err
    messages = outbox_messages(newsletter)
    assert len(messages) == 1
    assert messages[0]["To"] == "me@example.org" and str(messages[0]["Subject"]).startswith("[TEST] ")
    assert "Test send" in out and not (newsletter / "ledger.sqlite3").exists()


def test_list_send_over_smtp_with_starttls_and_auth(
    newsletter: Path,
    smtp_tls_auth: tuple[object, object],
    tls_files: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A list send arrives at aiosmtpd over STARTTLS with AUTH; each message passes the header and MIME checks,
    and its one-click URL is signed for that recipient and is the visible link in both parts."""
    controller, sink = smtp_tls_auth
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_files[0]))  # trust the test's own certificate
    monkeypatch.setenv("DIGEST_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("DIGEST_SMTP_PORT", str(controller.port))  # type: ignore[attr-defined]
    monkeypatch.setenv("DIGEST_SMTP_SECURITY", "starttls")
    monkeypatch.setenv("DIGEST_SMTP_USER", USER)
    monkeypatch.setenv("DIGEST_SMTP_PASSWORD", PASSWORD)
    code, out, err = digest(
        "send", "--month", "2020-01", "--recipients", "members.csv", "--backend", "smtp", "--yes", "--no-spamassassin"
    )
    assert code == 0, err
    assert PASSWORD not in out + err
    received = sink.messages  # type: ignore[attr-defined]
    assert sorted(r.rcpt_tos[0] for r in received) == sorted(a for a, _ in MEMBERS)
    assert all(r.tls and r.user == USER for r in received)
    settings = load_settings(newsletter / "digest.toml")
    for r in received:
        msg = parse(r.content)
        failing = [c.line() for c in check_message(r.content, settings, list_send=True) if c.status == "fail"]
        assert not failing, failing
        url = unsubscribe_url(msg)
        token = urllib.parse.parse_qs(urllib.parse.urlparse(url).query)["token"][0]
        assert verify_token(token, SECRET.encode())[0] == r.rcpt_tos[0]
        text, html = (part.get_content() for part in msg.iter_parts())
        assert url in text and f'href="{url.replace("&", "&amp;")}"' in html
    code, out, _ = digest("status", "--json")
    assert json.loads(out)["sent"] == 3


def test_sendgrid_test_send_and_list_send(newsletter: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Through the emulator: a --to test send is accepted; the list send arrives once per recipient with
    per-recipient one-click headers; a re-run says there is nothing to do."""
    with SendGridEmulator() as emulator:
        monkeypatch.setenv("DIGEST_SENDGRID_HOST", emulator.url)
        monkeypatch.setenv("SENDGRID_API_KEY", "SG.test-key")
        code, _, err = digest("send", "--month", "2020-01", "--to", "me@example.org", "--backend", "sendgrid")
        assert code == 0, err
        assert emulator.messages(to="me@example.org")[0]["subject"].startswith("[TEST] ")
        emulator.reset()
        args = ("send", "--month", "2020-01", "--recipients", "members.csv", "--backend", "sendgrid", "--yes")
        code, out, err = digest(*args, "--no-spamassassin")
        assert code == 0, err
        got = emulator.messages()
        by_address = {str(m["email"]): m for m in got}
        assert sorted(by_address) == sorted(a for a, _ in MEMBERS) and len(got) == 3
        # The view-in-browser URL is the same for everyone: it is in the content, not in 3 x 2 substitutions.
        (body,) = [json.loads(str(r["body"])) for r in emulator.requests()]
        view = "https://www.example.org/digest/mayors-innovation-2020-01"
        assert f'href="{view}"' in body["content"][1]["value"] and view in body["content"][0]["value"]
        subs = [sorted(p["substitutions"]) for p in body["personalizations"]]
        assert all("%%view_url%%" not in keys and "%%view_url:text%%" not in keys for keys in subs)
        assert all("%%unsubscribe_url%%" in keys and "%%unsubscribe_url:text%%" in keys for keys in subs)
        for address, message in by_address.items():
            headers = message["headers"]
            assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
            url = re.search(r"<(https://[^>]+)>", headers["List-Unsubscribe"]).group(1)  # type: ignore[union-attr]
            assert url in message["text"] and "%%" not in message["html"]
            token = urllib.parse.parse_qs(urllib.parse.urlparse(url).query)["token"][0]
            assert verify_token(token, SECRET.encode())[0] == address
        code, out, _ = digest(*args, "--no-spamassassin")
        assert code == 0 and "nothing to do" in out
        assert len(emulator.messages()) == 3


@pytest.fixture
def unsubscribe_server(newsletter: Path) -> Iterator[str]:
    settings = load_settings(newsletter / "digest.toml")
    app = make_app(settings, SECRET.encode(), settings.path(settings.suppression_file))
    server = make_wsgi_server(app, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_one_click_unsubscribe_removes_recipient_from_next_send(newsletter: Path, unsubscribe_server: str) -> None:
    """A one-click POST of Grace's List-Unsubscribe URL (RFC 8058) takes her off the next edition."""
    code, _, err = digest("send", "--month", "2020-01", "--recipients", "members.csv", "--yes", "--no-spamassassin")
    assert code == 0, err
    grace = next(m for m in outbox_messages(newsletter, "mayors-innovation-2020-01") if "grace@" in str(m["To"]))
    url = urllib.parse.urlparse(unsubscribe_url(grace))
    conn = http.client.HTTPConnection(unsubscribe_server, timeout=10)
    conn.request(
        "POST",
        f"{url.path}?{url.query}",
        body="List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    response = conn.getresponse()
    assert response.status == 200 and response.getheader("Location") is None
    conn.close()
    code, out, err = digest(
        "send",
        "--month",
        "2019-12",
        "--recipients",
        "members.csv",
        "--yes",
        "--no-spamassassin",
        "--report",
        "report.json",
    )
    assert code == 0, err
    report = json.loads((newsletter / "report.json").read_text())
    assert report["sent"] == 2 and report["skipped_suppressed"] == 1
    december = [str(m["To"]) for m in outbox_messages(newsletter, "mayors-innovation-2019-12")]
    assert len(december) == 2 and not any("grace@" in to for to in december)


def test_partial_failure_exits_4_and_retry_sends_the_failed(newsletter: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 5xx for one recipient: the run goes on, exits 4, status shows the failure, retry re-sends only her."""
    from _smtp_server import Sink, running

    sink = Sink(permanent={"grace@example.org": "550 5.1.1 No such user"})
    with running(sink) as controller:
        monkeypatch.setenv("DIGEST_SMTP_HOST", "127.0.0.1")
        monkeypatch.setenv("DIGEST_SMTP_PORT", str(controller.port))
        monkeypatch.setenv("DIGEST_SMTP_SECURITY", "none")
        args = ("--month", "2020-01", "--recipients", "members.csv", "--backend", "smtp", "--yes", "--no-spamassassin")
        code, out, _ = digest("send", *args)
        assert code == 4 and "1 failed" in out
        assert sorted(r.rcpt_tos[0] for r in sink.messages) == ["ada@example.org", "alan@example.org"]
        code, out, _ = digest("status", "--json")
        data = json.loads(out)
        assert (data["sent"], data["failed"]) == (2, 1)
        assert data["failures"][0]["email"] == "grace@example.org" and "550" in data["failures"][0]["error"]
        sink.permanent.clear()
        code, out, err = digest("retry", "--backend", "smtp", "--yes", "--skip-checks")
        assert code == 0, out + err
        assert sorted(r.rcpt_tos[0] for r in sink.messages) == [
            "ada@example.org",
            "alan@example.org",
            "grace@example.org",
        ]
