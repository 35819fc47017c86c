"""Checks: the quality gates over a build (size, styles, MIME, headers, accessibility, SpamAssassin).

docs/CHECKS.md lists the checks with their thresholds ("row N" is the row of its table). They look at
what a list recipient gets: the build with every placeholder filled by realistic sample values, in the
message delivery would send, one-click headers included.
"""

from __future__ import annotations

import email.policy
import email.utils
import re
import shutil
import subprocess
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from email.message import Message
from pathlib import Path
from typing import Literal

import lxml.html
from lxml.etree import ParserError, _Element

from .appearance import (
    INVISIBLE,
    State,
    TextRun,
    accessible_name,
    contrast_ratio,
    describe,
    light_dark,
    nested_at_rule,
    root_declares_light_dark,
    style_dict,
    text_runs,
    visible_text,
)
from .build import read_build
from .config import Settings
from .css import style_blocks, style_bytes
from .errors import ConfigError
from .message import MessageTemplate
from .models import Build, Recipient
from .personalize import FIELDS, SAMPLE_EMAIL, SAMPLE_NAME, fill, html_token, sample_values, text_token
from .unsubscribe_links import ONE_CLICK, list_unsubscribe_headers

Status = Literal["pass", "warn", "fail", "skip"]

HTML_FAIL_BYTES = 102_000  # Gmail clips "at 102 KB"; 1000 or 1024 is unknown, so the smaller (row 1)
HTML_WARN_BYTES = 90_000  # room for what an ESP adds after us: click tracking, open pixel (row 1)
STYLE_BUDGET = 16_384  # Gmail drops <style> past this many bytes in total (row 2)
LINE_LIMIT = 998  # RFC 5322 §2.1.1 (row 12)
CHECKS_VERSION = 1  # raise when a check changes what it finds: recorded results (checked.py) are then stale
SPAM_LIMIT = 2.0  # house limit under `spamassassin -L`; the default spam cut-off is 5.0 (row 26)
SPAM_TIMEOUT = 60.0
# Rules that say the message looks like an image-only or mismatched-parts mail (row 26).
SPAM_BANNED_PREFIXES = ("MPART_ALT_DIFF", "MIME_HTML_ONLY", "HTML_IMAGE_ONLY_", "HTML_SHORT_LINK_IMG_")
SPAM_BANNED_EXACT = frozenset({"HTML_IMAGE_RATIO_02"})
FONT_FLOOR_PX = 12.0  # house rule: nothing visible smaller (row 23)
FONT_BODY_PX = 14.0  # house rule: body text at least this; smaller visible text is reported as a warning
CONTRAST_TEXT = 4.5  # WCAG 1.4.3 (row 20)
CONTRAST_LARGE = 3.0  # WCAG large text: >= 24px, or >= 18.66px bold

GENERIC_LINK_TEXT = re.compile(r"(click here|click|here|read more|more|learn more|more information|link|this link)")
_PLACEHOLDER = re.compile(r"%%[A-Za-z_][A-Za-z0-9_:]*%%")
_MSG_ID = re.compile(r"^<[^<>@\s]+@[^<>@\s]+>$")
_HTTPS_URL = re.compile(r"https://[^\s<>\"')\]]+")


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check: `value` is the measured figure (bytes, score, count) when there is one."""

    name: str
    status: Status
    detail: str
    value: float | int | None = None

    def line(self) -> str:
        """One line for the terminal: `PASS  html-size           87,410 bytes (budget 102,000)`."""
        return f"{self.status.upper():<5} {self.name:<20} {self.detail}"

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def failed(results: Iterable[CheckResult]) -> bool:
    return any(r.status == "fail" for r in results)


def _pass(name: str, detail: str, value: float | int | None = None) -> CheckResult:
    return CheckResult(name, "pass", detail, value)


def _fail(name: str, detail: str, value: float | int | None = None) -> CheckResult:
    return CheckResult(name, "fail", detail, value)


def _listed(items: list[str], limit: int = 3) -> str:
    shown = "; ".join(items[:limit])
    return shown + (f"; and {len(items) - limit} more" if len(items) > limit else "")


def _squash(text: str) -> str:
    """Text compared loosely: case, whitespace, commas and invisible characters do not matter."""
    text = text.translate({ord(c): None for c in INVISIBLE})
    return re.sub(r"[\s,]+", " ", text).strip().casefold()


# --- HTML ---------------------------------------------------------------------------------------


def _check_styles(html: str) -> list[CheckResult]:
    blocks = style_blocks(html)
    total = style_bytes(html)
    detail = f"{total:,} bytes in {len(blocks)} <style> block(s) (budget {STYLE_BUDGET:,})"
    size = _pass("style-size", detail, total)
    if total > STYLE_BUDGET:
        size = _fail("style-size", detail + "; Gmail drops the styles past the budget: trim the CSS", total)
    mixed = [n for n, b in enumerate(blocks, 1) if "@media" in b and nested_at_rule(b)]
    nesting = _pass("style-nesting", "no <style> block mixes a nested at-rule with @media", len(mixed))
    if mixed:
        nesting = _fail(
            "style-nesting",
            f"<style> block(s) {', '.join(map(str, mixed))} nest an at-rule next to @media rules; Gmail drops such "
            "a block whole: move the nested at-rule (e.g. mj-accordion's @goodbye{{@gmail}}) out or drop it",
            len(mixed),
        )
    return [size, nesting]


def check_html(
    html: str,
    settings: Settings,
    *,
    preheader: str | None = None,
    edition: str = "",
    wire_bytes: int | None = None,
) -> list[CheckResult]:
    """Checks of the HTML part (rows 1-3, 9, 13-24). Placeholders are filled with sample values first.

    `preheader`: the text the hidden preheader must hold; `wire_bytes`: the part's encoded size, shown
    next to the decoded one.
    """
    html = fill(html, sample_values(settings, edition)) if "%%" in html else html
    results: list[CheckResult] = []

    size = len(html.encode("utf-8"))
    detail = f"{size:,} bytes (budget {HTML_FAIL_BYTES:,}, warn above {HTML_WARN_BYTES:,})"
    if wire_bytes is not None:
        detail += f"; {wire_bytes:,} bytes encoded"
    if size > HTML_FAIL_BYTES:
        results.append(
            _fail("html-size", detail + "; Gmail clips the email and hides the footer: show fewer items", size)
        )
    elif size > HTML_WARN_BYTES:
        results.append(CheckResult("html-size", "warn", detail + "; little room left for click tracking", size))
    else:
        results.append(_pass("html-size", detail, size))

    leftover = sorted(set(_PLACEHOLDER.findall(html)))
    results.append(
        _fail("html-placeholders", f"unknown placeholders left in the HTML: {', '.join(leftover)}", len(leftover))
        if leftover
        else _pass("html-placeholders", "every placeholder is filled", 0)
    )
    results.extend(_check_styles(html))

    try:
        root = lxml.html.document_fromstring(html)
    except (ParserError, ValueError) as exc:
        results.append(_fail("html-parse", f"the HTML cannot be parsed ({exc}); look at the template output"))
        return results
    body = root.find("body")
    texts = list(text_runs(body, State())) if body is not None else []
    results.extend(_check_accessibility(root, body, texts))
    results.append(_check_preheader(body, preheader))
    results.append(_check_html_unsubscribe(root, settings))
    results.append(_check_postal(settings, visible_text(texts), "html-postal-address", "HTML"))
    return results


def _check_accessibility(root: _Element, body: _Element | None, texts: list[TextRun]) -> list[CheckResult]:
    results: list[CheckResult] = []

    missing = [a for a in ("lang", "dir") if not (root.get(a) or "").strip()]
    results.append(
        _fail("html-lang-dir", f"<html> has no {' or '.join(missing)}; set it in the template's <mjml lang dir>")
        if missing
        else _pass("html-lang-dir", f'<html lang="{root.get("lang")}" dir="{root.get("dir")}">')
    )

    children = [c for c in body if isinstance(c.tag, str)] if body is not None else []
    bare = [describe(c) for c in children if not (c.get("lang") and c.get("dir"))]
    results.append(
        _fail(
            "body-lang-dir",
            f"{len(bare)} of {len(children)} children of <body> lack lang or dir: {_listed(bare)}; "
            "add lang and dir to each (the preheader div too)",
            len(bare),
        )
        if bare
        else _pass("body-lang-dir", f"all {len(children)} children of <body> carry lang and dir", 0)
    )

    data_tables = set()
    for th in root.iter("th"):
        table = next(th.iterancestors("table"), None)
        if table is not None:
            data_tables.add(table)
    tables = list(root.iter("table"))
    roleless = [
        t for t in tables if t not in data_tables and (t.get("role") or "").strip() not in {"presentation", "none"}
    ]
    results.append(
        _fail(
            "table-roles",
            f'{len(roleless)} of {len(tables)} layout tables lack role="presentation": '
            f"{_listed([describe(t) for t in roleless])}",
            len(roleless),
        )
        if roleless
        else _pass("table-roles", f'{len(tables)} tables: layout tables have role="presentation"', 0)
    )

    images = list(root.iter("img"))
    no_alt = [img.get("src", "?")[:60] for img in images if img.get("alt") is None]
    results.append(
        _fail(
            "img-alt",
            f'{len(no_alt)} of {len(images)} images have no alt: {_listed(no_alt)}; add alt ("" if decorative)',
            len(no_alt),
        )
        if no_alt
        else _pass("img-alt", f"all {len(images)} images have alt", 0)
    )

    links = [a for a in root.iter("a") if a.get("href") is not None]
    names = [(a, accessible_name(a)) for a in links]
    empty = [a.get("href", "")[:60] for a, name in names if not name]
    results.append(
        _fail("link-text", f"{len(empty)} links have no text, alt, aria-label or title: {_listed(empty)}", len(empty))
        if empty
        else _pass("link-text", f"all {len(links)} links have discernible text", 0)
    )
    generic = [
        name for _, name in names if name and GENERIC_LINK_TEXT.fullmatch(_squash(re.sub(r"[^\w\s]", " ", name)))
    ]
    results.append(
        _fail(
            "link-text-generic",
            f"{len(generic)} links say only {_listed(sorted(set(repr(g) for g in generic)))}; name the target "
            '(e.g. "Read more about <title>") or add an aria-label',
            len(generic),
        )
        if generic
        else _pass("link-text-generic", "no link says only 'click here', 'here' or 'read more'", 0)
    )

    ids = {e.get("id") for e in root.iter() if isinstance(e.tag, str) and e.get("id")}
    ids |= {a.get("name") for a in root.iter("a") if a.get("name")}
    dead = [
        href
        for a in links
        if (href := (a.get("href") or "").strip()) in {"", "#"} or (href.startswith("#") and href[1:] not in ids)
    ]
    results.append(
        _fail(
            "dead-links",
            f"{len(dead)} links go nowhere: {_listed(dead)}; point them at a URL or an existing id",
            len(dead),
        )
        if dead
        else _pass("dead-links", "no empty or dangling #links", 0)
    )

    title = root.find("head/title")
    title_text = re.sub(r"\s+", " ", title.text_content()).strip() if title is not None else ""
    results.append(
        _pass("title", f"<title> {title_text[:60]!r}")
        if title_text
        else _fail("title", "<title> is missing or empty; set <mj-title> in the template")
    )

    h1 = len(list(root.iter("h1")))
    results.append(
        _pass("h1", "exactly one <h1>", h1)
        if h1 == 1
        else _fail("h1", f"{h1} <h1> elements; the email needs exactly one (its title), the rest <h2>..", h1)
    )

    results.append(_check_viewport(root))
    results.append(_check_color_scheme(root))
    results.append(_check_font_size(texts))
    results.append(_check_contrast(texts))
    return results


def _check_viewport(root: _Element) -> CheckResult:
    metas = [m.get("content", "") for m in root.iter("meta") if (m.get("name") or "").lower() == "viewport"]
    blocked = []
    for content in metas:
        c = content.lower().replace(" ", "")
        if re.search(r"user-scalable=(no|0)\b", c):
            blocked.append("user-scalable=no")
        scale = re.search(r"maximum-scale=([\d.]+)", c)
        if scale and float(scale.group(1) or 0) < 2:
            blocked.append(f"maximum-scale={scale.group(1)}")
    if blocked:
        return _fail("viewport-zoom", f"the viewport blocks zoom ({', '.join(blocked)}); remove it from the template")
    return _pass("viewport-zoom", "zoom is not blocked" if metas else "no viewport meta: zoom is not blocked")


def _check_color_scheme(root: _Element) -> CheckResult:
    metas = {(m.get("name") or "").lower(): (m.get("content") or "").lower() for m in root.iter("meta")}
    missing = [
        f'<meta name="{name}" content="light dark">'
        for name in ("color-scheme", "supported-color-schemes")
        if not {"light", "dark"} <= set(metas.get(name, "").split())
    ]
    css = " ".join(s.text or "" for s in root.iter("style"))
    root_rule = root_declares_light_dark(css)
    on_html = light_dark(style_dict(root.get("style") or "").get("color-scheme", ""))
    if not (root_rule or on_html):
        missing.append(":root{color-scheme:light dark}")
    if missing:
        return _fail("color-scheme", f"dark mode hints missing: {', '.join(missing)}; add them to the template head")
    return _pass("color-scheme", "color-scheme metas and :root color-scheme present")


def _check_font_size(texts: list[TextRun]) -> CheckResult:
    sized = [(t.state.font_px, t) for t in texts if not t.state.hidden and t.state.font_px is not None]
    if not sized:
        return CheckResult("font-size", "skip", "no visible text with a font size in px")
    smallest = min(px for px, _ in sized if px is not None)
    tiny = [f"{px:g}px {describe(t.element)}" for px, t in sized if px is not None and px < FONT_FLOOR_PX]
    small = sorted({px for px, _ in sized if px is not None and FONT_FLOOR_PX <= px < FONT_BODY_PX})
    if tiny:
        return _fail(
            "font-size",
            f"{len(tiny)} visible text(s) below {FONT_FLOOR_PX:g}px: {_listed(tiny)}; raise them in the template",
            smallest,
        )
    if small:
        return CheckResult(
            "font-size",
            "warn",
            f"smallest visible text {smallest:g}px (floor {FONT_FLOOR_PX:g}px); body text should be "
            f">= {FONT_BODY_PX:g}px: {', '.join(f'{s:g}px' for s in small)} used",
            smallest,
        )
    return _pass("font-size", f"smallest visible text {smallest:g}px (body >= {FONT_BODY_PX:g}px)", smallest)


def _check_contrast(texts: list[TextRun]) -> CheckResult:
    worst: float | None = None
    low: list[str] = []
    measured = 0
    for run in texts:
        state = run.state
        if state.hidden or state.color is None or state.background is None:
            continue
        ratio = contrast_ratio(state.color, state.background)
        measured += 1
        large = state.font_px is not None and (state.font_px >= 24 or (state.bold and state.font_px >= 18.66))
        need = CONTRAST_LARGE if large else CONTRAST_TEXT
        worst = ratio if worst is None else min(worst, ratio)
        if ratio < need:
            low.append(f"{ratio:.2f}:1 < {need:g}:1 {describe(run.element)}")
    if worst is None:
        return CheckResult("contrast", "skip", "no text with known colours")
    if low:
        return _fail(
            "contrast", f"{len(low)} text run(s) with low contrast: {_listed(low)}; darken the text", round(worst, 2)
        )
    return _pass(
        "contrast",
        f"lowest contrast {worst:.2f}:1 over {measured} text runs (needs {CONTRAST_TEXT:g}:1)",
        round(worst, 2),
    )


def _check_preheader(body: _Element | None, preheader: str | None) -> CheckResult:
    if body is None:
        return _fail("preheader", "the HTML has no <body>")
    found = ""
    for run in text_runs(body, State()):
        if not run.state.hidden:
            break
        found = re.sub(r"\s+", " ", run.element.text_content().translate({ord(c): None for c in INVISIBLE})).strip()
        if found:
            break
    if not found:
        return _fail("preheader", "no hidden preheader before the first visible text; add <mj-preview> to the template")
    if preheader and _squash(preheader) not in _squash(found):
        return _fail(
            "preheader", f"the hidden preheader {found[:60]!r} is not the build's preheader {preheader[:60]!r}"
        )
    return _pass("preheader", f"hidden preheader {found[:60]!r} ({len(found)} chars)", len(found))


def _unsubscribe_words(settings: Settings) -> re.Pattern[str]:
    """'unsubscribe', or the newsletter's own word for it ([words] unsubscribe), as readable text."""
    return re.compile(f"unsubscribe|{re.escape(settings.words.unsubscribe.strip())}", re.IGNORECASE)


def _check_html_unsubscribe(root: _Element, settings: Settings) -> CheckResult:
    words = _unsubscribe_words(settings)
    links = [(a.get("href") or "", accessible_name(a)) for a in root.iter("a") if a.get("href") is not None]
    named = [(href, name) for href, name in links if words.search(name)]
    good = [href for href, _ in named if href.startswith("https://")]
    if good:
        return _pass("html-unsubscribe", f"unsubscribe link -> {good[0][:70]}")
    if named:
        return _fail(
            "html-unsubscribe", f"the unsubscribe link is not https ({named[0][0][:60]!r}); set base_url to https://"
        )
    return _fail(
        "html-unsubscribe",
        f"no <a> with {settings.words.unsubscribe!r} in its text; add one to the footer (%%unsubscribe_url%%)",
    )


def _check_postal(settings: Settings, text: str, name: str, part: str) -> CheckResult:
    if not settings.postal_address.strip():
        return _fail(
            name, "postal_address is empty; CAN-SPAM wants a physical address: set postal_address in digest.toml"
        )
    if _squash(settings.postal_address) in _squash(text):
        return _pass(name, f"postal address in the {part} part")
    return _fail(
        name,
        f"the postal address {settings.postal_address[:50]!r} is not in the {part} part; CAN-SPAM wants it in every "
        "email: put it in the template footer",
    )


# --- text part ----------------------------------------------------------------------------------


def check_text(text: str, settings: Settings, *, edition: str = "") -> list[CheckResult]:
    """Checks of the plain-text part (row 9): unsubscribe URL and postal address; placeholders filled."""
    text = fill(text, sample_values(settings, edition)) if "%%" in text else text
    results: list[CheckResult] = []
    leftover = sorted(set(_PLACEHOLDER.findall(text)))
    results.append(
        _fail("text-placeholders", f"unknown placeholders left in the text part: {', '.join(leftover)}", len(leftover))
        if leftover
        else _pass("text-placeholders", "every placeholder is filled", 0)
    )
    lines = text.splitlines()
    found = ""
    words = _unsubscribe_words(settings)
    for n, line in enumerate(lines):
        # The word must be readable text, not just part of the URL's path.
        if words.search(_HTTPS_URL.sub("", line)):
            nearby = " ".join(lines[n : n + 3])
            match = _HTTPS_URL.search(nearby)
            if match:
                found = match.group(0)
                break
    results.append(
        _pass("text-unsubscribe", f"unsubscribe URL -> {found[:70]}")
        if found
        else _fail(
            "text-unsubscribe",
            f"no https URL next to the word {settings.words.unsubscribe!r} in the text part; "
            "add %%unsubscribe_url:text%%",
        )
    )
    results.append(_check_postal(settings, text, "text-postal-address", "text"))
    return results


# --- message ------------------------------------------------------------------------------------


def _header_count(msg: Message, name: str) -> int:
    return len(msg.get_all(name) or [])


def check_message(eml: bytes, settings: Settings, *, list_send: bool) -> list[CheckResult]:
    """Checks of the message as sent (rows 4, 10, 11, 12). `list_send`: the one-click headers are required."""
    msg = email.message_from_bytes(eml, policy=email.policy.default)
    results: list[CheckResult] = []

    parts = [p.get_content_type() for p in msg.iter_parts()] if msg.is_multipart() else []
    shape = f"{msg.get_content_type()} [{', '.join(parts)}]" if parts else msg.get_content_type()
    results.append(
        _pass("mime-structure", shape)
        if msg.get_content_type() == "multipart/alternative" and parts == ["text/plain", "text/html"]
        else _fail("mime-structure", f"{shape}; send multipart/alternative with text/plain first, then text/html")
    )
    charsets = (
        [str(p.get_content_charset()) for p in msg.iter_parts()]
        if msg.is_multipart()
        else [str(msg.get_content_charset())]
    )
    results.append(
        _pass("charset", "utf-8 on every part")
        if charsets and all(c.lower() == "utf-8" for c in charsets)
        else _fail("charset", f"charsets {charsets}; declare charset=utf-8 on both parts")
    )

    longest = max((len(line.rstrip(b"\r")) for line in eml.split(b"\n")), default=0)
    results.append(
        _pass("line-length", f"longest line {longest:,} octets (limit {LINE_LIMIT})", longest)
        if longest <= LINE_LIMIT
        else _fail(
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
        _fail("headers", f"{'; '.join(problems)}; each must appear exactly once and be valid")
        if problems
        else _pass("headers", f"Date, From, To, Subject, Message-ID {message_id[:50]}, MIME-Version once each")
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
        return _fail(
            "one-click", f"{'; '.join(problems)}; delivery must add both RFC 8058 headers to every list message"
        )
    return _pass("one-click", f"List-Unsubscribe <{https[0][:60]}> + List-Unsubscribe-Post One-Click")


# --- SpamAssassin -------------------------------------------------------------------------------


def parse_spam_status(output: bytes) -> tuple[float, list[str]] | None:
    """(score, rules) from the X-Spam-Status header spamassassin -t writes; None if it is absent."""
    head = output.split(b"\n\n", 1)[0].replace(b"\r\n", b"\n")
    match = re.search(rb"^X-Spam-Status:(.*(?:\n[ \t].*)*)", head, re.MULTILINE | re.IGNORECASE)
    if not match:
        return None
    value = re.sub(r"\s+", " ", match.group(1).decode("utf-8", errors="replace"))
    score = re.search(r"score=(-?\d+(?:\.\d+)?)", value)
    tests = re.search(r"tests=(.*?)(?: autolearn=| version=|$)", value)
    if not score:
        return None
    rules = [t.strip() for t in (tests.group(1) if tests else "").split(",") if t.strip() and t.strip() != "none"]
    return float(score.group(1)) + 0.0, rules  # + 0.0 turns SpamAssassin's "-0.0" into 0.0


def check_spamassassin(eml: bytes, *, timeout: float = SPAM_TIMEOUT, binary: str | None = None) -> CheckResult:
    """Row 26: `spamassassin -L -t` (local rules only) score <= 2.0 and no image/parts-mismatch rule."""
    exe = binary or shutil.which("spamassassin")
    if not exe:
        return CheckResult("spamassassin", "skip", "spamassassin is not installed (apt-get install spamassassin)")
    started = time.perf_counter()
    try:
        proc = subprocess.run([exe, "-L", "-t"], input=eml, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return _fail("spamassassin", f"spamassassin gave no answer within {timeout:g} s; run it by hand to see why")
    except OSError as exc:
        return _fail("spamassassin", f"spamassassin could not run ({exc})")
    parsed = parse_spam_status(proc.stdout)
    if parsed is None:
        err = proc.stderr.decode("utf-8", errors="replace").strip().splitlines()
        return _fail("spamassassin", f"no X-Spam-Status in spamassassin's output ({err[-1] if err else 'no message'})")
    score, rules = parsed
    shown = [r for r in rules if r not in {"NO_RECEIVED", "NO_RELAYS"}]
    banned = [r for r in rules if r in SPAM_BANNED_EXACT or r.startswith(SPAM_BANNED_PREFIXES)]
    seconds = time.perf_counter() - started
    detail = f"score {score:.1f} (limit {SPAM_LIMIT:.1f}) in {seconds:.1f} s: {', '.join(shown) or 'no rules'}"
    if banned:
        return _fail("spamassassin", f"{detail}; banned rule(s) {', '.join(banned)}: more text, fewer images", score)
    if score > SPAM_LIMIT:
        return _fail("spamassassin", f"{detail}; above the limit: see the rules above", score)
    return _pass("spamassassin", detail, score)


# --- build folder -------------------------------------------------------------------------------


def _sample_headers(settings: Settings, url: str) -> dict[str, str]:
    try:
        return list_unsubscribe_headers(url, settings.unsubscribe_mailto, allow_loopback=False)
    except ConfigError:
        # Still build the message: the one-click check then says what is wrong with the URL.
        return {"List-Unsubscribe": f"<{url}>", "List-Unsubscribe-Post": ONE_CLICK}


def sample_list_message(build: Build, settings: Settings) -> bytes:
    """The message a list recipient would get, made by delivery's own MessageTemplate: a long sample
    name and address, a real-length unsubscribe URL, and the one-click headers."""
    values = sample_values(settings, build.edition)
    template = MessageTemplate.from_build(build)
    recipient = Recipient(email=SAMPLE_EMAIL, name=SAMPLE_NAME)
    headers = _sample_headers(settings, values["unsubscribe_url"])
    return template.render(recipient, values, headers, template.new_message_id())


def _parts(eml: bytes) -> tuple[str, str, int]:
    """(html, text, encoded html bytes) of a message."""
    msg = email.message_from_bytes(eml, policy=email.policy.default)
    html = text = ""
    wire = 0
    for part in msg.walk():
        if part.is_multipart():
            continue
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes):
            continue
        decoded = payload.decode(part.get_content_charset() or "utf-8", errors="replace")
        if part.get_content_type() == "text/html" and not html:
            html, wire = decoded, len(str(part.get_payload()).encode("ascii", errors="replace"))
        elif part.get_content_type() == "text/plain" and not text:
            text = decoded
    return html, text, wire


def _check_tokens(build: Build) -> CheckResult:
    """Every recipient gets their own unsubscribe link only if the build carries the token in both parts."""
    missing = []
    if html_token("unsubscribe_url") not in build.html:
        missing.append(f"{html_token('unsubscribe_url')} in email.html")
    if text_token("unsubscribe_url") not in build.text:
        missing.append(f"{text_token('unsubscribe_url')} in email.txt")
    known = {html_token(f) for f in FIELDS} | {text_token(f) for f in FIELDS}
    unknown = sorted(set(_PLACEHOLDER.findall(build.html + build.text)) - known)
    if missing or unknown:
        said = [f"missing {', '.join(missing)}"] if missing else []
        said += [f"unknown tokens {', '.join(unknown)}"] if unknown else []
        return _fail("placeholders", f"{'; '.join(said)}; use the tokens of docs/ARCHITECTURE.md")
    return _pass("placeholders", "the build carries the per-recipient unsubscribe token in both parts")


def _check_web(build: Build, settings: Settings) -> list[CheckResult]:
    """The edition's page in the web archive: where it goes, and that nothing personal is left on it."""
    from .archive import leftover_placeholders, site_path
    from .personalize import view_url

    url = view_url(settings, build.edition)
    results = []
    if site_path(settings, url) is None:
        results.append(
            CheckResult(
                "web-page",
                "warn",
                f"view_url {url} is not under base_url {settings.base_url}, so digest archive makes no page for "
                'it and "View in browser" leads nowhere it publishes; set view_url = "{base_url}/digest/{edition}"',
            )
        )
    left = leftover_placeholders(build, settings)
    if left:
        results.append(
            _fail(
                "web-placeholders",
                f"the edition's public web page would carry the recipient placeholder(s) {', '.join(left)}; mark the "
                'element that holds it class="personal" in the template (the web page leaves those out)',
            )
        )
    else:
        results.append(_pass("web-placeholders", "the web archive's page carries no recipient placeholder"))
    return results


def run_checks(build_folder: Path, settings: Settings, *, spamassassin: bool | None = None) -> list[CheckResult]:
    """All offline checks over the build in `build_folder`. `spamassassin`: None or True runs it when
    installed (a "skip" result otherwise), False skips it."""
    return check_build(read_build(build_folder), settings, spamassassin=spamassassin)


def check_build(build: Build, settings: Settings, *, spamassassin: bool | None = None) -> list[CheckResult]:
    """All offline checks over a build, run on the sample list message (what a subscriber gets)."""
    eml = sample_list_message(build, settings)
    html, text, wire = _parts(eml)
    results = [_check_tokens(build)]
    results += check_message(eml, settings, list_send=True)
    results += check_html(html, settings, preheader=build.preheader, edition=build.edition, wire_bytes=wire)
    results += check_text(text, settings, edition=build.edition)
    results += _check_web(build, settings)
    if spamassassin is False:
        results.append(CheckResult("spamassassin", "skip", "skipped on request (--no-spamassassin)"))
    else:
        results.append(check_spamassassin(eml))
    return results
