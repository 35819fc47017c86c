"""SMTP backend: reused connections (STARTTLS, implicit TLS or plain), one transaction per recipient.

`[smtp] connections` (default 2) connections are kept; the send loop hands each one batch at a time
(`concurrency`), so every batch keeps its own write-ahead accounting in the ledger. When the server
offers PIPELINING (RFC 2920), a message costs one round trip instead of four: MAIL, RCPT and DATA go
out together, and the next message's three go out right behind the previous message's final ".".
Anything unusual in that exchange (a refused command, a dropped connection before the data) sends
that message again the one-command-at-a-time way, whose rules follow.

Each message is a MAIL / RCPT / DATA transaction spelled out here instead of `sendmail`, because only
then is it known *when* a connection died:

- before the end of DATA (the final "."): the server cannot have accepted the message; reconnect and
  send it again, once;
- after the final "." but before the server's answer: the message may have been queued. It is
  reported in BatchResult.unknown, never resent (the ledger lets the user decide).

Replies: 4xx for a recipient (greylisting, mailbox busy) is retried on the same connection after
`retry_delays`, then reported failed; 5xx for a recipient or its content is reported failed and the run
goes on; 421 (the server is closing) counts as a dropped connection. A refused sender (5xx to MAIL),
a refused login, a failed TLS handshake or an unreachable server stop the run with DeliveryError.

Batches: 20 recipients by default. The ledger makes each batch durable (an fsync) before it is handed
over, so batches of 1 would cost a disk flush per message; 20 keeps that small while a crash leaves at
most 20 recipients whose fate is unknown. If the server becomes unreachable in the middle of a batch,
the messages already accepted are reported sent, the rest failed with "not sent: ..." (`digest retry`
queues them again), and the next batch raises the DeliveryError that stops the run.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import smtplib
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..config import SmtpSettings
from ..errors import DeliveryError
from ..message import MessageTemplate
from ..models import Build
from .base import BatchResult, Personal

log = logging.getLogger(__name__)

PASSWORD_ENV = "DIGEST_SMTP_PASSWORD"
# Dot-stuffing (RFC 5321 §4.5.2) finds "\n." rather than smtplib's (?m)^\. : a literal prefix lets the regex
# engine skip ahead instead of trying "^" at every byte (32 µs instead of 430 µs for a 90 KB message).
_LINE_DOT = re.compile(rb"\n\.")
_QUEUED_AS = re.compile(r"queued as ([A-Za-z0-9._-]+)", re.IGNORECASE)


class _Refused(Exception):
    """The server answered a command of the transaction with something other than success."""

    def __init__(self, stage: str, code: int, text: str):
        super().__init__(f"{code} {text}")
        self.stage, self.code, self.text = stage, code, text


class _Dropped(Exception):
    """The connection died before the end of DATA: the message was not accepted."""


class _NoAnswer(Exception):
    """The connection died after the final '.' and before the server's answer."""


def _dot_stuffed(data: bytes) -> bytes:
    """Every line that starts with "." gets another one, as smtplib's data() does (same bytes out)."""
    stuffed = _LINE_DOT.sub(b"\n..", data)
    return b"." + stuffed if stuffed[:1] == b"." else stuffed


@dataclass
class _Line:
    """The connection one batch is sent on (None once dropped, until the next message reconnects)."""

    conn: smtplib.SMTP | None


@dataclass(frozen=True)
class _Piped:
    """One message ready for a pipelined exchange: its envelope commands and its dot-stuffed data."""

    person: Personal
    envelope: bytes
    data: bytes


def _reply(resp: bytes | str) -> str:
    text = resp.decode("utf-8", "replace") if isinstance(resp, bytes) else str(resp)
    return " ".join(text.split())


class SmtpBackend:
    """Sends through one SMTP server with settings.smtp; the password comes only from `password_env`.

    `ssl_context` defaults to `ssl.create_default_context()` (certificate and host name verified);
    `retry_delays` are the waits before the 2nd, 3rd... try after a 4xx; `sleep` is injectable for tests.
    """

    name = "smtp"

    def __init__(
        self,
        settings: SmtpSettings,
        *,
        password_env: str = PASSWORD_ENV,
        batch_size: int = 20,
        ssl_context: ssl.SSLContext | None = None,
        retry_delays: tuple[float, ...] = (2.0, 10.0),
        sleep: Callable[[float], None] = time.sleep,
        local_hostname: str | None = None,
    ):
        if settings.security not in {"starttls", "ssl", "none"}:
            raise DeliveryError(f"[smtp] security must be starttls, ssl or none (got {settings.security!r})")
        self.settings = settings
        self.batch_size = batch_size
        self.concurrency = max(1, settings.connections)
        self._password_env = password_env
        self._ssl_context = ssl_context
        self.retry_delays = retry_delays
        self._sleep = sleep
        self._local_hostname = local_hostname
        self._password = ""
        self._idle: list[smtplib.SMTP] = []  # connections between batches
        self._lock = threading.Lock()
        self._stopped: DeliveryError | None = None
        self._templates: dict[tuple[str, str, bool], MessageTemplate] = {}

    @property
    def where(self) -> str:
        return f"{self.settings.host}:{self.settings.port}"

    # ---- connection -----------------------------------------------------------------------------------

    def open(self) -> None:
        if self.settings.user:
            self._password = os.environ.get(self._password_env, "")
            if not self._password:
                raise DeliveryError(
                    f"[smtp] user is {self.settings.user!r} but {self._password_env} is not set; export the "
                    f"password in the environment (digest never reads it from digest.toml)"
                )
        if self._local_hostname is None:
            # smtplib would ask socket.getfqdn() on every (re)connect, which can stall on a slow resolver.
            self._local_hostname = socket.getfqdn()
        self._stopped = None
        self._idle = [self._connect()]  # the others when a batch needs them; a bad login shows at once

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        self._templates.clear()
        self._password = ""
        for conn in idle:
            try:
                conn.quit()
            except (smtplib.SMTPException, OSError):
                conn.close()

    def _context(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            self._ssl_context = ssl.create_default_context()
        return self._ssl_context

    def _safe(self, text: str) -> str:
        return text.replace(self._password, "[redacted]") if self._password else text

    def _connect(self) -> smtplib.SMTP:
        s = self.settings
        conn: smtplib.SMTP | None = None
        try:
            if s.security == "ssl":
                conn = smtplib.SMTP_SSL(
                    s.host, s.port, local_hostname=self._local_hostname, timeout=s.timeout, context=self._context()
                )
            else:
                conn = smtplib.SMTP(s.host, s.port, local_hostname=self._local_hostname, timeout=s.timeout)
            conn.ehlo_or_helo_if_needed()  # HELO for the rare relay that knows no EHLO
            if s.security == "starttls":
                if not conn.has_extn("starttls"):
                    raise DeliveryError(
                        f"SMTP server {self.where} does not offer STARTTLS; check [smtp] port and security "
                        "(starttls on 587, ssl on 465; 'none' only for a trusted local relay)"
                    )
                conn.starttls(context=self._context())
                conn.ehlo()
            if s.user:
                conn.login(s.user, self._password)
            if conn.sock is not None:
                # Pipelined commands go out right behind a message's data: no waiting on Nagle's algorithm.
                conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return conn
        except DeliveryError:
            self._discard(conn)
            raise
        except smtplib.SMTPAuthenticationError as exc:
            self._discard(conn)
            raise DeliveryError(
                f"SMTP server {self.where} refused the login of user {s.user!r} ({exc.smtp_code} "
                f"{self._safe(_reply(exc.smtp_error))}); check [smtp] user and {self._password_env}"
            ) from None
        except smtplib.SMTPNotSupportedError:
            self._discard(conn)
            raise DeliveryError(
                f"SMTP server {self.where} offers no login (AUTH) on this connection; check [smtp] security "
                "(many servers offer AUTH only after STARTTLS) or leave [smtp] user empty"
            ) from None
        except ssl.SSLError as exc:
            self._discard(conn)
            raise DeliveryError(
                f"TLS with SMTP server {self.where} failed ({exc.reason or exc}); check [smtp] security "
                "(starttls on 587, ssl on 465) and that the server's certificate is valid for this host name"
            ) from None
        except (smtplib.SMTPException, OSError) as exc:
            self._discard(conn)
            raise DeliveryError(
                f"cannot connect to SMTP server {self.where} ({self._safe(str(exc)) or type(exc).__name__}); "
                "check [smtp] host, port and security, and that the server is up"
            ) from None

    @staticmethod
    def _discard(conn: smtplib.SMTP | None) -> None:
        if conn is not None:
            with contextlib.suppress(OSError):
                conn.close()

    def _drop(self, line: _Line) -> None:
        self._discard(line.conn)
        line.conn = None

    def _take(self) -> _Line:
        with self._lock:
            return _Line(self._idle.pop() if self._idle else None)

    def _give_back(self, line: _Line) -> None:
        if line.conn is not None:
            with self._lock:
                self._idle.append(line.conn)
            line.conn = None

    # ---- one message, one command at a time ----------------------------------------------------------

    def _transaction(self, conn: smtplib.SMTP, sender: str, rcpt: str, data: bytes, options: list[str]) -> str:
        """MAIL, RCPT, DATA for one message; returns the server's final reply text."""
        try:
            code, resp = conn.mail(sender, options)
            if code != 250:
                raise _Refused("MAIL", code, _reply(resp))
            code, resp = conn.rcpt(rcpt)
            if code not in (250, 251):
                raise _Refused("RCPT", code, _reply(resp))
            code, resp = conn.docmd("DATA")
            if code != 354:
                raise _Refused("DATA", code, _reply(resp))
            conn.send(_dot_stuffed(data) + b".\r\n")  # data ends with CRLF (message.py)
        except smtplib.SMTPServerDisconnected as exc:
            raise _Dropped(str(exc)) from None
        try:
            code, resp = conn.getreply()
        except smtplib.SMTPServerDisconnected as exc:
            raise _NoAnswer(str(exc) or "connection closed") from None
        if code != 250:
            raise _Refused("end of DATA", code, _reply(resp))
        return _reply(resp)

    def _deliver(
        self, line: _Line, template: MessageTemplate, p: Personal, refused: _Refused | None = None
    ) -> tuple[str, str]:
        """('sent', server reply) | ('failed', reason) | ('unknown', reason); DeliveryError stops the run.

        `refused`: the answer a pipelined try of this message already got, handled as this loop's first."""
        rcpt = p.recipient.email
        sender = template.envelope_from
        options: list[str] = []
        data = template.render(p.recipient, p.values, p.headers, template.new_message_id())
        temporary = 0
        dropped = 0
        while True:
            try:
                earlier, refused = refused, None
                if earlier is not None:
                    raise earlier
                if line.conn is None:
                    line.conn = self._connect()
                conn = line.conn
                if not (rcpt.isascii() and sender.isascii()):
                    if not conn.has_extn("smtputf8"):
                        return "failed", f"non-ASCII address and {self.where} does not support SMTPUTF8"
                    options = ["SMTPUTF8"]
                return "sent", self._transaction(conn, sender, rcpt, data, options)
            except _NoAnswer as exc:
                self._drop(line)
                return "unknown", self._no_answer(str(exc))
            except _Dropped as exc:
                self._drop(line)
                dropped += 1
                if dropped > 1:
                    raise DeliveryError(
                        f"SMTP server {self.where} closed the connection twice while sending to {rcpt} ({exc}); "
                        "check the server's limits and logs"
                    ) from None
                log.info("SMTP connection to %s dropped (%s); reconnecting", self.where, exc)
            except _Refused as exc:
                if exc.code == 421:  # the server is closing this connection: reconnect, like a drop
                    self._drop(line)
                    dropped += 1
                    if dropped > 1:
                        raise DeliveryError(
                            f"SMTP server {self.where} keeps closing the connection (421 {exc.text}); try later"
                        ) from None
                    continue
                self._reset(line)
                if exc.stage == "MAIL" and exc.code >= 500:
                    raise DeliveryError(
                        f"SMTP server {self.where} refused the sender {sender} ({exc.code} {exc.text}); check "
                        "'sender' (the relay may only accept its own domains) and [smtp] user"
                    ) from None
                if 400 <= exc.code < 500:
                    temporary += 1
                    if temporary > len(self.retry_delays):
                        return "failed", f"temporary failure, gave up after {temporary} tries: {exc.code} {exc.text}"
                    self._sleep(self.retry_delays[temporary - 1])
                    continue
                return "failed", f"{exc.code} {exc.text} (at {exc.stage})"

    def _no_answer(self, why: str) -> str:
        return (
            f"connection to {self.where} lost after the message was sent, before the server's answer "
            f"({why}); it may have been accepted"
        )

    def _reset(self, line: _Line) -> None:
        """RSET after a refused command, so the next MAIL starts clean; a dead connection is dropped."""
        if line.conn is None:
            return
        try:
            line.conn.rset()
        except (smtplib.SMTPException, OSError):
            self._drop(line)

    # ---- pipelining (RFC 2920) ------------------------------------------------------------------------

    def _piped(self, template: MessageTemplate, p: Personal) -> _Piped | None:
        """The message as one pipelined exchange, or None for one that needs SMTPUTF8 (sent one by one)."""
        rcpt, sender = p.recipient.email, template.envelope_from
        if not (rcpt.isascii() and sender.isascii()):
            return None
        envelope = f"MAIL FROM:{smtplib.quoteaddr(sender)}\r\nRCPT TO:{smtplib.quoteaddr(rcpt)}\r\nDATA\r\n"
        data = _dot_stuffed(template.render(p.recipient, p.values, p.headers, template.new_message_id())) + b".\r\n"
        return _Piped(p, envelope.encode("ascii"), data)

    def _send_piped(
        self, line: _Line, message: _Piped, opened: bool, following: _Piped | None
    ) -> tuple[str, str | _Refused]:
        """One message over a pipelining connection. `opened`: its envelope already went out behind the
        previous message's data. If its data goes out, `following`'s envelope goes right behind it.

        Returns ('sent' | 'failed' | 'unknown', text); ('again', refusal or reason) when nothing of it was
        accepted and it goes on one command at a time (a refused envelope, a connection dropped before its
        data); or ('later', refusal) for a temporary refusal of its data, retried after the batch.
        ('sent', ...) and ('failed', ...) with `following` set mean its envelope is out: the caller
        passes opened=True for it."""
        conn = line.conn
        assert conn is not None
        try:
            if not opened:
                conn.send(message.envelope)
            replies = [conn.getreply() for _ in range(3)]
        except smtplib.SMTPServerDisconnected as exc:
            self._drop(line)
            return "again", str(exc)
        for stage, (code, resp), ok in zip(
            ("MAIL", "RCPT", "DATA"), replies, ((250,), (250, 251), (354,)), strict=True
        ):
            if code not in ok:
                if replies[2][0] == 354:  # a server that ignored the refusal: an empty message reaches nobody
                    try:
                        conn.send(b".\r\n")
                        conn.getreply()
                    except smtplib.SMTPServerDisconnected:
                        self._drop(line)
                return "again", _Refused(stage, code, _reply(resp))
        try:
            conn.send(message.data)
        except smtplib.SMTPServerDisconnected as exc:
            self._drop(line)
            return "again", str(exc)
        try:
            if following is not None:
                conn.send(following.envelope)
        except smtplib.SMTPServerDisconnected as exc:  # this message's data went out whole: it may be queued
            self._drop(line)
            return "unknown", self._no_answer(str(exc) or "connection closed")
        try:
            code, resp = conn.getreply()
        except smtplib.SMTPServerDisconnected as exc:
            self._drop(line)
            return "unknown", self._no_answer(str(exc) or "connection closed")
        text = _reply(resp)
        if code == 250:
            return "sent", text
        if 400 <= code < 500:
            if code == 421:  # the server is closing: the envelope behind this data is lost with it
                self._drop(line)
            return "later", _Refused("end of DATA", code, text)
        return "failed", f"{code} {text} (at end of DATA)"

    # ---- batches --------------------------------------------------------------------------------------

    def _template(self, build: Build, test: bool) -> MessageTemplate:
        key = (build.edition, build.content_hash, test)
        template = self._templates.get(key)
        if template is None:
            template = MessageTemplate.from_build(build, test=test)
            self._templates[key] = template
        return template

    def send_batch(self, build: Build, batch: list[Personal], batch_id: str, test: bool = False) -> BatchResult:
        """Send each recipient its own message on one connection; per-recipient outcomes in sent / failed /
        unknown. Safe to call from several threads at once: each call takes a connection of its own."""
        if self._stopped is not None:
            raise self._stopped
        template = self._template(build, test)
        result = BatchResult()
        queued: list[str] = []
        line = self._take()
        try:
            self._send_all(line, template, batch, result, queued)
        finally:
            self._give_back(line)
        result.provider_id = ",".join(queued)
        return result

    def _send_all(
        self, line: _Line, template: MessageTemplate, batch: list[Personal], result: BatchResult, queued: list[str]
    ) -> None:
        later: list[tuple[Personal, _Refused]] = []  # data refused for now (4xx): retried after the rest
        ahead: _Piped | None = None  # the next message, whose envelope went out behind the previous data
        for i, p in enumerate(batch):
            try:
                if line.conn is None:
                    line.conn = self._connect()
                    ahead = None
                outcome: tuple[str, str | _Refused] = ("again", "")
                if line.conn.has_extn("pipelining"):
                    opened = ahead is not None and ahead.person is p
                    message = ahead if ahead is not None and opened else self._piped(template, p)
                    ahead = None
                    if message is not None:
                        following = self._piped(template, batch[i + 1]) if i + 1 < len(batch) else None
                        outcome = self._send_piped(line, message, opened, following)
                        if following is not None and outcome[0] != "again" and line.conn is not None:
                            ahead = following
                state, text = outcome
                if isinstance(text, _Refused):
                    if state == "later":
                        later.append((p, text))
                        continue
                    state, text = self._deliver(line, template, p, text)
                elif state == "again":
                    state, text = self._deliver(line, template, p)
            except DeliveryError as exc:
                self._stop(exc, result, batch[i:] + [q for q, _ in later])
                return
            self._note(p, state, text, result, queued)
        for i, (p, refused) in enumerate(later):
            try:
                state, text = self._deliver(line, template, p, refused)
            except DeliveryError as exc:
                self._stop(exc, result, [q for q, _ in later[i:]])
                return
            self._note(p, state, text, result, queued)

    def _stop(self, exc: DeliveryError, result: BatchResult, rest: list[Personal]) -> None:
        if not result.sent and not result.unknown:
            raise exc  # nothing of this batch went out: the contract of DeliveryError holds
        self._stopped = exc
        reason = f"not sent: {exc}"
        result.failed.extend((q.recipient.email, reason) for q in rest)

    @staticmethod
    def _note(p: Personal, state: str, text: str, result: BatchResult, queued: list[str]) -> None:
        email = p.recipient.email
        if state == "sent":
            result.sent.append(email)
            m = _QUEUED_AS.search(text)
            if m:
                queued.append(m.group(1))
        elif state == "unknown":
            result.unknown.append((email, text))
        else:
            result.failed.append((email, text))
