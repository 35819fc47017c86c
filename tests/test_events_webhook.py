"""Events over HTTP and through the CLI: the signed webhook (real server, real ECDSA keys) and `digest reconcile`."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from _factories import copy_newsletter, make_settings
from click.testing import CliRunner

from digest.cli import main
from digest.ledger import Ledger
from digest.models import Recipient
from digest.testing.sendgrid_emulator import SendGridEmulator
from digest.testing.sendgrid_events import Signer, batches
from digest.unsubscribe import make_app, make_wsgi_server
from digest.webhook import PATH, load_key

SECRET = b"webhook-test-secret-0123456789abc"
ED = "mayors-innovation-2020-01"


@dataclass
class Endpoint:
    port: int
    ledger: Path

    def post(self, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request("POST", PATH, body=body, headers={"Content-Type": "application/json", **headers})
            answer = conn.getresponse()
            return answer.status, answer.read()
        finally:
            conn.close()

    def snapshot(self) -> tuple[Any, ...]:
        """Everything a post may change: recipients' states, stored events, suppressions."""
        with Ledger.open(self.ledger) as ledger:
            return tuple(
                ledger._db.read(sql).fetchall()
                for sql in (
                    "SELECT email_norm, state, error FROM recipient_rows ORDER BY email_norm",
                    "SELECT count(*) FROM events",
                    "SELECT * FROM suppressions",
                )
            )


def with_unknown_batches(path: Path, people: int, size: int) -> None:
    """An edition of `people` members (user0...), sent in batches of `size` that all ended unknown."""
    with Ledger.open(path) as ledger:
        ledger.begin_edition(ED, "mayors-innovation", "2020-01", "sha256:" + "0" * 64, "Subject")
        ledger.add_recipients(ED, [Recipient(f"user{i}@example.org", "") for i in range(people)])
        for n in range(1, people // size + 1):
            ledger.claim_batch(ED, size, f"r1-b{n:05d}", "sendgrid", "sha256:" + "0" * 64)
            ledger.mark_batch_unknown(f"r1-b{n:05d}", "no answer")


def delivered(people: range, size: int) -> list[dict[str, Any]]:
    """processed + delivered events, as SendGrid posts them, for members user<i> in batches of `size`."""
    out = []
    for i in people:
        batch = f"r1-b{i // size + 1:05d}"
        for kind in ("processed", "delivered"):
            out.append(
                {
                    "batch": batch,
                    "edition": ED,
                    "email": f"user{i}@example.org",
                    "event": kind,
                    "sg_event_id": f"{kind}-{i}",
                    "sg_message_id": f"{batch}.recvd-{i}",
                    "timestamp": 1764489600,
                }
            )
    return out


def body_of(events: list[dict[str, Any]]) -> bytes:
    (body,) = batches(events, max_bytes=1 << 30)
    return body


@pytest.fixture
def signer() -> Signer:
    return Signer()


@pytest.fixture
def endpoint(tmp_path: Path, signer: Signer) -> Iterator[Endpoint]:
    settings = make_settings(tmp_path, ledger_path=tmp_path / "ledger.sqlite3")
    with_unknown_batches(settings.ledger_path, 10, 5)
    app = make_app(settings, SECRET, tmp_path / "s.csv", webhook_key=load_key(signer.public_key))
    server = make_wsgi_server(app, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield Endpoint(server.server_port, settings.ledger_path)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_a_signed_post_is_applied_once_even_when_posted_twice(endpoint: Endpoint, signer: Signer) -> None:
    """Valid signature: 200 with counts; the same post again stores and changes nothing."""
    body = body_of(delivered(range(5), 5))
    status, answer = endpoint.post(body, signer.headers(body))
    assert status == 200 and json.loads(answer)["stored"] == 10 and json.loads(answer)["settled_sent"] == 5
    after_first = endpoint.snapshot()
    status, answer = endpoint.post(body, signer.headers(body))
    assert status == 200 and json.loads(answer)["stored"] == 0 and json.loads(answer)["duplicates"] == 10
    assert endpoint.snapshot() == after_first
    states = dict((e, s) for e, s, _ in after_first[0])
    assert [states[f"user{i}@example.org"] for i in range(10)] == ["sent"] * 5 + ["unknown"] * 5


def test_old_timestamps_are_accepted(endpoint: Endpoint, signer: Signer) -> None:
    """A retry signed two days ago still verifies: replays are harmless, refusing them would lose events."""
    body = body_of(delivered(range(1), 5))
    status, _ = endpoint.post(body, signer.headers(body, timestamp=str(int(time.time()) - 2 * 86400)))
    assert status == 200


def test_tampered_wrong_key_and_unsigned_posts_are_403_and_change_nothing(endpoint: Endpoint, signer: Signer) -> None:
    """A changed body, another key's signature, a missing header or a changed timestamp: 403, ledger unchanged."""
    body = body_of(delivered(range(5), 5))
    headers = signer.headers(body)
    before = endpoint.snapshot()
    tampered = body.replace(b"user1@", b"user9@")
    other = Signer().headers(body)
    without_signature = {k: v for k, v in headers.items() if "Signature" not in k}
    without_timestamp = {k: v for k, v in headers.items() if "Timestamp" not in k}
    moved = {**headers, "X-Twilio-Email-Event-Webhook-Timestamp": str(int(time.time()) + 1)}
    garbage = {**headers, "X-Twilio-Email-Event-Webhook-Signature": "not base64!"}
    for sent_body, sent_headers in [
        (tampered, headers),
        (body, other),
        (body, without_signature),
        (body, without_timestamp),
        (body, {}),
        (body, moved),
        (body, garbage),
    ]:
        status, _ = endpoint.post(sent_body, sent_headers)
        assert status == 403
    assert endpoint.snapshot() == before


def test_a_signed_post_that_is_not_events_is_400(endpoint: Endpoint, signer: Signer) -> None:
    """Signed but not an array of events: 400 naming the problem, nothing stored."""
    body = b'{"not": "events"}'
    status, answer = endpoint.post(body, signer.headers(body))
    assert status == 400 and b"no 'event' field" in answer
    assert endpoint.snapshot()[1] == [(0,)]


def test_ten_thousand_events_in_one_post_are_applied(tmp_path: Path, signer: Signer) -> None:
    """A 10,000-event post (5,000 recipients in 5 unknown batches) is stored and settles every recipient."""
    settings = make_settings(tmp_path, ledger_path=tmp_path / "ledger.sqlite3")
    with_unknown_batches(settings.ledger_path, 5000, 1000)
    app = make_app(settings, SECRET, tmp_path / "s.csv", webhook_key=load_key(signer.public_key))
    server = make_wsgi_server(app, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        body = body_of(delivered(range(5000), 1000))
        status, answer = Endpoint(server.server_port, settings.ledger_path).post(body, signer.headers(body))
    finally:
        server.shutdown()
        server.server_close()
    assert status == 200 and json.loads(answer)["stored"] == 10_000 and json.loads(answer)["settled_sent"] == 5000


def test_without_a_key_the_webhook_path_is_not_served(tmp_path: Path, signer: Signer) -> None:
    """No DIGEST_SENDGRID_WEBHOOK_KEY: /webhooks/sendgrid is 404, as any unknown path."""
    from wsgiref.util import setup_testing_defaults

    app = make_app(make_settings(tmp_path), SECRET, tmp_path / "s.csv")
    environ: dict[str, Any] = {"REQUEST_METHOD": "POST", "PATH_INFO": PATH}
    setup_testing_defaults(environ)
    statuses: list[str] = []
    app(environ, lambda status, headers, exc_info=None: statuses.append(status))  # type: ignore[arg-type,misc,return-value]
    assert statuses == ["404 Not Found"]


def test_a_bad_key_is_a_config_error_naming_the_variable() -> None:
    """A key that is not SendGrid's base64 P-256 key is refused at start, naming the variable and where to copy it."""
    from digest.errors import ConfigError

    with pytest.raises(ConfigError, match="DIGEST_SENDGRID_WEBHOOK_KEY is not a SendGrid verification key"):
        load_key("not-a-key")


# --- end to end through the CLI -----------------------------------------------------------------------------


MEMBERS = ["ada@example.org", "grace@example.org", "alan@example.org", "edsger@example.org"]


@pytest.fixture
def newsletter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "news"
    folder.mkdir()
    copy_newsletter(folder)
    (folder / "members.csv").write_text("email\n" + "".join(f"{m}\n" for m in MEMBERS), encoding="utf-8")
    monkeypatch.chdir(folder)
    monkeypatch.setenv("DIGEST_UNSUBSCRIBE_SECRET", SECRET.decode())
    monkeypatch.setenv("SENDGRID_API_KEY", "SG.test-key")
    return folder


def digest(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_a_bounce_and_a_complaint_in_edition_a_keep_them_out_of_edition_b(
    newsletter: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Edition A goes out; its events (a hard bounce, a spam report) are reconciled; edition B skips both."""
    send = ("--recipients", "members.csv", "--backend", "sendgrid", "--yes", "--no-spamassassin")
    with SendGridEmulator() as emulator:
        monkeypatch.setenv("DIGEST_SENDGRID_HOST", emulator.url)
        code, _, err = digest("send", "--month", "2020-01", *send)
        assert code == 0, err
        events = emulator.events()
        by = {e["email"]: e for e in events if e["event"] == "delivered"}
        events.append({**by["grace@example.org"], "event": "bounce", "type": "bounce", "reason": "550 5.1.1 unknown"})
        events.append({**by["alan@example.org"], "event": "spamreport"})
        for extra, name in zip(events[-2:], ("bounce-g", "spam-a"), strict=True):
            extra["sg_event_id"] = name
        (newsletter / "events.json").write_text(json.dumps(events), encoding="utf-8")
        code, out, err = digest("reconcile", "--events", "events.json")
        assert code == 0 and "2 added to the suppression list" in out, err
        code, out, _ = digest("suppressions", "--json")
        listed = {e["email"]: e["reason"] for e in json.loads(out)}
        assert listed == {"grace@example.org": "bounce: 550 5.1.1 unknown", "alan@example.org": "spam complaint"}
        code, out, _ = digest("status", ED, "--json")
        assert json.loads(out)["evidence"]["bounces"] == 1 and json.loads(out)["evidence"]["complaints"] == 1
        emulator.reset()
        code, out, err = digest("send", "--month", "2020-02", *send)
        assert code == 0, err
        assert sorted(str(m["email"]) for m in emulator.messages()) == ["ada@example.org", "edsger@example.org"]
        assert "2 suppressed" in out
        code, _, err = digest("suppressions", "remove", "alan@example.org", "--reason", "asked to come back")
        assert code == 1 and "--yes" in err
