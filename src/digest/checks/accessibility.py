"""Accessibility checks of the HTML part: language, tables, alt text, links, title, zoom, dark mode, fonts, contrast."""

from __future__ import annotations

import re

from lxml.etree import _Element

from ..appearance import (
    TextRun,
    accessible_name,
    contrast_ratio,
    describe,
    light_dark,
    root_declares_light_dark,
    style_dict,
)
from .outcome import CheckResult, fail, listed, ok, squash

FONT_FLOOR_PX = 12.0  # house rule: nothing visible smaller (row 23)
FONT_BODY_PX = 14.0  # house rule: body text at least this; smaller visible text is reported as a warning
CONTRAST_TEXT = 4.5  # WCAG 1.4.3 (row 20)
CONTRAST_LARGE = 3.0  # WCAG large text: >= 24px, or >= 18.66px bold

GENERIC_LINK_TEXT = re.compile(r"(click here|click|here|read more|more|learn more|more information|link|this link)")


def check_accessibility(root: _Element, body: _Element | None, texts: list[TextRun]) -> list[CheckResult]:
    results: list[CheckResult] = []

    missing = [a for a in ("lang", "dir") if not (root.get(a) or "").strip()]
    results.append(
        fail("html-lang-dir", f"<html> has no {' or '.join(missing)}; set it in the template's <mjml lang dir>")
        if missing
        else ok("html-lang-dir", f'<html lang="{root.get("lang")}" dir="{root.get("dir")}">')
    )

    children = [c for c in body if isinstance(c.tag, str)] if body is not None else []
    bare = [describe(c) for c in children if not (c.get("lang") and c.get("dir"))]
    results.append(
        fail(
            "body-lang-dir",
            f"{len(bare)} of {len(children)} children of <body> lack lang or dir: {listed(bare)}; "
            "add lang and dir to each (the preheader div too)",
            len(bare),
        )
        if bare
        else ok("body-lang-dir", f"all {len(children)} children of <body> carry lang and dir", 0)
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
        fail(
            "table-roles",
            f'{len(roleless)} of {len(tables)} layout tables lack role="presentation": '
            f"{listed([describe(t) for t in roleless])}",
            len(roleless),
        )
        if roleless
        else ok("table-roles", f'{len(tables)} tables: layout tables have role="presentation"', 0)
    )

    images = list(root.iter("img"))
    no_alt = [img.get("src", "?")[:60] for img in images if img.get("alt") is None]
    results.append(
        fail(
            "img-alt",
            f'{len(no_alt)} of {len(images)} images have no alt: {listed(no_alt)}; add alt ("" if decorative)',
            len(no_alt),
        )
        if no_alt
        else ok("img-alt", f"all {len(images)} images have alt", 0)
    )

    links = [a for a in root.iter("a") if a.get("href") is not None]
    names = [(a, accessible_name(a)) for a in links]
    empty = [a.get("href", "")[:60] for a, name in names if not name]
    results.append(
        fail("link-text", f"{len(empty)} links have no text, alt, aria-label or title: {listed(empty)}", len(empty))
        if empty
        else ok("link-text", f"all {len(links)} links have discernible text", 0)
    )
    generic = [name for _, name in names if name and GENERIC_LINK_TEXT.fullmatch(squash(re.sub(r"[^\w\s]", " ", name)))]
    results.append(
        fail(
            "link-text-generic",
            f"{len(generic)} links say only {listed(sorted(set(repr(g) for g in generic)))}; name the target "
            '(e.g. "Read more about <title>") or add an aria-label',
            len(generic),
        )
        if generic
        else ok("link-text-generic", "no link says only 'click here', 'here' or 'read more'", 0)
    )

    ids = {e.get("id") for e in root.iter() if isinstance(e.tag, str) and e.get("id")}
    ids |= {a.get("name") for a in root.iter("a") if a.get("name")}
    dead = [
        href
        for a in links
        if (href := (a.get("href") or "").strip()) in {"", "#"} or (href.startswith("#") and href[1:] not in ids)
    ]
    results.append(
        fail(
            "dead-links",
            f"{len(dead)} links go nowhere: {listed(dead)}; point them at a URL or an existing id",
            len(dead),
        )
        if dead
        else ok("dead-links", "no empty or dangling #links", 0)
    )

    title = root.find("head/title")
    title_text = re.sub(r"\s+", " ", title.text_content()).strip() if title is not None else ""
    results.append(
        ok("title", f"<title> {title_text[:60]!r}")
        if title_text
        else fail("title", "<title> is missing or empty; set <mj-title> in the template")
    )

    h1 = len(list(root.iter("h1")))
    results.append(
        ok("h1", "exactly one <h1>", h1)
        if h1 == 1
        else fail("h1", f"{h1} <h1> elements; the email needs exactly one (its title), the rest <h2>..", h1)
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
        return fail("viewport-zoom", f"the viewport blocks zoom ({', '.join(blocked)}); remove it from the template")
    return ok("viewport-zoom", "zoom is not blocked" if metas else "no viewport meta: zoom is not blocked")


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
        return fail("color-scheme", f"dark mode hints missing: {', '.join(missing)}; add them to the template head")
    return ok("color-scheme", "color-scheme metas and :root color-scheme present")


def _check_font_size(texts: list[TextRun]) -> CheckResult:
    sized = [(t.state.font_px, t) for t in texts if not t.state.hidden and t.state.font_px is not None]
    if not sized:
        return CheckResult("font-size", "skip", "no visible text with a font size in px")
    smallest = min(px for px, _ in sized if px is not None)
    tiny = [f"{px:g}px {describe(t.element)}" for px, t in sized if px is not None and px < FONT_FLOOR_PX]
    small = sorted({px for px, _ in sized if px is not None and FONT_FLOOR_PX <= px < FONT_BODY_PX})
    if tiny:
        return fail(
            "font-size",
            f"{len(tiny)} visible text(s) below {FONT_FLOOR_PX:g}px: {listed(tiny)}; raise them in the template",
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
    return ok("font-size", f"smallest visible text {smallest:g}px (body >= {FONT_BODY_PX:g}px)", smallest)


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
        return fail(
            "contrast", f"{len(low)} text run(s) with low contrast: {listed(low)}; darken the text", round(worst, 2)
        )
    return ok(
        "contrast",
        f"lowest contrast {worst:.2f}:1 over {measured} text runs (needs {CONTRAST_TEXT:g}:1)",
        round(worst, 2),
    )
