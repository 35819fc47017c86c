"""Footer checks: what every list message must carry, in both parts: an unsubscribe link and the postal address."""

from __future__ import annotations

import re

from lxml.etree import _Element

from ..appearance import accessible_name
from ..config import Settings
from .outcome import CheckResult, fail, ok, squash

_HTTPS_URL = re.compile(r"https://[^\s<>\"')\]]+")


def _unsubscribe_words(settings: Settings) -> re.Pattern[str]:
    """'unsubscribe', or the newsletter's own word for it ([words] unsubscribe), as readable text."""
    return re.compile(f"unsubscribe|{re.escape(settings.words.unsubscribe.strip())}", re.IGNORECASE)


def check_html_unsubscribe(root: _Element, settings: Settings) -> CheckResult:
    words = _unsubscribe_words(settings)
    links = [(a.get("href") or "", accessible_name(a)) for a in root.iter("a") if a.get("href") is not None]
    named = [(href, name) for href, name in links if words.search(name)]
    good = [href for href, _ in named if href.startswith("https://")]
    if good:
        return ok("html-unsubscribe", f"unsubscribe link -> {good[0][:70]}")
    if named:
        return fail(
            "html-unsubscribe", f"the unsubscribe link is not https ({named[0][0][:60]!r}); set base_url to https://"
        )
    return fail(
        "html-unsubscribe",
        f"no <a> with {settings.words.unsubscribe!r} in its text; add one to the footer (%%unsubscribe_url%%)",
    )


def check_postal(settings: Settings, text: str, name: str, part: str) -> CheckResult:
    if not settings.postal_address.strip():
        return fail(
            name, "postal_address is empty; CAN-SPAM wants a physical address: set postal_address in digest.toml"
        )
    if squash(settings.postal_address) in squash(text):
        return ok(name, f"postal address in the {part} part")
    return fail(
        name,
        f"the postal address {settings.postal_address[:50]!r} is not in the {part} part; CAN-SPAM wants it in every "
        "email: put it in the template footer",
    )


def check_text_unsubscribe(text: str, settings: Settings) -> CheckResult:
    """An https URL next to the word for unsubscribe in the text part (row 9)."""
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
    return (
        ok("text-unsubscribe", f"unsubscribe URL -> {found[:70]}")
        if found
        else fail(
            "text-unsubscribe",
            f"no https URL next to the word {settings.words.unsubscribe!r} in the text part; "
            "add %%unsubscribe_url:text%%",
        )
    )
