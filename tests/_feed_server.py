"""A real HTTP server on 127.0.0.1 (a thread, an ephemeral port) serving the feed fixtures as websites do.

Routes: /wordpress/feed/ and the other fixtures with ETag/Last-Modified/304 and gzip; redirect chains;
a slow answer; 404/500; /private/... behind HTTP Basic auth (reader / s3cret-feed-pw); 503 with
Retry-After once; an oversized body. `requests` records what came in;
`files` can be changed by a test to play an updated feed.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import http.server
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures" / "feeds"
PRIVATE = b"reader:s3cret-feed-pw"
LAST_MODIFIED = "Wed, 01 Apr 2020 03:00:00 GMT"
ROUTES = {
    "/wordpress/feed/": ("wordpress.rss", "application/rss+xml; charset=UTF-8"),
    "/rss1.rdf": ("rss1.rdf", "application/rdf+xml"),
    "/atom.xml": ("atom.xml", "application/atom+xml"),
    "/feed.json": ("feed.json", "application/feed+json"),
    "/events.ics": ("calendar.ics", "text/calendar; charset=utf-8"),
    "/truncated.xml": ("truncated.xml", "application/rss+xml"),
    "/page/": ("page.html", "text/html; charset=utf-8"),
    "/odd-encoding.xml": ("unknown-encoding.xml", "application/xml"),
}


class FeedServer:
    def __init__(self) -> None:
        self.files: dict[str, tuple[bytes, str]] = {
            path: ((FIXTURES / name).read_bytes(), kind) for path, (name, kind) in ROUTES.items()
        }
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.busy_once: set[str] = set()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                server.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
                server.answer(self)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def set(self, path: str, body: bytes, kind: str = "application/rss+xml") -> None:
        self.files[path] = (body, kind)

    def answer(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        path = handler.path
        if path.startswith("/redirect/"):
            hops = int(path.rsplit("/", 1)[1])
            target = f"/redirect/{hops - 1}" if hops > 1 else "/wordpress/feed/"
            return self.send(handler, 302, b"", "text/plain", {"Location": target})
        if path == "/slow":
            time.sleep(3)
            return self.send(handler, 200, b"", "text/plain")
        if path.startswith("/private/"):
            if handler.headers.get("Authorization") != "Basic " + base64.b64encode(PRIVATE).decode():
                return self.send(handler, 401, b"", "text/plain", {"WWW-Authenticate": 'Basic realm="feeds"'})
            path = handler.path = path.removeprefix("/private")
        if path == "/missing":
            return self.send(handler, 404, b"<html>Not found</html>", "text/html")
        if path == "/error":
            return self.send(handler, 500, b"<html>Oops</html>", "text/html")
        if path == "/huge.xml":
            return self.send(handler, 200, b"<rss>" + b" " * (11 * 1024 * 1024) + b"</rss>", "application/rss+xml")
        if path.startswith("/busy") and path not in self.busy_once:
            self.busy_once.add(path)
            return self.send(handler, 503, b"busy", "text/plain", {"Retry-After": "1"})
        route = path.removeprefix("/busy")
        if route not in self.files:
            return self.send(handler, 404, b"", "text/plain")
        body, kind = self.files[route]
        etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
        headers = {"ETag": etag, "Last-Modified": LAST_MODIFIED}
        if handler.headers.get("If-None-Match") == etag:
            return self.send(handler, 304, b"", "", headers)
        if "gzip" in handler.headers.get("Accept-Encoding", ""):
            body = gzip.compress(body)
            headers["Content-Encoding"] = "gzip"
        return self.send(handler, 200, body, kind, headers)

    @staticmethod
    def send(
        handler: http.server.BaseHTTPRequestHandler,
        status: int,
        body: bytes,
        kind: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        handler.send_response(status)
        if kind:
            handler.send_header("Content-Type", kind)
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        if body and status != 304:
            handler.wfile.write(body)


@contextmanager
def feed_server() -> Iterator[FeedServer]:
    """A started FeedServer, shut down afterwards."""
    server = FeedServer()
    server.thread.start()
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()
