"""Kept-alive HTTP for the SendGrid client: python_http_client's Client with a pool of connections.

The official client opens a new connection (and, against SendGrid, a TLS handshake) for every request
through urllib. `KeptAliveClient` keeps everything the client does to build a request and only sends it
over a pooled HTTP/1.1 connection, reporting failures as urllib would, so the backend reads them the same:

- connecting or writing the request fails: `urllib.error.URLError` (it never arrived whole);
- no answer after the request was written: the socket's own error (it may have been accepted);
- an answer >= 400: python_http_client's HTTPError subclass for the status, body and headers kept.

An idle connection that the server has closed (or sent anything on) is thrown away before it is used,
so a reused connection does not turn a request into an unknown outcome. Behind a proxy (HTTPS_PROXY,
not bypassed by NO_PROXY) requests go through urllib as before.

`post_json` sends a body the caller already serialised (the SendGrid backend writes its JSON from pieces
encoded once), with the URL and headers the client builds for `post`.
"""

from __future__ import annotations

import http.client
import io
import logging
import select
import ssl
import threading
import urllib.error
import urllib.request
from email.message import Message
from typing import Any
from urllib.parse import urlsplit

from python_http_client import Client
from python_http_client.client import Response
from python_http_client.exceptions import handle_error

# The client's own logger (sendgrid.py blanks the API key out of the messages it logs).
_CLIENT_LOG = logging.getLogger("python_http_client.client")


class _Answer:
    """What python_http_client's Response reads from urllib's answer: the status, body and headers."""

    def __init__(self, status: int, body: bytes, headers: Message):
        self._status, self._body, self._headers = status, body, headers

    def getcode(self) -> int:
        return self._status

    def read(self) -> bytes:
        return self._body

    def info(self) -> Message:
        return self._headers


class ConnectionPool:
    """Idle kept-alive connections to one origin; any thread takes one, or a new one, and gives it back."""

    def __init__(self, base_url: str, timeout: float | None):
        parts = urlsplit(base_url)
        self.scheme = parts.scheme
        self.host = parts.hostname or ""
        self.port = parts.port
        self.timeout = timeout
        proxy = urllib.request.getproxies().get(self.scheme)
        self.direct = not proxy or bool(urllib.request.proxy_bypass(self.host))
        self._context = ssl.create_default_context() if self.scheme == "https" else None
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    def _take(self) -> http.client.HTTPConnection:
        while True:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                if self._context is not None:
                    return http.client.HTTPSConnection(
                        self.host, self.port, timeout=self.timeout, context=self._context
                    )
                return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            sock = conn.sock
            if sock is not None and not select.select([sock], [], [], 0)[0]:
                return conn
            conn.close()  # closed by the server while idle (or out of step): never send on it

    def send(self, request: urllib.request.Request) -> _Answer:
        conn = self._take()
        try:
            conn.request(
                request.get_method(), request.selector, body=request.data, headers=dict(request.header_items())
            )
        except OSError as exc:
            conn.close()
            raise urllib.error.URLError(exc) from None
        try:
            response = conn.getresponse()
            body = response.read()
        except BaseException:
            conn.close()
            raise
        if response.will_close:
            conn.close()
        else:
            with self._lock:
                self._idle.append(conn)
        if response.status >= 400:
            error = urllib.error.HTTPError(
                request.full_url, response.status, response.reason, response.headers, io.BytesIO(body)
            )
            raise handle_error(error)
        return _Answer(response.status, body, response.headers)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


class KeptAliveClient(Client):  # type: ignore[misc]  # python_http_client is untyped
    """python_http_client.Client whose requests go through a ConnectionPool shared by every URL it builds."""

    def __init__(self, *args: Any, pool: ConnectionPool, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._pool = pool

    @classmethod
    def like(cls, client: Client, *, timeout: float) -> KeptAliveClient:
        """The same host, headers and API version as `client`, with `timeout` and a new pool."""
        return cls(
            host=client.host,
            request_headers=client.request_headers,
            version=client._version,
            timeout=timeout,
            pool=ConnectionPool(client.host, timeout),
        )

    def _build_client(self, name: str | None = None) -> KeptAliveClient:
        url_path = self._url_path + [name] if name else self._url_path
        return KeptAliveClient(
            host=self.host,
            version=self._version,
            request_headers=self.request_headers,
            url_path=url_path,
            append_slash=self.append_slash,
            timeout=self.timeout,
            pool=self._pool,
        )

    def _make_request(self, opener: Any, request: urllib.request.Request, timeout: float | None = None) -> Any:
        if not self._pool.direct:
            return super()._make_request(opener, request, timeout)
        return self._pool.send(request)

    def post_json(self, data: bytes) -> Response:
        """`post(request_body=...)` of a body already serialised as JSON: the same URL, headers and errors."""
        headers = {**self.request_headers, "Content-Type": "application/json"}
        request = urllib.request.Request(self._build_url(None), headers=headers, data=data, method="POST")
        if _CLIENT_LOG.isEnabledFor(logging.DEBUG):  # as the client logs a request; formatted here, so redacted
            _CLIENT_LOG.debug(f"POST Request: {request.full_url} ({len(data):,} bytes)")
            _CLIENT_LOG.debug(f"HEADERS: {request.headers}")
        opener = None if self._pool.direct else urllib.request.build_opener()
        return Response(self._make_request(opener, request, timeout=self.timeout))

    def close_connections(self) -> None:
        self._pool.close()
