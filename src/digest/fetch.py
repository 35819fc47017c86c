"""Fetch: one feed's bytes over HTTP(S) or from a local file, politely (conditional GET, gzip, caps).

The standard library's urllib does the work: it follows redirects, verifies certificates and takes
proxies from the environment (HTTPS_PROXY, NO_PROXY) by itself.
"""

from __future__ import annotations

import email.utils
import gzip
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from . import __version__
from .errors import FeedError

USER_AGENT = f"digest/{__version__}"
MAX_BYTES = 10 * 1024 * 1024
MAX_REDIRECTS = 5
TIMEOUT = 30.0
RETRY_AFTER_MAX = 60.0  # a server asking for a longer pause is asked again at the next run
_CHUNK = 64 * 1024


@dataclass(frozen=True)
class Fetched:
    """A fetched document, or `not_modified` (304) with no body."""

    url: str  # after redirects
    body: bytes = b""
    content_type: str = ""
    etag: str = ""
    last_modified: str = ""
    not_modified: bool = False


def is_url(source: str) -> bool:
    return source.lower().startswith(("http://", "https://"))


class _Redirects(urllib.request.HTTPRedirectHandler):
    max_redirections = MAX_REDIRECTS


def redact(source: str) -> str:
    """`source` as it may be shown or stored: the password of a user:password@ URL replaced by ***."""
    if not is_url(source):
        return source
    parts = urllib.parse.urlsplit(source)
    if parts.password is None:
        return source
    return parts._replace(netloc=f"{parts.username}:***@{parts.netloc.rpartition('@')[2]}").geturl()


def _credentials(source: str) -> tuple[str, str, str] | None:
    """(URL without user:password@, user, password), or None when the URL has no password."""
    parts = urllib.parse.urlsplit(source)
    if parts.password is None:
        return None
    url = parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()
    return url, urllib.parse.unquote(parts.username or ""), urllib.parse.unquote(parts.password)


def _opener(login: tuple[str, str, str] | None) -> urllib.request.OpenerDirector:
    # build_opener adds ProxyHandler (environment proxies) and the HTTPS handler itself.
    handlers: list[urllib.request.BaseHandler] = [_Redirects()]
    if login:
        # Sent up front, and only to URLs under the feed's own: a redirect elsewhere does not get the password.
        passwords = urllib.request.HTTPPasswordMgrWithPriorAuth()
        passwords.add_password(None, login[0], login[1], login[2], is_authenticated=True)
        handlers.append(urllib.request.HTTPBasicAuthHandler(passwords))
    return urllib.request.build_opener(*handlers)


def fetch(
    source: str,
    etag: str = "",
    last_modified: str = "",
    *,
    timeout: float = TIMEOUT,
    max_bytes: int = MAX_BYTES,
    sleep: Callable[[float], None] = time.sleep,
) -> Fetched:
    """Fetch `source` (an http(s) URL or a file path); raise FeedError naming it (password hidden) and the problem."""
    if not is_url(source):
        return _read_file(source, max_bytes)
    login = _credentials(source)
    url, source = (login[0] if login else source), redact(source)
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "gzip", "Accept": _ACCEPT}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    request = urllib.request.Request(url, headers=headers)
    for attempt in (1, 2):
        try:
            with _opener(login).open(request, timeout=timeout) as response:
                body = _read_body(source, response, max_bytes)
                return Fetched(
                    url=response.geturl(),
                    body=body,
                    content_type=response.headers.get("Content-Type", ""),
                    etag=response.headers.get("ETag", ""),
                    last_modified=response.headers.get("Last-Modified", ""),
                )
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code == 304:
                return Fetched(url=source, etag=etag, last_modified=last_modified, not_modified=True)
            wait = _retry_after(exc.headers.get("Retry-After", "")) if exc.code in (429, 503) else None
            if attempt == 1 and wait is not None and wait <= RETRY_AFTER_MAX:
                sleep(wait)
                continue
            raise FeedError(source, _http_problem(exc)) from None
        except urllib.error.URLError as exc:
            raise FeedError(source, _network_problem(exc.reason, timeout)) from None
        except TimeoutError:
            raise FeedError(source, f"no answer within {timeout:g} s; try again later or raise --timeout") from None
        except OSError as exc:
            raise FeedError(source, _network_problem(exc, timeout)) from None
    raise AssertionError("unreachable: the second attempt returns or raises")


_ACCEPT = (
    "application/rss+xml, application/atom+xml, application/feed+json, text/calendar, "
    "application/xml;q=0.9, text/xml;q=0.9, application/json;q=0.8, */*;q=0.5"
)


def _read_body(source: str, response: Any, max_bytes: int) -> bytes:
    """The body, gunzipped, refusing more than `max_bytes` before or after decompression."""
    declared = response.headers.get("Content-Length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise FeedError(source, f"is {int(declared):,} bytes, over the {max_bytes:,}-byte limit; is it really a feed?")
    raw = _read_capped(source, response, max_bytes)
    if response.headers.get("Content-Encoding", "").lower() not in ("gzip", "x-gzip"):
        return raw
    # Decompress in bounded steps so a small gzip bomb cannot fill memory.
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        body = inflater.decompress(raw, max_bytes + 1)
    except zlib.error:
        raise FeedError(source, "sent a broken gzip body; try again later") from None
    if len(body) > max_bytes or inflater.unconsumed_tail:
        raise FeedError(source, f"is over the {max_bytes:,}-byte limit once unzipped; is it really a feed?")
    return body


def _read_capped(source: str, stream: IO[bytes], max_bytes: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while chunk := stream.read(_CHUNK):
        size += len(chunk)
        if size > max_bytes:
            raise FeedError(source, f"is over the {max_bytes:,}-byte limit; is it really a feed?")
        chunks.append(chunk)
    return b"".join(chunks)


def _read_file(source: str, max_bytes: int) -> Fetched:
    path = Path(source).expanduser()
    try:
        with path.open("rb") as handle:
            body = _read_capped(source, handle, max_bytes)
    except FileNotFoundError:
        raise FeedError(source, "file not found; give an http(s) URL or the path of a feed file") from None
    except IsADirectoryError:
        raise FeedError(source, "is a folder; give the path of a feed file") from None
    except OSError as exc:
        raise FeedError(source, f"cannot be read ({exc.strerror})") from None
    if body[:2] == b"\x1f\x8b":  # a saved .xml.gz
        try:
            body = gzip.decompress(body)
        except (OSError, EOFError):
            raise FeedError(source, "is a broken gzip file") from None
    return Fetched(url=str(path.resolve()), body=body)


def _retry_after(value: str) -> float | None:
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _http_problem(exc: urllib.error.HTTPError) -> str:
    if exc.code in (301, 302, 303, 307, 308):
        return f"more than {MAX_REDIRECTS} redirects; use the feed's final address"
    hints = {
        401: "the feed needs a login; use a public feed URL",
        403: "the server refuses digest; check the URL or ask the site to allow it",
        404: "not found; check the feed URL",
        410: "gone; remove it from [[feeds]]",
        429: "too many requests; try again later",
    }
    hint = hints.get(exc.code, "a server error; try again later" if exc.code >= 500 else "check the feed URL")
    return f"HTTP {exc.code} {exc.reason}; {hint}"


def _network_problem(reason: object, timeout: float) -> str:
    if isinstance(reason, TimeoutError):
        return f"no answer within {timeout:g} s; try again later or raise --timeout"
    text = getattr(reason, "strerror", None) or str(reason)
    return f"cannot be reached ({text}); check the URL and the network"
