"""Parse: a fetched feed (RSS 0.9x/1.0/2.0, Atom, JSON Feed 1.1, iCalendar) -> plain Entries.

feedparser reads RSS and Atom (xml:base, namespaces, entities, broken encodings), icalendar and
recurring-ical-events read calendars; JSON Feed is JSON, read with the standard library. Nothing
here decides where an entry goes: importer.py does that.
"""

from __future__ import annotations

import codecs
import datetime as dt
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urljoin

from .entries import Entry, Feed, parse_date, plain, text_html
from .errors import FeedError

_XML_ENCODING = re.compile(rb"""^\s*<\?xml[^>]*encoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")
_HTML_START = re.compile(rb"^\s*(<!--.*?-->\s*)*<(!doctype\s+html|html)\b", re.IGNORECASE | re.DOTALL)


def parse(source: str, body: bytes, content_type: str = "", *, today: dt.date, horizon_days: int) -> Feed:
    """Parse a feed's bytes; raise FeedError naming `source` when it is not a feed we can read.

    Recurring calendar events yield their occurrences from `today` to `today + horizon_days` only.
    """
    head = body.lstrip(b"\xef\xbb\xbf \t\r\n")[:2048]
    kind = content_type.split(";")[0].strip().lower()
    if head.upper().startswith(b"BEGIN:VCALENDAR") or kind == "text/calendar":
        from . import calendars

        return calendars.parse(source, body, today=today, horizon_days=horizon_days)
    if head.startswith(b"{") or kind in ("application/feed+json", "application/json"):
        return _json_feed(source, body)
    if _HTML_START.match(head):
        raise FeedError(source, "is an HTML page, not a feed; use the site's feed URL (WordPress: /feed/)")
    if not head.startswith((b"<", b"\xff\xfe", b"\xfe\xff", b"\x00<")):  # XML, also in UTF-16
        raise FeedError(source, "is not a feed (no RSS, Atom, JSON Feed or iCalendar found); check the URL")
    return _xml_feed(source, body, content_type, head)


def _xml_feed(source: str, body: bytes, content_type: str, head: bytes) -> Feed:
    import feedparser

    declared = _XML_ENCODING.match(head)
    if declared:
        name = declared.group(1).decode("ascii")
        try:
            codecs.lookup(name)
        except LookupError:
            raise FeedError(
                source, f"declares an unknown encoding '{name}'; the feed is broken at its source"
            ) from None
    headers = {"content-type": content_type} if content_type else {}
    # Links are made absolute and HTML is sanitised later, once, for every format (summaries.py).
    parsed = feedparser.parse(body, response_headers=headers, sanitize_html=False, resolve_relative_uris=False)
    problem = parsed.get("bozo_exception")
    benign = (feedparser.CharacterEncodingOverride, feedparser.NonXMLContentType)
    if not parsed.version:
        if problem is not None and not isinstance(problem, benign):
            raise FeedError(source, f"is not valid XML ({_xml_problem(problem)}); is it really a feed?")
        raise FeedError(source, "is not a feed (no RSS, Atom, JSON Feed or iCalendar found); check the URL")
    if problem is not None and not isinstance(problem, benign):
        # A truncated or broken document: importing the entries before the break would look complete.
        raise FeedError(source, f"is malformed XML ({_xml_problem(problem)}); nothing imported from it")
    base = str(parsed.feed.get("link", "")) or source
    entries = tuple(_xml_entry(entry, base) for entry in parsed.entries)
    return Feed(format=str(parsed.version), title=plain(str(parsed.feed.get("title", ""))), entries=entries)


def _xml_problem(exc: BaseException) -> str:
    line = getattr(exc, "getLineNumber", None)
    message = getattr(exc, "getMessage", None)
    text = message() if callable(message) else str(exc)
    return f"line {line()}: {text}" if callable(line) else text


def _xml_entry(entry: Mapping[str, Any], feed_base: str) -> Entry:
    detail = entry.get("title_detail") or {}
    raw_title = str(entry.get("title", ""))
    title = " ".join(raw_title.split()) if detail.get("type") == "text/plain" else plain(raw_title)
    base = str((entry.get("content") or [{}])[0].get("base", "")) or str(detail.get("base", "")) or feed_base
    link = _alternate(entry)
    link = urljoin(base, link) if link else ""
    key = str(entry.get("id", "")) or link
    raw_date = str(entry.get("published", "") or entry.get("updated", "") or entry.get("dc_date", ""))
    posted = parse_date(raw_date) or _struct(entry.get("published_parsed") or entry.get("updated_parsed"))
    content = entry.get("content") or []
    body = str(content[0].get("value", "")) if content else str(entry.get("summary", ""))
    if content and content[0].get("type") == "text/plain":
        body = text_html(body)
    categories = tuple(str(tag.get("term") or tag.get("label") or "").strip() for tag in entry.get("tags") or [])
    image, alt = _media_image(entry, base)
    return Entry(
        key=key,
        title=title,
        link=link,
        posted=posted,
        html=body,
        base=link or base,
        categories=tuple(c for c in categories if c),
        image=image,
        image_alt=alt,
    )


def _alternate(entry: Mapping[str, Any]) -> str:
    for link in entry.get("links") or []:
        if link.get("rel", "alternate") == "alternate" and link.get("href"):
            return str(link["href"])
    return str(entry.get("link", ""))


def _struct(value: Any) -> dt.datetime | None:
    # feedparser's parsed dates are UTC time tuples.
    return dt.datetime(*tuple(value)[:6]).replace(tzinfo=dt.UTC) if value else None


def _media_image(entry: Mapping[str, Any], base: str) -> tuple[str, str]:
    """The entry's image from an image enclosure, media:content or media:thumbnail (https only), with its alt."""
    alt = plain(str(entry.get("media_description", "") or entry.get("media_title", "")))
    candidates: list[str] = []
    for link in entry.get("enclosures") or []:
        if str(link.get("type", "")).startswith("image/"):
            candidates.append(str(link.get("href", "")))
    for media in entry.get("media_content") or []:
        if media.get("medium") == "image" or str(media.get("type", "")).startswith("image/"):
            candidates.append(str(media.get("url", "")))
    candidates.extend(str(thumb.get("url", "")) for thumb in entry.get("media_thumbnail") or [])
    for url in candidates:
        url = urljoin(base, url) if url else ""
        if url.lower().startswith("https://"):
            return url, alt
    return "", ""


def _json_feed(source: str, body: bytes) -> Feed:
    try:
        data = json.loads(body.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise FeedError(source, "is not UTF-8 text, as JSON Feed requires; the feed is broken at its source") from None
    except json.JSONDecodeError as exc:
        raise FeedError(source, f"is not valid JSON (line {exc.lineno}: {exc.msg}); is it really a feed?") from None
    version = str(data.get("version", "")) if isinstance(data, dict) else ""
    if not version.startswith("https://jsonfeed.org/version/"):
        raise FeedError(source, "is JSON but not a JSON Feed (no 'version: https://jsonfeed.org/version/1.1')")
    base = str(data.get("home_page_url") or data.get("feed_url") or source)
    items = data.get("items")
    if not isinstance(items, list):
        raise FeedError(source, "is a JSON Feed without an 'items' list; the feed is broken at its source")
    entries = tuple(_json_entry(item, base) for item in items if isinstance(item, dict))
    return Feed(
        format="json" + version.rsplit("/", 1)[-1].replace(".", ""), title=str(data.get("title", "")), entries=entries
    )


def _json_entry(item: Mapping[str, Any], base: str) -> Entry:
    link = str(item.get("url") or item.get("external_url") or "")
    link = urljoin(base, link) if link else ""
    body = str(item.get("content_html") or "") or text_html(str(item.get("content_text") or item.get("summary") or ""))
    picture = str(item.get("image") or item.get("banner_image") or "")
    image = urljoin(base, picture) if picture else ""
    raw_date = str(item.get("date_published") or item.get("date_modified") or "")
    return Entry(
        key=str(item.get("id", "")) or link,
        title=plain(str(item.get("title", ""))),
        link=link,
        posted=parse_date(raw_date),
        html=body,
        base=link or base,
        categories=tuple(str(tag).strip() for tag in _list(item.get("tags")) if str(tag).strip()),
        image=image if image.lower().startswith("https://") else "",
    )


def _list(value: object) -> Iterable[object]:
    return value if isinstance(value, list) else []
