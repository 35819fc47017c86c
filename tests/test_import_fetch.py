"""Import, fetch: the HTTP client against a real server on 127.0.0.1 (conditional GET, gzip, redirects, limits)."""

from __future__ import annotations

import gzip
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from _feed_server import FIXTURES, FeedServer, feed_server

from digest import __version__
from digest.errors import FeedError
from digest.fetch import fetch


@pytest.fixture
def server() -> Iterator[FeedServer]:
    """The fixture feeds served over HTTP."""
    with feed_server() as running:
        yield running


def test_fetch_names_digest_asks_for_gzip_and_unzips(server: FeedServer) -> None:
    """The request carries digest's User-Agent and Accept-Encoding: gzip; the gzip body arrives unzipped."""
    got = fetch(server.url + "/wordpress/feed/")
    assert got.body == (FIXTURES / "wordpress.rss").read_bytes()
    assert got.etag and got.last_modified and not got.not_modified
    _, headers = server.requests[-1]
    assert headers["user-agent"].startswith(f"digest/{__version__}")
    assert "gzip" in headers["accept-encoding"]


def test_conditional_get_gives_not_modified(server: FeedServer) -> None:
    """With the ETag and Last-Modified of the last answer, an unchanged feed is a 304 with no body."""
    first = fetch(server.url + "/atom.xml")
    again = fetch(server.url + "/atom.xml", first.etag, first.last_modified)
    assert again.not_modified and again.body == b""
    _, headers = server.requests[-1]
    assert headers["if-none-match"] == first.etag and headers["if-modified-since"] == first.last_modified


def test_redirects_are_followed_up_to_five(server: FeedServer) -> None:
    """Five redirects reach the feed; six are refused with a message saying so."""
    assert fetch(server.url + "/redirect/5").url.endswith("/wordpress/feed/")
    with pytest.raises(FeedError, match="more than 5 redirects"):
        fetch(server.url + "/redirect/6")


@pytest.mark.parametrize(
    ("path", "message"),
    [("/missing", "HTTP 404 Not Found; not found; check the feed URL"), ("/error", "HTTP 500 .*try again later")],
)
def test_http_errors_name_the_feed_and_the_fix(server: FeedServer, path: str, message: str) -> None:
    """404 and 500 become one line naming the URL, the status and what to do."""
    with pytest.raises(FeedError, match=message) as raised:
        fetch(server.url + path)
    assert str(raised.value).startswith(server.url + path + ": ")


def test_slow_answer_times_out(server: FeedServer) -> None:
    """A server slower than the timeout is reported, not waited for."""
    with pytest.raises(FeedError, match=r"no answer within 0.3 s"):
        fetch(server.url + "/slow", timeout=0.3)


def test_oversized_document_is_refused(server: FeedServer) -> None:
    """More than 10 MB is refused, whether announced by Content-Length or found while reading."""
    with pytest.raises(FeedError, match="over the 10,485,760-byte limit"):
        fetch(server.url + "/huge.xml")
    with pytest.raises(FeedError, match="over the 1,000-byte limit"):
        fetch(server.url + "/wordpress/feed/", max_bytes=1000)


def test_retry_after_is_honoured_once(server: FeedServer) -> None:
    """A 503 with Retry-After: 1 is retried once after that pause and then succeeds."""
    pauses: list[float] = []
    got = fetch(server.url + "/busy/feed.json", sleep=pauses.append)
    assert pauses == [1.0] and got.body.startswith(b"{")
    assert [path for path, _ in server.requests] == ["/busy/feed.json", "/busy/feed.json"]


def test_unreachable_host_is_one_line() -> None:
    """A port nobody listens on is reported as unreachable."""
    with pytest.raises(FeedError, match="cannot be reached"):
        fetch("http://127.0.0.1:9/feed/", timeout=2)


def test_proxy_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """HTTP_PROXY is used: the proxy receives the absolute URL of the feed."""
    seen: list[str] = []

    class Proxy(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            seen.append(self.path)
            body = (FIXTURES / "rss1.rdf").read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    proxy = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    threading.Thread(target=proxy.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.server_address[1]}")
        monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{proxy.server_address[1]}")
        monkeypatch.setenv("NO_PROXY", "localhost")
        monkeypatch.setenv("no_proxy", "localhost")
        assert fetch("http://feeds.example.test/rss1.rdf").body.startswith(b"<?xml")
    finally:
        proxy.shutdown()
        proxy.server_close()
    assert seen == ["http://feeds.example.test/rss1.rdf"]


def test_local_files_and_gzipped_files(tmp_path: Path) -> None:
    """A path is read from disk (a .gz unzipped); a missing file names the fix."""
    packed = tmp_path / "feed.xml.gz"
    packed.write_bytes(gzip.compress((FIXTURES / "atom.xml").read_bytes()))
    assert fetch(str(packed)).body == (FIXTURES / "atom.xml").read_bytes()
    with pytest.raises(FeedError, match="file not found"):
        fetch(str(tmp_path / "nope.xml"))
