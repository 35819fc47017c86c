"""Appearance: how an HTML email looks to its reader, for the checks (checks/).

Styles as declared (tinycss2), colours in any CSS syntax, contrast (WCAG), what is hidden, and the runs
of text each element holds with the font size, colours and weight that apply to them there.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Literal

import tinycss2
import tinycss2.color4
from lxml.etree import _Element

INVISIBLE = "\u00ad\u034f\u200b\u200c\u200d\u2060\ufeff"  # preheader padding: not visible text
_SKIP_TAGS = frozenset({"head", "script", "style", "title", "template", "noscript"})
_BLOCK_TAGS = frozenset({"br", "p", "div", "td", "th", "tr", "li", "h1", "h2", "h3", "h4", "h5", "h6", "table"})


def _declarations(css: str | list[tinycss2.ast.Node]) -> list[tinycss2.ast.Declaration]:
    nodes = tinycss2.parse_blocks_contents(css, skip_comments=True, skip_whitespace=True)
    return [node for node in nodes if node.type == "declaration"]


@functools.lru_cache(maxsize=1024)  # an email repeats the same few style attributes on hundreds of elements
def style_dict(value: str) -> Mapping[str, str]:
    """A style attribute as {property: value}, both lower-case, without !important."""
    return {d.lower_name: tinycss2.serialize(d.value).strip().lower() for d in _declarations(value)}


def _is_hidden(element: _Element, style: Mapping[str, str]) -> bool:
    """Hidden, with everything inside, the ways email templates hide things (the preheader above all).

    font-size:0 is not among them: MJML puts it on every column wrapper to kill inline-block gaps,
    and the children set their own size again; text sitting directly in a 0px element is skipped
    where the runs are measured instead.
    """
    if element.get("hidden") is not None:
        return True
    if style.get("display") == "none" or style.get("mso-hide") == "all" or style.get("visibility") == "hidden":
        return True
    if style.get("opacity") in {"0", "0.0"}:
        return True
    collapsed = re.fullmatch(r"0(px|em|rem|%)?", style.get("max-height", "x"))
    return bool(collapsed and style.get("overflow") == "hidden")


def _px(value: str, inherited: float | None) -> float | None:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(px|pt|em|rem|%)?", value.strip())
    if not match:
        return inherited
    number, unit = float(match.group(1)), match.group(2) or "px"
    if unit == "px":
        return number
    if unit == "pt":
        return number * 4 / 3
    if unit == "rem":
        return number * 16
    return None if inherited is None else inherited * (number if unit == "em" else number / 100)


Color = tuple[int, int, int]
_LINK_BLUE: Color = (0, 0, 238)  # what clients show for a link with no colour of its own


def _channel(value: float) -> int:
    # NaN stands for the `none` keyword, which CSS computes as 0; out-of-gamut values are clipped.
    return 0 if value != value else round(min(max(value, 0.0), 1.0) * 255)


@functools.lru_cache(maxsize=1024)
def read_color(value: str) -> Color | None | Literal["transparent"]:
    """The first colour in a CSS value; None when it cannot be told (gradients, images, alpha < 1)."""
    for token in tinycss2.parse_component_value_list(value, skip_comments=True):
        if token.type == "ident" and token.lower_value == "transparent":
            return "transparent"
        if token.type not in {"hash", "ident", "function"}:
            continue
        parsed = tinycss2.color4.parse_color(token)
        if parsed is None:
            continue
        if isinstance(parsed, str) or parsed.alpha < 1:
            return None  # currentcolor, or a colour that lets the background through
        red, green, blue = parsed.to("srgb").coordinates
        return (_channel(red), _channel(green), _channel(blue))
    return None


def _luminance(rgb: Color) -> float:
    def channel(c: int) -> float:
        s = c / 255
        return s / 12.92 if s <= 0.03928 else ((s + 0.055) / 1.055) ** 2.4

    r, g, b = rgb
    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)


def contrast_ratio(a: Color, b: Color) -> float:
    la, lb = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


@dataclass(frozen=True)
class State:
    hidden: bool = False
    font_px: float | None = None
    color: Color | None = (0, 0, 0)
    background: Color | None = (255, 255, 255)
    bold: bool = False


@dataclass(frozen=True)
class TextRun:
    """A run of text an element holds directly, with what applies to it there."""

    element: _Element
    text: str
    state: State


def _own_text(element: _Element) -> str:
    parts = [element.text or ""] + [child.tail or "" for child in element]
    return "".join(parts)


def text_runs(element: _Element, state: State) -> Iterator[TextRun]:
    tag = element.tag if isinstance(element.tag, str) else ""
    if not tag or tag.lower() in _SKIP_TAGS:
        return
    style = style_dict(element.get("style", ""))
    hidden = state.hidden or _is_hidden(element, style)
    font = _px(style["font-size"], state.font_px) if "font-size" in style else state.font_px
    color = state.color
    if "color" in style:
        parsed = read_color(style["color"])
        color = parsed if parsed != "transparent" else color
    elif tag == "a" and element.get("href") is not None:
        color = _LINK_BLUE  # a link without its own colour shows in the client's blue, not the parent's
    background = state.background
    raw_bg = style.get("background-color") or style.get("background") or element.get("bgcolor") or ""
    if raw_bg:
        parsed_bg = read_color(raw_bg)
        if parsed_bg != "transparent":
            background = parsed_bg  # None: an image or gradient, contrast unknown from here down
    if "url(" in style.get("background", "") + style.get("background-image", "") or element.get("background"):
        background = None
    weight = style.get("font-weight", "")
    bold = (
        state.bold
        or tag in {"b", "strong", "h1", "h2", "h3"}
        or weight == "bold"
        or (weight.isdigit() and int(weight) >= 700)
    )
    here = State(hidden, font, color, background, bold)
    text = _own_text(element)
    if text.translate({ord(c): None for c in INVISIBLE}).strip():
        # Text directly in a 0px element is invisible, though its children may show again.
        yield TextRun(element, text, dataclasses.replace(here, hidden=True) if font == 0 else here)
    for child in element:
        yield from text_runs(child, here)


def describe(element: _Element) -> str:
    text = re.sub(r"\s+", " ", element.text_content()).strip()
    return f"<{element.tag}> {text[:40]!r}" if text else f"<{element.tag}>"


def accessible_name(link: _Element) -> str:
    label = (link.get("aria-label") or "").strip()
    if label:
        return label
    parts = [link.text or ""]
    for child in link.iterdescendants():
        if child.tag == "img":
            parts.append(child.get("alt") or "")
        elif isinstance(child.tag, str):
            parts.append(child.text or "")
        parts.append(child.tail or "")
    name = re.sub(r"\s+", " ", " ".join(parts).translate({ord(c): None for c in INVISIBLE})).strip()
    return name or (link.get("title") or "").strip()


def visible_text(texts: list[TextRun]) -> str:
    """The visible text of the document, with a break wherever a block or <br> would put one."""
    out: list[str] = []
    for run in texts:
        if run.state.hidden:
            continue
        element = run.element
        out.append(element.text or "")
        for child in element:
            out.append(" " if child.tag in _BLOCK_TAGS else "")
            out.append(child.tail or "")
        out.append(" ")
    return "".join(out)


def nested_at_rule(css: str) -> bool:
    """True when an at-rule sits inside another one (`@goodbye { @gmail }`, `@media { @supports }`)."""
    return _nests(tinycss2.parse_stylesheet(css, skip_comments=True, skip_whitespace=True), in_at_rule=False)


def _nests(rules: list[tinycss2.ast.Node], *, in_at_rule: bool) -> bool:
    for rule in rules:
        if rule.type == "at-rule":
            if in_at_rule:
                return True
            inner = tinycss2.parse_rule_list(rule.content or [], skip_comments=True, skip_whitespace=True)
            if _nests(inner, in_at_rule=True):
                return True
        elif rule.type == "qualified-rule" and in_at_rule:
            inner = tinycss2.parse_blocks_contents(rule.content, skip_comments=True, skip_whitespace=True)
            if _nests(inner, in_at_rule=True):
                return True
    return False


def light_dark(value: str) -> bool:
    return {"light", "dark"} <= set(value.lower().split())


def root_declares_light_dark(css: str) -> bool:
    """A :root rule of the stylesheet, at any depth, declares color-scheme with both light and dark."""
    return _root_light_dark(tinycss2.parse_stylesheet(css, skip_comments=True, skip_whitespace=True))


def _root_light_dark(rules: list[tinycss2.ast.Node]) -> bool:
    for rule in rules:
        if rule.type == "at-rule" and rule.content is not None:
            inner = tinycss2.parse_rule_list(rule.content, skip_comments=True, skip_whitespace=True)
            if _root_light_dark(inner):
                return True
        elif rule.type == "qualified-rule" and ":root" in tinycss2.serialize(rule.prelude).lower():
            declared = {d.lower_name: tinycss2.serialize(d.value) for d in _declarations(rule.content)}
            if light_dark(declared.get("color-scheme", "")):
                return True
    return False
