"""HTTP plumbing: the threaded server, reading bodies (sized or chunked), and answering in SendGrid's shape,
even for malformed HTTP that never reaches a route."""

from __future__ import annotations

import http.server
import logging
import select
import socket
import urllib.parse
from typing import Any, Final, Protocol

from .inspection import INSPECT_PATH
from .replies import SENDGRID_HEADERS, STATUS_MESSAGES, Reply, status_reply

log = logging.getLogger(__name__)

SEND_PATH: Final = "/v3/mail/send"
BATCH_PATH: Final = "/v3/mail/batch"


class Routes(Protocol):
    """What the server calls for each request (SendGridEmulator)."""

    def handle_send(self, handler: Handler) -> None: ...
    def handle_inspect(self, handler: Handler, path: str, query: str) -> None: ...
    def handle_v3(self, handler: Handler, path: str) -> None: ...


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # many clients with Connection: close; a short backlog turns into 1 s SYN retries
    emulator: Routes


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive for clients that want it; Connection: close is honoured
    timeout = 60  # frees the thread of an idle keep-alive connection
    server: Server

    def version_string(self) -> str:
        return "nginx"  # what SendGrid's edge answers with

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def do_POST(self) -> None:
        self._dispatch()

    do_GET = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_POST

    def _dispatch(self) -> None:
        parts = urllib.parse.urlsplit(self.path)
        emulator = self.server.emulator
        try:
            if parts.path == SEND_PATH and self.command == "POST":
                emulator.handle_send(self)
            elif parts.path == INSPECT_PATH or parts.path.startswith(INSPECT_PATH + "/"):
                emulator.handle_inspect(self, parts.path, parts.query)
            else:
                emulator.handle_v3(self, parts.path)
        except OSError as exc:  # the client went away (e.g. it timed out during a delay fault)
            log.debug("client connection lost: %s", exc)
            self.close_connection = True

    def client_gone(self) -> bool:
        """Whether the client closed its end (after its whole request was read, so EOF means it went away)."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def read_body(self, limit: int) -> tuple[bytes | None, int]:
        """The request body and its size; None (body read and discarded) when it is larger than `limit`."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked(limit)
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        if length <= limit:
            return self.rfile.read(length), length
        # Read it all anyway: a client that is still sending would otherwise see a reset instead of the 413.
        left = length
        while left > 0:
            got = self.rfile.read(min(left, 1 << 20))
            if not got:
                break
            left -= len(got)
        return None, length

    def _read_chunked(self, limit: int) -> tuple[bytes | None, int]:
        parts: list[bytes] = []
        size = 0
        while True:
            line = self.rfile.readline(1024)
            chunk = int(line.split(b";", 1)[0].strip() or b"0", 16)
            if chunk == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                break
            data = self.rfile.read(chunk)
            self.rfile.readline(1024)
            size += len(data)
            if size <= limit:
                parts.append(data)
        return (b"".join(parts) if size <= limit else None), size

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # Malformed HTTP never reaches the routes; it too gets SendGrid's JSON shape, not the stdlib's HTML page.
        self.close_connection = True
        self.send_reply(status_reply(code, STATUS_MESSAGES.get(code) or message or "error"))

    def send_reply(self, reply: Reply) -> None:
        self.send_response(reply.status)
        for name, value in SENDGRID_HEADERS:
            self.send_header(name, value)
        for name, value in reply.headers:
            self.send_header(name, value)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD" and reply.body:
            self.wfile.write(reply.body)
