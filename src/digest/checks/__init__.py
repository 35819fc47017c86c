"""Checks: the quality gates over a build (size, styles, MIME, headers, accessibility, SpamAssassin).

docs/CHECKS.md lists the checks with their thresholds ("row N" is the row of its table). They look at
what a list recipient gets: the build with every placeholder filled by realistic sample values, in the
message delivery would send, one-click headers included.

    outcome.py        `CheckResult` and the wording helpers every group uses
    parts.py          the HTML part (size, placeholders, styles, preheader) and the text part
    accessibility.py  language, table roles, alt text, link names, title, zoom, dark mode, font size, contrast
    footer.py         the unsubscribe link and the postal address, in both parts
    headers.py        the message as sent: MIME shape, charsets, line length, headers, one-click
    web.py            the edition's page in the web archive
    spam.py           SpamAssassin's score
"""

from __future__ import annotations

import email.policy
from pathlib import Path

from ..build import read_build
from ..config import Settings
from ..message import sample_message
from ..models import Build
from ..personalize import FIELDS, html_token, text_token
from .headers import check_message
from .outcome import PLACEHOLDER, CheckResult, fail, failed, ok
from .parts import check_html, check_text
from .spam import check_spamassassin, parse_spam_status
from .web import check_web

__all__ = [
    "CheckResult",
    "check_build",
    "check_html",
    "check_message",
    "check_spamassassin",
    "check_text",
    "failed",
    "parse_spam_status",
    "run_checks",
]

CHECKS_VERSION = 1  # raise when a check changes what it finds: recorded results (checked.py) are then stale


def _decoded_parts(eml: bytes) -> tuple[str, str, int]:
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
    unknown = sorted(set(PLACEHOLDER.findall(build.html + build.text)) - known)
    if missing or unknown:
        said = [f"missing {', '.join(missing)}"] if missing else []
        said += [f"unknown tokens {', '.join(unknown)}"] if unknown else []
        return fail("placeholders", f"{'; '.join(said)}; use the tokens of docs/ARCHITECTURE.md")
    return ok("placeholders", "the build carries the per-recipient unsubscribe token in both parts")


def run_checks(build_folder: Path, settings: Settings, *, spamassassin: bool | None = None) -> list[CheckResult]:
    """All offline checks over the build in `build_folder`. `spamassassin`: None or True runs it when
    installed (a "skip" result otherwise), False skips it."""
    return check_build(read_build(build_folder), settings, spamassassin=spamassassin)


def check_build(build: Build, settings: Settings, *, spamassassin: bool | None = None) -> list[CheckResult]:
    """All offline checks over a build, run on the sample list message (what a subscriber gets)."""
    eml = sample_message(build, settings, strict=True)
    html, text, wire = _decoded_parts(eml)
    results = [_check_tokens(build)]
    results += check_message(eml, settings, list_send=True)
    results += check_html(html, settings, preheader=build.preheader, edition=build.edition, wire_bytes=wire)
    results += check_text(text, settings, edition=build.edition)
    results += check_web(build, settings)
    if spamassassin is False:
        results.append(CheckResult("spamassassin", "skip", "skipped on request (--no-spamassassin)"))
    else:
        results.append(check_spamassassin(eml))
    return results
