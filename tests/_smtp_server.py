"""Real SMTP servers on 127.0.0.1 for tests (aiosmtpd), reusable by any test module.

    from _smtp_server import Sink, running, smtp_sink, tls_files, smtp_tls_auth  # fixtures too

- `Sink`: a handler that stores every message and can misbehave on purpose: answer 4xx a number of
  times or 5xx always for chosen addresses, drop the connection before MAIL once a connection has
  carried N messages, or drop it after reading a message's DATA without answering. With
  `pipelining=True` it offers PIPELINING (aiosmtpd reads commands in order but does not say so) and
  counts the MAIL commands that arrived with their RCPT already behind them (`grouped`).
- `running(handler, **smtp_kwargs)`: a started aiosmtpd Controller on a free port.
- `make_tls_files(folder)`: a self-signed certificate for 127.0.0.1/localhost, made at test time.
- fixtures: `smtp_sink` (plain), `tls_files` (cert, key), `smtp_tls_auth` (STARTTLS required, AUTH
  LOGIN/PLAIN only after TLS, user `USER` / password `PASSWORD`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import shutil
import ssl
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

USER = "digest"
PASSWORD = "s3cret-Pa55word"


@dataclass(frozen=True)
class Received:
    """One message as the server got it."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    content: bytes
    connection: int  # which connection carried it (1, 2, ...): shows reconnects
    tls: bool
    user: str | None


@dataclass
class Sink:
    """Stores messages; misbehaves as configured. Safe to read from the test thread."""

    temporary: dict[str, int] = field(default_factory=dict)  # address -> how many 451s before accepting
    permanent: dict[str, str] = field(default_factory=dict)  # address -> a 5xx reply, every time
    drop_every: int | None = None  # close a connection at the MAIL after it carried this many messages
    drop_after_data: set[int] = field(default_factory=set)  # message numbers (1-based) stored, then no answer
    messages: list[Received] = field(default_factory=list)
    rcpt_attempts: dict[str, int] = field(default_factory=dict)
    pipelining: bool = False  # offer PIPELINING in the EHLO answer
    grouped: int = 0  # MAIL commands whose RCPT had already arrived (sent in one go: pipelined)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._connections = 0
        self._per_connection: dict[int, int] = {}
        self._data_count = 0

    def recipients(self) -> list[str]:
        """Every recipient that got a message, in arrival order."""
        with self._lock:
            return [r for m in self.messages for r in m.rcpt_tos]

    @property
    def connections(self) -> int:
        with self._lock:
            return self._connections

    def _connection_id(self, session: Session) -> int:
        conn_id: int | None = getattr(session, "digest_conn", None)
        if conn_id is None:
            with self._lock:
                self._connections += 1
                conn_id = self._connections
            session.digest_conn = conn_id  # type: ignore[attr-defined]
        return conn_id

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: list[str]
    ) -> list[str]:
        self._connection_id(session)
        session.host_name = hostname
        if self.pipelining:
            return [*responses[:-1], "250-PIPELINING", responses[-1]]
        return responses

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, mail_options: list[str]
    ) -> str:
        conn_id = self._connection_id(session)
        if self.drop_every is not None and self._per_connection.get(conn_id, 0) >= self.drop_every:
            assert server.transport is not None
            server.transport.close()  # no answer: the client sees the connection end
            return "250 OK"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        if b"RCPT TO" in bytes(getattr(server._reader, "_buffer", b"")):  # aiosmtpd's StreamReader buffer
            with self._lock:
                self.grouped += 1
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        key = address.lower()
        with self._lock:
            self.rcpt_attempts[key] = self.rcpt_attempts.get(key, 0) + 1
            attempt = self.rcpt_attempts[key]
        if key in self.permanent:
            return self.permanent[key]
        if attempt <= self.temporary.get(key, 0):
            return "451 4.7.1 Greylisted, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        conn_id = self._connection_id(session)
        received = Received(
            mail_from=str(envelope.mail_from),
            rcpt_tos=tuple(envelope.rcpt_tos),
            content=bytes(envelope.original_content or envelope.content or b""),  # type: ignore[arg-type]
            connection=conn_id,
            tls=session.ssl is not None  # STARTTLS
            or (server.transport is not None and server.transport.get_extra_info("ssl_object") is not None),
            user=USER if session.authenticated else None,
        )
        with self._lock:
            self._data_count += 1
            number = self._data_count
            self.messages.append(received)
            self._per_connection[conn_id] = self._per_connection.get(conn_id, 0) + 1
        if number in self.drop_after_data:
            assert server.transport is not None
            server.transport.close()  # stored ("queued"), but the answer never leaves
        return "250 2.0.0 Ok: queued as Q" + str(number)


class _Controller(Controller):
    """aiosmtpd's Controller on port 0: the real port is read back before the readiness probe."""

    def _trigger_server(self) -> None:
        assert isinstance(self.server, asyncio.Server)
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()  # type: ignore[no-untyped-call]


@contextmanager
def running(handler: Any, *, ssl_context: ssl.SSLContext | None = None, **smtp_kwargs: Any) -> Iterator[Controller]:
    """A started aiosmtpd server on 127.0.0.1 (free port in `.port`), stopped on exit."""
    controller = _Controller(handler, hostname="127.0.0.1", port=0, ssl_context=ssl_context, **smtp_kwargs)
    controller.start()
    try:
        yield controller
    finally:
        if controller._thread is not None:  # a test may have stopped it already ("server gone")
            controller.stop()


def make_tls_files(folder: Path) -> tuple[Path, Path]:
    """A self-signed CA-style certificate for 127.0.0.1 and localhost, and its key (PEM files in `folder`)."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError:
        openssl = shutil.which("openssl")
        if openssl is None:
            pytest.skip("neither the cryptography package nor openssl is available to make a test certificate")
        subprocess.run(
            [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=localhost",
             "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
            check=True, capture_output=True,
        )  # fmt: skip
        return cert, key
    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )  # fmt: skip
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(private.public_key()), critical=False)
        .sign(private, hashes.SHA256())
    )
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert, key


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


def client_context(cert: Path) -> ssl.SSLContext:
    """What a client that trusts the test certificate uses (verification stays on)."""
    return ssl.create_default_context(cafile=str(cert))


def authenticator(server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any) -> AuthResult:
    """Accepts USER / PASSWORD only."""
    ok = isinstance(auth_data, LoginPassword) and auth_data == (USER.encode(), PASSWORD.encode())
    return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 235 / 535 itself


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate and key for 127.0.0.1, made once per test session."""
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def smtp_sink() -> Iterator[tuple[Controller, Sink]]:
    """A plain SMTP server (no TLS, no AUTH) and the Sink that stores what it receives."""
    sink = Sink()
    with running(sink) as controller:
        yield controller, sink


@pytest.fixture
def smtp_tls_auth(tls_files: tuple[Path, Path]) -> Iterator[tuple[Controller, Sink]]:
    """An SMTP server that requires STARTTLS and offers AUTH only over TLS (USER / PASSWORD)."""
    sink = Sink()
    with running(
        sink,
        tls_context=server_context(*tls_files),
        require_starttls=True,
        authenticator=authenticator,
        auth_require_tls=True,
        auth_required=True,
    ) as controller:
        yield controller, sink
