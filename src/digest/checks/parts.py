"""Part checks: the HTML part (size, placeholders, styles, preheader, accessibility, footer) and the text part."""

from __future__ import annotations

import re

import lxml.html
from lxml.etree import ParserError, _Element

from ..appearance import INVISIBLE, State, nested_at_rule, text_runs, visible_text
from ..config import Settings
from ..css import style_blocks, style_bytes
from ..personalize import fill, sample_values
from .accessibility import check_accessibility
from .footer import check_html_unsubscribe, check_postal, check_text_unsubscribe
from .outcome import PLACEHOLDER, CheckResult, fail, ok, squash

HTML_FAIL_BYTES = 102_000  # Gmail clips "at 102 KB"; 1000 or 1024 is unknown, so the smaller (row 1)
HTML_WARN_BYTES = 90_000  # room for what an ESP adds after us: click tracking, open pixel (row 1)
STYLE_BUDGET = 16_384  # Gmail drops <style> past this many bytes in total (row 2)


def _check_styles(html: str) -> list[CheckResult]:
    blocks = style_blocks(html)
    total = style_bytes(html)
    detail = f"{total:,} bytes in {len(blocks)} <style> block(s) (budget {STYLE_BUDGET:,})"
    size = ok("style-size", detail, total)
    if total > STYLE_BUDGET:
        size = fail("style-size", detail + "; Gmail drops the styles past the budget: trim the CSS", total)
    mixed = [n for n, b in enumerate(blocks, 1) if "@media" in b and nested_at_rule(b)]
    nesting = ok("style-nesting", "no <style> block mixes a nested at-rule with @media", len(mixed))
    if mixed:
        nesting = fail(
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
            fail("html-size", detail + "; Gmail clips the email and hides the footer: show fewer items", size)
        )
    elif size > HTML_WARN_BYTES:
        results.append(CheckResult("html-size", "warn", detail + "; little room left for click tracking", size))
    else:
        results.append(ok("html-size", detail, size))

    leftover = sorted(set(PLACEHOLDER.findall(html)))
    results.append(
        fail("html-placeholders", f"unknown placeholders left in the HTML: {', '.join(leftover)}", len(leftover))
        if leftover
        else ok("html-placeholders", "every placeholder is filled", 0)
    )
    results.extend(_check_styles(html))

    try:
        root = lxml.html.document_fromstring(html)
    except (ParserError, ValueError) as exc:
        results.append(fail("html-parse", f"the HTML cannot be parsed ({exc}); look at the template output"))
        return results
    body = root.find("body")
    texts = list(text_runs(body, State())) if body is not None else []
    results.extend(check_accessibility(root, body, texts))
    results.append(_check_preheader(body, preheader))
    results.append(check_html_unsubscribe(root, settings))
    results.append(check_postal(settings, visible_text(texts), "html-postal-address", "HTML"))
    return results


def _check_preheader(body: _Element | None, preheader: str | None) -> CheckResult:
    if body is None:
        return fail("preheader", "the HTML has no <body>")
    found = ""
    for run in text_runs(body, State()):
        if not run.state.hidden:
            break
        found = re.sub(r"\s+", " ", run.element.text_content().translate({ord(c): None for c in INVISIBLE})).strip()
        if found:
            break
    if not found:
        return fail("preheader", "no hidden preheader before the first visible text; add <mj-preview> to the template")
    if preheader and squash(preheader) not in squash(found):
        return fail("preheader", f"the hidden preheader {found[:60]!r} is not the build's preheader {preheader[:60]!r}")
    return ok("preheader", f"hidden preheader {found[:60]!r} ({len(found)} chars)", len(found))


def check_text(text: str, settings: Settings, *, edition: str = "") -> list[CheckResult]:
    """Checks of the plain-text part (row 9): unsubscribe URL and postal address; placeholders filled."""
    text = fill(text, sample_values(settings, edition)) if "%%" in text else text
    results: list[CheckResult] = []
    leftover = sorted(set(PLACEHOLDER.findall(text)))
    results.append(
        fail("text-placeholders", f"unknown placeholders left in the text part: {', '.join(leftover)}", len(leftover))
        if leftover
        else ok("text-placeholders", "every placeholder is filled", 0)
    )
    results.append(check_text_unsubscribe(text, settings))
    results.append(check_postal(settings, text, "text-postal-address", "text"))
    return results
