"""deliver/sendgrid.py with the real sendgrid client against the project's SendGrid emulator on 127.0.0.1."""

from __future__ import annotations

import json
import logging
import math
import random
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import _factories as factories
import pytest

from digest.config import SendGridSettings
from digest.deliver.base import Personal
from digest.deliver.sendgrid import SendGridBackend
from digest.errors import BatchOutcomeUnknown, DeliveryError
from digest.models import Build, Recipient
from digest.testing.sendgrid_emulator import DEFAULT_API_KEY, Limits, SendGridEmulator

HTML = '<p>Hi %%name%%</p><p>News &amp; more.</p><a href="%%unsubscribe_url%%">Unsubscribe</a>' + (
    ' <a href="%%view_url%%">view</a>'
)
TEXT = "Hi %%name:text%%\nNews & more.\nUnsubscribe: %%unsubscribe_url:text%%\n"
EDITION = "mayors-innovation-2020-01"


def make_build() -> Build:
    return factories.make_build(HTML, TEXT, edition=EDITION, reply_to="Info <info@example.org>")


def person(i: int, name: str | None = None, **headers: str) -> Personal:
    address = f"user{i}@example.org"
    shown = f"User {i}" if name is None else name
    url = f"https://example.org/unsubscribe?token=tok{i}&x=1"
    values = {"name": shown, "email": address, "unsubscribe_url": url, "view_url": "https://example.org/d/2020-01"}
    headers = headers or {"List-Unsubscribe": f"<{url}>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}
    return Personal(Recipient(address, shown), values, headers)


@pytest.fixture
def emulator() -> Iterator[SendGridEmulator]:
    """A fresh emulator that accepts the default test key."""
    with SendGridEmulator() as emu:
        yield emu


@pytest.fixture(autouse=True)
def api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test starts with the emulator's key in SENDGRID_API_KEY and no host override."""
    monkeypatch.setenv("SENDGRID_API_KEY", DEFAULT_API_KEY)
    monkeypatch.delenv("DIGEST_SENDGRID_HOST", raising=False)


def make_backend(host: str, sleeps: list[float] | None = None, **settings: Any) -> SendGridBackend:
    """A backend whose waits are recorded instead of slept."""
    record = sleeps.append if sleeps is not None else (lambda _s: None)
    b = SendGridBackend(SendGridSettings(**settings), host=host, sleep=record, rng=random.Random(1))
    b.open()
    return b


def bodies(emu: SendGridEmulator) -> list[dict[str, Any]]:
    return [json.loads(str(r["body"])) for r in emu.requests()]


def test_2500_recipients_go_in_three_valid_requests_each_personalised(emulator: SendGridEmulator) -> None:
    """2,500 recipients in batches of 1,000: three accepted requests, every recipient once with its own URL."""
    b = make_backend(emulator.url)
    everyone = [person(i) for i in range(2500)]
    results = [b.send_batch(make_build(), everyone[i : i + 1000], f"b{i // 1000}") for i in range(0, 2500, 1000)]
    b.close()
    requests = emulator.requests()
    assert [r["status"] for r in requests] == [202, 202, 202]
    assert [len(json.loads(str(r["body"]))["personalizations"]) for r in requests] == [1000, 1000, 500]
    assert [r.provider_id for r in results] == [r["message_id"] for r in requests]
    assert sum(len(r.sent) for r in results) == 2500 and not any(r.failed or r.unknown for r in results)
    messages = emulator.messages()
    assert sorted(str(m["email"]) for m in messages) == sorted(p.recipient.email for p in everyone)
    for m in messages:
        i = int(str(m["email"])[4:].split("@")[0])
        assert f'href="https://example.org/unsubscribe?token=tok{i}&amp;x=1"' in str(m["html"])
        assert f"Unsubscribe: https://example.org/unsubscribe?token=tok{i}&x=1" in str(m["text"])
        assert f"Hi User {i}</p>" in str(m["html"])
        headers = m["headers"]
        assert isinstance(headers, dict)
        assert headers["List-Unsubscribe"] == f"<https://example.org/unsubscribe?token=tok{i}&x=1>"
        assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_list_id_is_a_message_header_of_every_request(emulator: SendGridEmulator) -> None:
    """The build's List-Id goes once per request (message-level headers), so every recipient's message has it."""
    b = make_backend(emulator.url)
    build = factories.make_build(HTML, TEXT, edition=EDITION, list_id="Mayors <mayors-innovation.example.org>")
    b.send_batch(build, [person(1), person(2)], "b1")
    b.close()
    assert bodies(emulator)[0]["headers"] == {"List-Id": "Mayors <mayors-innovation.example.org>"}
    assert [m["headers"]["List-Id"] for m in emulator.messages()] == ["Mayors <mayors-innovation.example.org>"] * 2


def test_substitutions_only_for_the_placeholders_the_content_has(emulator: SendGridEmulator) -> None:
    """Each personalization carries a substitution for every placeholder in the content (subject included)
    and for nothing else: %%email%% is in neither part here, so no recipient carries it."""
    build = factories.make_build(
        '<p>Hi %%name%%</p><a href="%%unsubscribe_url%%">x</a>',
        "Unsubscribe: %%unsubscribe_url:text%%\n",
        subject="News for %%name:text%%",
    )
    b = make_backend(emulator.url)
    b.send_batch(build, [person(1, "Ann & Bo")], "b1")
    (body,) = bodies(emulator)
    assert body["personalizations"][0]["substitutions"] == {
        "%%name%%": "Ann &amp; Bo",
        "%%name:text%%": "Ann & Bo",
        "%%unsubscribe_url%%": "https://example.org/unsubscribe?token=tok1&amp;x=1",
        "%%unsubscribe_url:text%%": "https://example.org/unsubscribe?token=tok1&x=1",
    }
    (message,) = emulator.messages()
    assert message["subject"] == "News for Ann & Bo" and "%%" not in str(message["html"]) + str(message["text"])


def test_message_level_fields_asm_categories_custom_args(emulator: SendGridEmulator) -> None:
    """The stored request carries from, reply_to, subject, plain-then-html content, asm, categories, custom_args."""
    b = make_backend(emulator.url, asm_group_id=42, categories=("digest", "monthly"))
    b.send_batch(make_build(), [person(1)], "batch-7", test=True)
    (body,) = bodies(emulator)
    assert body["from"] == {"email": "news@example.org", "name": "Mayors Innovation Project"}
    assert body["reply_to"] == {"email": "info@example.org", "name": "Info"}
    assert body["subject"] == "[TEST] January digest"
    assert [c["type"] for c in body["content"]] == ["text/plain", "text/html"]
    assert body["asm"] == {"group_id": 42}
    assert body["categories"] == ["digest", "monthly", EDITION]
    assert body["custom_args"] == {"edition": EDITION, "batch": "batch-7"}
    assert "mail_settings" not in body
    (message,) = emulator.messages()
    assert message["custom_args"] == {"edition": EDITION, "batch": "batch-7"}


def test_names_with_commas_and_semicolons_are_accepted(emulator: SendGridEmulator) -> None:
    """SendGrid refuses ';' and ',' in to.name: they are dropped there, while the greeting keeps the name."""
    b = make_backend(emulator.url)
    result = b.send_batch(make_build(), [person(1, "Lee, Ann; PhD"), person(2, "")], "b1")
    assert result.sent == ["user1@example.org", "user2@example.org"]
    first, second = emulator.messages()
    assert first["name"] == "Lee Ann PhD" and "Hi Lee, Ann; PhD</p>" in str(first["html"])
    assert second["name"] is None


def test_429_waits_until_the_rate_limit_reset(emulator: SendGridEmulator) -> None:
    """A 429 with X-RateLimit-Reset is retried only after that moment (really waited, with a short reset)."""
    emulator.add_fault(429, reset_in=0.3)
    b = SendGridBackend(SendGridSettings(), host=emulator.url)  # real sleep and clock
    b.open()
    started = time.monotonic()
    result = b.send_batch(make_build(), [person(1)], "b1")
    waited = time.monotonic() - started
    first, second = emulator.requests()
    assert (first["status"], second["status"]) == (429, 202)
    reset = math.ceil(float(str(first["received_at"])) + 0.3)
    assert float(str(second["received_at"])) >= reset - 0.05  # not before the announced reset
    assert 0.25 <= waited < 3.0
    assert result.sent == ["user1@example.org"]


def test_429_wait_is_capped(emulator: SendGridEmulator) -> None:
    """A reset far in the future waits at most max_wait before trying again."""
    emulator.add_fault(429, reset_in=3600)
    sleeps: list[float] = []
    b = SendGridBackend(SendGridSettings(), host=emulator.url, sleep=sleeps.append, max_wait=5.0)
    b.open()
    assert b.send_batch(make_build(), [person(1)], "b1").sent == ["user1@example.org"]
    assert len(sleeps) == 1 and 4.9 < sleeps[0] <= 5.0


def test_429_without_reset_backs_off_with_jitter(emulator: SendGridEmulator) -> None:
    """A bare 429 (no rate-limit headers) waits a full-jitter backoff, growing with each attempt."""
    emulator.add_fault(429, count=3)
    sleeps: list[float] = []
    b = make_backend(emulator.url, sleeps)
    assert b.send_batch(make_build(), [person(1)], "b1").sent == ["user1@example.org"]
    assert len(sleeps) == 3 and all(0 <= s <= limit for s, limit in zip(sleeps, (1, 2, 4), strict=True))
    assert [r["status"] for r in emulator.requests()] == [429, 429, 429, 202]


def test_500_then_success_is_retried(emulator: SendGridEmulator) -> None:
    """A 500 means not accepted: the same batch is sent again after a backoff and accepted once."""
    emulator.add_fault(500)
    sleeps: list[float] = []
    b = make_backend(emulator.url, sleeps)
    result = b.send_batch(make_build(), [person(1), person(2)], "b1")
    assert result.sent == ["user1@example.org", "user2@example.org"]
    assert [r["status"] for r in emulator.requests()] == [500, 202] and len(sleeps) == 1
    assert len(emulator.messages()) == 2


def test_5xx_beyond_max_retries_stops_the_run(emulator: SendGridEmulator) -> None:
    """503 on every try: after max_retries retries a DeliveryError says nothing of the batch was accepted."""
    emulator.add_fault(503, count=10)
    b = make_backend(emulator.url, [], max_retries=2)
    with pytest.raises(DeliveryError, match=r"SendGrid answered 503 .* 3 times; nothing of this batch was accepted"):
        b.send_batch(make_build(), [person(1)], "b1")
    assert len(emulator.requests()) == 3


def test_400_shows_sendgrids_field_and_message(emulator: SendGridEmulator) -> None:
    """A 400 is not retried; the error names SendGrid's field (with the recipient it points at) and message."""
    b = make_backend(emulator.url)
    bad = person(2, **{"X Bad Header": "v"})
    with pytest.raises(DeliveryError) as err:
        b.send_batch(make_build(), [person(1), bad], "b9")
    message = str(err.value)
    assert "SendGrid rejected batch b9 (400)" in message
    assert "personalizations.1.headers (user2@example.org):" in message
    assert len(emulator.requests()) == 1


def test_400_for_an_unknown_asm_group(emulator: SendGridEmulator) -> None:
    """An asm group the account does not have: SendGrid's message and field asm.group_id reach the user."""
    emulator.configure(asm_groups=[1])
    b = make_backend(emulator.url, asm_group_id=99)
    with pytest.raises(DeliveryError, match=r"asm\.group_id: The ASM group ID must be a valid Group ID"):
        b.send_batch(make_build(), [person(1)], "b1")


def test_401_stops_at_once_and_never_shows_the_key(
    emulator: SendGridEmulator, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A wrong key: one request, a clear message naming SENDGRID_API_KEY, and the key in no message or log."""
    wrong = "SG.wrong-key-that-must-not-leak"
    monkeypatch.setenv("SENDGRID_API_KEY", wrong)
    caplog.set_level(logging.DEBUG)
    b = make_backend(emulator.url)
    with pytest.raises(DeliveryError) as err:
        b.send_batch(make_build(), [person(1)], "b1")
    message = str(err.value)
    assert message.startswith("SendGrid rejected the API key (401") and "SENDGRID_API_KEY" in message
    assert wrong not in message and wrong not in repr(err.value)
    assert "Authorization" in caplog.text and wrong not in caplog.text  # the client logs headers at DEBUG
    assert len(emulator.requests()) == 1


def test_403_stops_at_once(emulator: SendGridEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """A key without Mail Send permission: 403, one request, the message says what to check, no key."""
    emulator.configure(keys=["SG.scopeless"], scopeless_keys=["SG.scopeless"])
    monkeypatch.setenv("SENDGRID_API_KEY", "SG.scopeless")
    b = make_backend(emulator.url)
    with pytest.raises(DeliveryError, match="403.*Mail Send permission") as err:
        b.send_batch(make_build(), [person(1)], "b1")
    assert "SG.scopeless" not in str(err.value) and len(emulator.requests()) == 1


def test_413_is_a_delivery_error(emulator: SendGridEmulator) -> None:
    """A request over the size limit is refused with advice to lower batch_size."""
    emulator.configure(limits=Limits(max_body_bytes=2000))
    b = make_backend(emulator.url)
    with pytest.raises(DeliveryError, match=r"too large \(413.*batch_size"):
        b.send_batch(make_build(), [person(i) for i in range(20)], "b1")


def test_dropped_answer_is_outcome_unknown_and_not_retried(emulator: SendGridEmulator) -> None:
    """The emulator stores the request and hangs up: BatchOutcomeUnknown, and no second request (no duplicates)."""
    emulator.add_fault(drop=True)
    b = make_backend(emulator.url, [])
    with pytest.raises(BatchOutcomeUnknown, match="may have accepted"):
        b.send_batch(make_build(), [person(1), person(2)], "b1")
    assert len(emulator.requests()) == 1 and len(emulator.messages()) == 2


def test_read_timeout_is_outcome_unknown(emulator: SendGridEmulator) -> None:
    """An answer slower than [sendgrid] timeout is ambiguous too: BatchOutcomeUnknown, not a retry."""
    emulator.add_fault(delay=2.0)
    b = make_backend(emulator.url, [], timeout=0.3)
    with pytest.raises(BatchOutcomeUnknown, match="TimeoutError"):
        b.send_batch(make_build(), [person(1)], "b1")
    assert len(emulator.requests()) == 1


def test_connection_refused_is_retried_then_a_delivery_error() -> None:
    """Nothing listening: nothing can have been sent, so it is retried max_retries times, then DeliveryError."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sleeps: list[float] = []
    b = make_backend(f"http://127.0.0.1:{port}", sleeps, max_retries=3)
    with pytest.raises(DeliveryError, match=rf"cannot reach SendGrid at http://127\.0\.0\.1:{port} .*after 4 tries"):
        b.send_batch(make_build(), [person(1)], "b1")
    assert len(sleeps) == 3


def test_sandbox_mode_gets_200(emulator: SendGridEmulator) -> None:
    """With sandbox on, SendGrid validates and answers 200; the batch counts as sent with provider_id 'sandbox'."""
    b = make_backend(emulator.url, sandbox=True)
    result = b.send_batch(make_build(), [person(1)], "b1")
    assert result.sent == ["user1@example.org"] and result.provider_id == "sandbox"
    assert bodies(emulator)[0]["mail_settings"] == {"sandbox_mode": {"enable": True}}
    assert emulator.stats()["sandbox"] == 1


def test_oversized_personal_values_fail_that_recipient_only(emulator: SendGridEmulator) -> None:
    """A recipient whose substitutions exceed SendGrid's 10,000 bytes fails alone instead of sinking the request."""
    b = make_backend(emulator.url)
    result = b.send_batch(make_build(), [person(1), person(2, "N" * 6000)], "b1")
    assert result.sent == ["user1@example.org"]
    assert [e for e, _ in result.failed] == ["user2@example.org"] and "10,000" in result.failed[0][1]
    assert [m["email"] for m in emulator.messages()] == ["user1@example.org"]


def test_body_is_the_json_that_json_dumps_makes_of_the_payload(emulator: SendGridEmulator) -> None:
    """The body written from pre-encoded pieces is byte for byte json.dumps of the same payload as dicts."""
    awkward = ['Ann "Quoted" \\ Back', "Zoë Ünal 😀", "Tab\there\u2028", "<b>&amp;</b> 'x'", "Smith, Ann; Jr"]
    batch = [person(i, name) for i, name in enumerate(awkward)] + [person(9, "")]
    batch.append(Personal(Recipient("bare@example.org"), {"unsubscribe_url": "https://example.org/u?t=1"}, {}))
    b = make_backend(emulator.url)
    body, included, _ = b.build_body(make_build(), batch, "b1", False)
    payload = json.loads(body)
    assert body == json.dumps(payload).encode("ascii")
    assert len(payload["personalizations"]) == len(included) == len(batch)
    first = payload["personalizations"][0]
    assert first["to"] == [{"email": "user0@example.org", "name": awkward[0]}]
    assert first["substitutions"]["%%name%%"] == "Ann &quot;Quoted&quot; \\ Back"
    assert first["substitutions"]["%%unsubscribe_url:text%%"] == "https://example.org/unsubscribe?token=tok0&x=1"
    assert first["headers"]["List-Unsubscribe"] == "<https://example.org/unsubscribe?token=tok0&x=1>"
    assert payload["personalizations"][4]["to"][0]["name"] == "Smith Ann Jr"
    assert payload["personalizations"][5]["to"] == [{"email": "user9@example.org"}]
    assert "headers" not in payload["personalizations"][-1]
    assert payload["custom_args"] == {"edition": EDITION, "batch": "b1"}
    assert b.send_batch(make_build(), batch, "b1").sent == [p.recipient.email for p in batch]
    assert len(emulator.messages()) == len(batch)


def test_missing_key_fails_at_open(monkeypatch: pytest.MonkeyPatch) -> None:
    """No SENDGRID_API_KEY: open() raises a DeliveryError naming the variable, before any request."""
    monkeypatch.delenv("SENDGRID_API_KEY")
    with pytest.raises(DeliveryError, match="SENDGRID_API_KEY is not set"):
        SendGridBackend(SendGridSettings()).open()


def test_host_comes_from_the_environment(emulator: SendGridEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """DIGEST_SENDGRID_HOST points the backend at another host (EU, or an emulator), trailing slash ignored."""
    monkeypatch.setenv("DIGEST_SENDGRID_HOST", emulator.url + "/")
    b = SendGridBackend(SendGridSettings())
    assert b.host == emulator.url
    b.open()
    assert b.send_batch(make_build(), [person(1)], "b1").sent == ["user1@example.org"]


class _StandIn:
    """A bare HTTP/1.1 server on 127.0.0.1 that reads each request and answers 202; it counts connections and,
    with `close_after`, closes each connection after answering without saying so (an idle timeout)."""

    def __init__(self, close_after: bool = False):
        import http.server
        import threading

        self.ports: list[int] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers["Content-Length"]))
                outer.ports.append(self.client_address[1])
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.send_header("X-Message-Id", "standin")
                self.end_headers()
                self.close_connection = close_after

            def log_message(self, *args: Any) -> None:
                pass

        class Server(http.server.ThreadingHTTPServer):
            def shutdown_request(self, request: Any) -> None:
                super().shutdown_request(request)
                outer.closed += 1

        self.closed = 0
        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_requests_share_one_kept_alive_connection() -> None:
    """Batch after batch goes over the same HTTP connection (no connect, no TLS handshake per request)."""
    stand_in = _StandIn()
    try:
        b = make_backend(stand_in.url)
        for i in range(4):
            assert b.send_batch(make_build(), [person(i)], f"b{i}").provider_id == "standin"
        b.close()
    finally:
        stand_in.close()
    assert len(stand_in.ports) == 4 and len(set(stand_in.ports)) == 1


def test_a_connection_the_server_closed_while_idle_is_not_reused() -> None:
    """A kept-alive connection the server has closed is replaced before sending, never an unknown outcome."""
    stand_in = _StandIn(close_after=True)
    try:
        b = make_backend(stand_in.url)
        for i in range(3):
            assert b.send_batch(make_build(), [person(i)], f"b{i}").sent == [f"user{i}@example.org"]
            deadline = time.monotonic() + 10
            while stand_in.closed <= i and time.monotonic() < deadline:
                time.sleep(0.005)  # the server has closed the idle connection before the next request
            time.sleep(0.01)
        b.close()
    finally:
        stand_in.close()
    assert len(set(stand_in.ports)) == 3


def test_a_429_holds_back_the_next_request_of_every_batch(emulator: SendGridEmulator) -> None:
    """After a 429 with a reset time, a request of another batch waits out the same pause before it leaves."""
    emulator.add_fault(429, reset_in=30)
    sleeps: list[float] = []
    b = make_backend(emulator.url, sleeps)  # sleeps are recorded, not slept: the pause is still ahead
    assert b.send_batch(make_build(), [person(1)], "b1").sent == ["user1@example.org"]
    assert b.send_batch(make_build(), [person(2)], "b2").sent == ["user2@example.org"]
    assert len(sleeps) == 2 and all(25 < s <= 31 for s in sleeps)  # the reset is a whole second
    assert [r["status"] for r in emulator.requests()] == [429, 202, 202]


def test_concurrency_defaults_to_four_and_is_bounded(tmp_path: Path) -> None:
    """[sendgrid] concurrency is 4 unless set; 0 or more than 16 is refused naming the setting and its range."""
    from digest.config import load_settings
    from digest.errors import ConfigError

    (tmp_path / "digest.toml").write_text(
        'name = "News"\nslug = "news"\nsender = "News <news@example.org>"\n', encoding="utf-8"
    )
    assert SendGridBackend(load_settings(env={}, cwd=tmp_path).sendgrid).concurrency == 4
    assert load_settings(env={"DIGEST_SENDGRID_CONCURRENCY": "1"}, cwd=tmp_path).sendgrid.concurrency == 1
    for bad in ("0", "17"):
        with pytest.raises(ConfigError, match=r"\[sendgrid\] concurrency must be 1\.\.16"):
            load_settings(env={"DIGEST_SENDGRID_CONCURRENCY": bad}, cwd=tmp_path)
    with pytest.raises(ConfigError, match=r"\[smtp\] connections must be 1\.\.16"):
        load_settings(env={"DIGEST_SMTP_CONNECTIONS": "0"}, cwd=tmp_path)
