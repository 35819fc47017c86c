"""Message checks: the message as sent (MIME shape, charsets, line length, required headers, one-click unsubscribe)."""

from __future__ import annotations

import email.policy
import email.utils
import re
from email.message import Message

from ..config import Settings
from ..unsubscribe_links import ONE_CLICK
from .outcome import CheckResult, fail, ok

LINE_LIMIT = 998  # RFC 5322 §2.1.1 (row 12)
_MSG_ID = re.compile(r"^<[^<>@\s]+@[^<>@\s]+>$")


def _header_count(msg: Message, name: str) -> int:
    return len(msg.get_all(name) or [])


def check_message(eml: bytes, settings: Settings, *, list_send: bool) -> list[CheckResult]:
    """Checks of the message as sent (rows 4, 10, 11, 12). `list_send`: the one-click headers are required."""
    msg = email.message_from_bytes(eml, policy=email.policy.default)
    results: list[CheckResult] = []

    parts = [p.get_content_type() for p in msg.iter_parts()] if msg.is_multipart() else []
    shape = f"{msg.get_content_type()} [{', '.join(parts)}]" if parts else msg.get_content_type()
    results.append(
        ok("mime-structure", shape)
        if msg.get_content_type() == "multipart/alternative" and parts == ["text/plain", "text/html"]
        else fail("mime-structure", f"{shape}; send multipart/alternative with text/plain first, then text/html")
    )
    charsets = (
        [str(p.get_content_charset()) for p in msg.iter_parts()]
        if msg.is_multipart()
        else [str(msg.get_content_charset())]
    )
    results.append(
        ok("charset", "utf-8 on every part")
        if charsets and all(c.lower() == "utf-8" for c in charsets)
        else fail("charset", f"charsets {charsets}; declare charset=utf-8 on both parts")
    )

    longest = max((len(line.rstrip(b"\r")) for line in eml.split(b"\n")), default=0)
    results.append(
        ok("line-length", f"longest line {longest:,} octets (limit {LINE_LIMIT})", longest)
        if longest <= LINE_LIMIT
        else fail(
            "line-length",
            f"a line of {longest:,} octets (limit {LINE_LIMIT}); encode the parts quoted-printable",
            longest,
        )
    )

    problems = []
    for name in ("Date", "From", "To", "Subject", "Message-ID", "MIME-Version"):
        count = _header_count(msg, name)
        if count != 1:
            problems.append(f"{name} x{count}")
    if _header_count(msg, "From") == 1:
        addresses = email.utils.getaddresses([str(msg["From"])])
        if len(addresses) != 1 or "@" not in addresses[0][1]:
            problems.append(f"From is not a single address ({str(msg['From'])[:60]!r})")
    if _header_count(msg, "Date") == 1:
        try:
            email.utils.parsedate_to_datetime(str(msg["Date"]))
        except (TypeError, ValueError):
            problems.append(f"Date is not a date ({str(msg['Date'])!r})")
    if _header_count(msg, "Subject") == 1 and not str(msg["Subject"]).strip():
        problems.append("Subject is empty")
    message_id = str(msg.get("Message-ID", "")).strip()
    if _header_count(msg, "Message-ID") == 1 and not _MSG_ID.match(message_id):
        problems.append(f"Message-ID {message_id[:60]!r} is not <id@domain>")
    results.append(
        fail("headers", f"{'; '.join(problems)}; each must appear exactly once and be valid")
        if problems
        else ok("headers", f"Date, From, To, Subject, Message-ID {message_id[:50]}, MIME-Version once each")
    )
    results.append(_check_one_click(msg, list_send))
    return results


def _check_one_click(msg: Message, list_send: bool) -> CheckResult:
    lu_all, post_all = msg.get_all("List-Unsubscribe") or [], msg.get_all("List-Unsubscribe-Post") or []
    if not lu_all and not post_all and not list_send:
        return CheckResult("one-click", "skip", "no List-Unsubscribe headers (not a list send)")
    problems = []
    if len(lu_all) != 1:
        problems.append(f"List-Unsubscribe x{len(lu_all)}")
    if len(post_all) != 1:
        problems.append(f"List-Unsubscribe-Post x{len(post_all)}")
    https: list[str] = []
    if lu_all:
        value = re.sub(r"\s+", " ", str(lu_all[0]))
        uris = re.findall(r"<([^<>]*)>", value)
        https = [u for u in uris if u.lower().startswith("https://")]
        others = [u for u in uris if not u.lower().startswith(("https://", "mailto:"))]
        if len(https) != 1:
            problems.append(f"List-Unsubscribe has {len(https)} https URIs, RFC 8058 wants exactly one")
        if others:
            problems.append(f"List-Unsubscribe has non-https, non-mailto URIs {others}; use https")
    if post_all and re.sub(r"\s+", " ", str(post_all[0])).strip() != ONE_CLICK:
        problems.append(f"List-Unsubscribe-Post is {str(post_all[0])!r}, not {ONE_CLICK!r}")
    if problems:
        return fail(
            "one-click", f"{'; '.join(problems)}; delivery must add both RFC 8058 headers to every list message"
        )
    return ok("one-click", f"List-Unsubscribe <{https[0][:60]}> + List-Unsubscribe-Post One-Click")
