"""deliver/smtp.py against real aiosmtpd servers on 127.0.0.1: TLS, AUTH, retries, refusals, dropped connections."""

# ruff: noqa: F401, F811  (pytest fixtures imported from _smtp_server are used as test arguments)

from __future__ import annotations

import email.policy
import socket
from pathlib import Path
from typing import Any

import _factories as factories
import pytest
from _smtp_server import (  # the fixtures smtp_sink, smtp_tls_auth, tls_files are used as arguments
    PASSWORD,
    USER,
    Sink,
    client_context,
    running,
    server_context,
    smtp_sink,
    smtp_tls_auth,
    tls_files,
)
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from digest.config import SmtpSettings
from digest.deliver.base import Personal
from digest.deliver.smtp import SmtpBackend
from digest.errors import DeliveryError
from digest.models import Build, Recipient
from digest.personalize import fill

HTML = "<p>Hi %%name%%</p>" + "<p>News &amp; more.</p>" * 30 + '<a href="%%unsubscribe_url%%">Unsubscribe</a>'
TEXT = "Hi %%name:text%%\n.a line that starts with a dot\n" + "News.\n" * 10 + "%%unsubscribe_url:text%%\n"


PIPELINING = pytest.mark.parametrize("pipelining", [False, True], ids=["one-by-one", "pipelining"])


def make_build() -> Build:
    return factories.make_build(HTML, TEXT)


def people(*addresses: str) -> list[Personal]:
    return [factories.personal(a, a.split("@")[0], one_click=False) for a in addresses]


def backend(port: int, sleeps: list[float] | None = None, **changes: Any) -> SmtpBackend:
    options = {k: changes.pop(k) for k in ("ssl_context", "retry_delays", "batch_size") if k in changes}
    settings = SmtpSettings(host="127.0.0.1", port=port, security=changes.pop("security", "none"), timeout=5, **changes)
    record = sleeps.append if sleeps is not None else (lambda _s: None)
    return SmtpBackend(settings, sleep=record, local_hostname="digest.test", **options)


def test_plain_server_gets_every_message_over_one_connection(smtp_sink: tuple[Controller, Sink]) -> None:
    """Five recipients: five messages, one connection, envelope from the sender, bodies personalised."""
    controller, sink = smtp_sink
    b = backend(controller.port)
    b.open()
    batch = people(*(f"u{i}@example.org" for i in range(5)))
    result = b.send_batch(make_build(), batch, "b1")
    b.close()
    assert result.sent == [p.recipient.email for p in batch] and result.failed == [] and result.unknown == []
    assert result.provider_id == "Q1,Q2,Q3,Q4,Q5"
    assert sink.recipients() == result.sent and sink.connections == 1
    for p, received in zip(batch, sink.messages, strict=True):
        assert received.mail_from == "news@example.org"
        message = email.message_from_bytes(received.content, policy=email.policy.default)
        text, html = (part.get_content() for part in message.iter_parts())
        assert html == fill(HTML, p.values).replace("\n", "\r\n")
        assert text.replace("\r\n", "\n") == fill(TEXT, p.values)  # the leading dot survived dot-stuffing


def test_starttls_and_auth(
    smtp_tls_auth: tuple[Controller, Sink], tls_files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With security starttls, a trusted certificate and the password from the environment, mail goes over TLS."""
    controller, sink = smtp_tls_auth
    monkeypatch.setenv("DIGEST_SMTP_PASSWORD", PASSWORD)
    b = backend(controller.port, security="starttls", user=USER, ssl_context=client_context(tls_files[0]))
    b.open()
    result = b.send_batch(make_build(), people("ann@example.org", "bob@example.org"), "b1")
    b.close()
    assert result.sent == ["ann@example.org", "bob@example.org"]
    assert [(m.tls, m.user) for m in sink.messages] == [(True, USER), (True, USER)]


def test_implicit_tls(tls_files: tuple[Path, Path]) -> None:
    """security ssl speaks TLS from the first byte (SMTP_SSL, port 465 style)."""
    sink = Sink()
    with running(sink, ssl_context=server_context(*tls_files)) as controller:
        b = backend(controller.port, security="ssl", ssl_context=client_context(tls_files[0]))
        b.open()
        assert b.send_batch(make_build(), people("ann@example.org"), "b1").sent == ["ann@example.org"]
        b.close()
    assert sink.messages[0].tls


def test_untrusted_certificate_is_a_tls_delivery_error(
    smtp_tls_auth: tuple[Controller, Sink], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The default context verifies certificates: a self-signed one stops the run with a TLS message."""
    controller, _ = smtp_tls_auth
    monkeypatch.setenv("DIGEST_SMTP_PASSWORD", PASSWORD)
    b = backend(controller.port, security="starttls", user=USER)
    with pytest.raises(DeliveryError) as err:
        b.open()
    message = str(err.value)
    assert f"127.0.0.1:{controller.port}" in message and "TLS" in message and "certificate" in message
    assert PASSWORD not in message


def test_wrong_password_is_a_clear_error_without_the_password(
    smtp_tls_auth: tuple[Controller, Sink], tls_files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 535 names the server, the user and the variable to check, never the password itself."""
    controller, sink = smtp_tls_auth
    wrong = "not-the-Pa55word"
    monkeypatch.setenv("DIGEST_SMTP_PASSWORD", wrong)
    b = backend(controller.port, security="starttls", user=USER, ssl_context=client_context(tls_files[0]))
    with pytest.raises(DeliveryError) as err:
        b.open()
    message = str(err.value)
    assert "refused the login" in message and "535" in message and "DIGEST_SMTP_PASSWORD" in message
    assert f"127.0.0.1:{controller.port}" in message
    assert wrong not in message and PASSWORD not in message
    assert sink.messages == []


def test_user_without_password_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """[smtp] user set and DIGEST_SMTP_PASSWORD unset fails at open(), before any connection."""
    monkeypatch.delenv("DIGEST_SMTP_PASSWORD", raising=False)
    with pytest.raises(DeliveryError, match="DIGEST_SMTP_PASSWORD is not set"):
        backend(1, user=USER).open()


def test_connection_refused_is_a_delivery_error() -> None:
    """Nothing listening on the port: DeliveryError naming host:port and what to check."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again on exit: nothing listens there
    with pytest.raises(DeliveryError, match=rf"cannot connect to SMTP server 127\.0\.0\.1:{port}.*check \[smtp\] host"):
        backend(port).open()


@PIPELINING
def test_temporary_refusal_is_retried_then_sent(pipelining: bool) -> None:
    """A recipient greylisted twice (451) is retried after the configured delays and then delivered."""
    sink = Sink(temporary={"grey@example.org": 2}, pipelining=pipelining)
    sleeps: list[float] = []
    with running(sink) as controller:
        b = backend(controller.port, sleeps, retry_delays=(0.01, 0.02))
        b.open()
        result = b.send_batch(make_build(), people("ann@example.org", "grey@example.org", "bob@example.org"), "b1")
        b.close()
    assert result.sent == ["ann@example.org", "grey@example.org", "bob@example.org"] and result.failed == []
    assert sleeps == [0.01, 0.02] and sink.rcpt_attempts["grey@example.org"] == 3
    assert sink.recipients() == result.sent


@PIPELINING
def test_temporary_refusal_gives_up_after_bounded_tries(pipelining: bool) -> None:
    """A recipient that keeps answering 451 is reported failed after 1 + len(retry_delays) tries."""
    sink = Sink(temporary={"grey@example.org": 99}, pipelining=pipelining)
    with running(sink) as controller:
        b = backend(controller.port, [], retry_delays=(0.0, 0.0))
        b.open()
        result = b.send_batch(make_build(), people("grey@example.org", "ann@example.org"), "b1")
        b.close()
    assert result.sent == ["ann@example.org"]
    assert result.failed == [
        ("grey@example.org", "temporary failure, gave up after 3 tries: 451 4.7.1 Greylisted, try again later")
    ]


@PIPELINING
def test_permanent_refusal_fails_one_recipient_and_the_rest_go_out(pipelining: bool) -> None:
    """A 550 for one address is recorded as that recipient's failure; the others are delivered."""
    sink = Sink(permanent={"gone@example.org": "550 5.1.1 No such user"}, pipelining=pipelining)
    with running(sink) as controller:
        b = backend(controller.port)
        b.open()
        result = b.send_batch(make_build(), people("ann@example.org", "gone@example.org", "bob@example.org"), "b1")
        b.close()
    assert result.sent == ["ann@example.org", "bob@example.org"]
    assert result.failed == [("gone@example.org", "550 5.1.1 No such user (at RCPT)")]
    assert sink.recipients() == ["ann@example.org", "bob@example.org"]


@PIPELINING
def test_dropped_connection_is_reopened_and_the_rest_arrive(pipelining: bool) -> None:
    """A server that hangs up after every 2 messages: the backend reconnects and all 5 arrive exactly once."""
    sink = Sink(drop_every=2, pipelining=pipelining)
    with running(sink) as controller:
        b = backend(controller.port)
        b.open()
        batch = people(*(f"u{i}@example.org" for i in range(5)))
        result = b.send_batch(make_build(), batch, "b1")
        b.close()
    assert result.sent == [p.recipient.email for p in batch] and result.unknown == []
    assert sink.recipients() == result.sent
    assert sink.connections == 3


@PIPELINING
def test_connection_lost_after_data_is_unknown_and_not_resent(pipelining: bool) -> None:
    """The server stores message 2 but never answers: that recipient is unknown, not resent; the rest are sent."""
    sink = Sink(drop_after_data={2}, pipelining=pipelining)
    with running(sink) as controller:
        b = backend(controller.port)
        b.open()
        result = b.send_batch(make_build(), people("a@example.org", "b@example.org", "c@example.org"), "b1")
        b.close()
    assert result.sent == ["a@example.org", "c@example.org"]
    assert [email for email, _ in result.unknown] == ["b@example.org"]
    assert "may have been accepted" in result.unknown[0][1]
    assert sink.recipients() == ["a@example.org", "b@example.org", "c@example.org"]  # b exactly once


class _Vanishing(Sink):
    """Accepts `keep` messages, then stops listening and hangs up: the server is gone for good."""

    def __init__(self, keep: int, pipelining: bool = False):
        super().__init__(pipelining=pipelining)
        self.keep = keep
        self.controller: Controller | None = None

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, mail_options: list[str]
    ) -> str:
        if len(self.messages) >= self.keep:
            assert self.controller is not None and self.controller.server is not None and server.transport is not None
            self.controller.server.close()  # no more connections accepted
            server.transport.close()
            return "250 OK"
        return await super().handle_MAIL(server, session, envelope, address, mail_options)


@PIPELINING
def test_server_gone_mid_batch_reports_sent_and_not_sent_then_stops(pipelining: bool) -> None:
    """Server lost after 2 of 4: those 2 are sent, 2 failed as 'not sent', and the next batch raises."""
    sink = _Vanishing(keep=2, pipelining=pipelining)
    with running(sink) as controller:
        sink.controller = controller
        b = backend(controller.port)
        b.open()
        result = b.send_batch(make_build(), people("a@x.org", "b@x.org", "c@x.org", "d@x.org"), "b1")
        assert result.sent == ["a@x.org", "b@x.org"]
        assert [e for e, _ in result.failed] == ["c@x.org", "d@x.org"]
        assert all(reason.startswith("not sent: cannot connect to SMTP server") for _, reason in result.failed)
        with pytest.raises(DeliveryError, match="cannot connect"):
            b.send_batch(make_build(), people("e@x.org"), "b2")
        b.close()
    assert sink.recipients() == ["a@x.org", "b@x.org"]


def test_server_gone_before_a_batch_starts_raises(smtp_sink: tuple[Controller, Sink]) -> None:
    """When nothing of a batch could be sent, send_batch raises DeliveryError (the ledger releases the batch)."""
    controller, sink = smtp_sink
    b = backend(controller.port)
    b.open()
    b.send_batch(make_build(), people("a@example.org"), "b1")
    port = controller.port
    controller.stop()
    with pytest.raises(DeliveryError, match=rf"127\.0\.0\.1:{port}"):
        b.send_batch(make_build(), people("b@example.org", "c@example.org"), "b2")
    b.close()


def test_refused_sender_stops_the_run(smtp_tls_auth: tuple[Controller, Sink], monkeypatch: pytest.MonkeyPatch) -> None:
    """A server that refuses MAIL FROM (530: authentication required) stops with DeliveryError naming the sender."""
    controller, _ = smtp_tls_auth
    b = backend(controller.port)  # security none, no user: the server demands STARTTLS + AUTH
    b.open()
    with pytest.raises(DeliveryError, match=r"refused the sender news@example\.org \(530"):
        b.send_batch(make_build(), people("a@example.org"), "b1")
    b.close()


def test_internationalised_address_goes_with_smtputf8(smtp_sink: tuple[Controller, Sink]) -> None:
    """A non-ASCII address is sent with the SMTPUTF8 option when the server offers it."""
    controller, sink = smtp_sink
    b = backend(controller.port)
    b.open()
    result = b.send_batch(make_build(), people("j\u00fcrgen@example.org"), "b1")
    b.close()
    assert result.sent == ["j\u00fcrgen@example.org"] and sink.recipients() == ["j\u00fcrgen@example.org"]


def test_pipelining_server_gets_each_message_in_one_exchange() -> None:
    """A server offering PIPELINING gets MAIL, RCPT and DATA in one go for every message, bodies intact."""
    sink = Sink(pipelining=True)
    with running(sink) as controller:
        b = backend(controller.port)
        b.open()
        batch = people(*(f"u{i}@example.org" for i in range(6)))
        result = b.send_batch(make_build(), batch, "b1")
        b.close()
    assert result.sent == [p.recipient.email for p in batch] and result.provider_id == "Q1,Q2,Q3,Q4,Q5,Q6"
    assert sink.recipients() == result.sent and sink.connections == 1 and sink.grouped == 6
    for p, received in zip(batch, sink.messages, strict=True):
        text = email.message_from_bytes(received.content, policy=email.policy.default).get_body(("plain",))
        assert text is not None and text.get_content().replace("\r\n", "\n") == fill(TEXT, p.values)


def test_without_pipelining_commands_go_one_at_a_time(smtp_sink: tuple[Controller, Sink]) -> None:
    """A server that does not offer PIPELINING never gets a command before the previous answer."""
    controller, sink = smtp_sink
    b = backend(controller.port)
    b.open()
    assert b.send_batch(make_build(), people("a@example.org", "b@example.org"), "b1").sent
    b.close()
    assert sink.grouped == 0 and sink.recipients() == ["a@example.org", "b@example.org"]


class _LateGreylist(Sink):
    """Answers 451 at the end of DATA the first time it gets a message for `grey`, then accepts it."""

    def __init__(self, grey: str):
        super().__init__(pipelining=True)
        self.grey = grey
        self.refused = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.grey in envelope.rcpt_tos and not self.refused:
            self.refused += 1
            return "451 4.3.0 Try again later"
        return await super().handle_DATA(server, session, envelope)


def test_pipelined_data_refused_for_now_is_retried_after_the_batch() -> None:
    """A 451 after a pipelined message's data: that message is sent again (once, after a delay) after the rest."""
    sink = _LateGreylist("grey@example.org")
    sleeps: list[float] = []
    with running(sink) as controller:
        b = backend(controller.port, sleeps, retry_delays=(0.01,))
        b.open()
        result = b.send_batch(make_build(), people("a@example.org", "grey@example.org", "c@example.org"), "b1")
        b.close()
    assert sorted(result.sent) == ["a@example.org", "c@example.org", "grey@example.org"] and result.failed == []
    assert sink.recipients() == ["a@example.org", "c@example.org", "grey@example.org"] and sleeps == [0.01]


class _WaitsForASecondConnection(Sink):
    """Holds the first connection's first answer to DATA until a second connection has said EHLO (at most
    10 s), so a client that keeps two batches out is seen using two connections however loaded the host."""

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        import asyncio
        import time

        deadline = time.monotonic() + 10
        while self.connections < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        return await super().handle_DATA(server, session, envelope)


def test_two_connections_send_batches_side_by_side_each_recorded_once(tmp_path: Path) -> None:
    """[smtp] connections = 2: the send loop keeps two batches out, on two connections; everyone gets one."""
    from digest.ledger import Ledger
    from digest.lock import newsletter_lock

    sink = _WaitsForASecondConnection(pipelining=True)
    build = make_build()
    recipients = [factories.personal(f"u{i}@example.org", f"U{i}", one_click=False) for i in range(45)]
    by_email = {p.recipient.email: p for p in recipients}
    ledger_path = tmp_path / "ledger.sqlite3"
    with running(sink) as controller:
        b = backend(controller.port, batch_size=5, connections=2)
        with newsletter_lock(ledger_path, build.newsletter), Ledger.open(ledger_path) as ledger:
            report = factories.send_edition(
                build,
                b,
                [p.recipient for p in recipients],
                ledger=ledger,
                personalize=lambda r: by_email[r.email],
            )
            counts = ledger.counts(build.edition)
    assert b.concurrency == 2 and report.sent == 45 and report.exit_code == 0 and counts["sent"] == 45
    assert sorted(sink.recipients()) == sorted(by_email) and sink.connections == 2
