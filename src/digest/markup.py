"""Markup: an item's Markdown -> HTML safe for an email (only a few tags and link schemes) and plain text."""

from __future__ import annotations

import html
import re
from collections.abc import Iterable

import nh3
from markdown_it import MarkdownIt
from markdown_it.token import Token

ALLOWED_TAGS = {"p", "a", "em", "strong", "b", "i", "ul", "ol", "li", "br", "code", "blockquote"}
URL_SCHEMES = {"http", "https", "mailto"}
_SCRIPT_OPEN = re.compile(r"<(script|style)\b", re.IGNORECASE)
_SCRIPT_CLOSE = re.compile(r"</(script|style)\s*>", re.IGNORECASE)


def absolute_url(url: str, base_url: str) -> str:
    """A site path ("/news/x") becomes a full link: an email has no page to resolve it against."""
    return base_url.rstrip("/") + url if base_url and url.startswith("/") and not url.startswith("//") else url


_markdown = MarkdownIt("commonmark", {"html": True})


def markdown_html(source: str, base_url: str = "") -> str:
    """Markdown -> HTML safe for an email: only ALLOWED_TAGS, http(s)/mailto links with rel, no scripts or handlers."""

    def absolute_links(tag: str, attribute: str, value: str) -> str | None:
        return absolute_url(value, base_url) if base_url and tag == "a" and attribute == "href" else value

    return nh3.clean(
        _markdown.render(source),
        tags=ALLOWED_TAGS,
        attributes={"a": {"href", "title"}},
        attribute_filter=absolute_links,
        url_schemes=URL_SCHEMES,
        link_rel="noopener noreferrer",
    ).strip()


def markdown_text(source: str, base_url: str = "") -> str:
    """Markdown -> plain text: no formatting, link text kept with its URL in parentheses, blank lines between blocks."""
    blocks: list[tuple[str, bool]] = []  # (text, is a list item), so list items stay on consecutive lines
    prefixes: list[str] = []
    numbers: list[int] = []
    for token in _markdown.parse(source):
        if token.type == "bullet_list_open":
            numbers.append(0)
        elif token.type == "ordered_list_open":
            numbers.append(int(token.attrGet("start") or 1) - 1)
        elif token.type in ("bullet_list_close", "ordered_list_close"):
            numbers.pop()
        elif token.type == "list_item_open":
            if token.markup in (".", ")"):
                numbers[-1] += 1
                prefixes.append(f"{numbers[-1]}. ")
            else:
                prefixes.append("- ")
        elif token.type == "list_item_close":
            prefixes.pop()
        elif token.type == "blockquote_open":
            prefixes.append("> ")
        elif token.type == "blockquote_close":
            prefixes.pop()
        elif token.type in ("inline", "code_block", "fence", "html_block"):
            if token.type == "inline":
                text = _inline_text(token.children or [], base_url)
            elif token.type == "html_block":
                text = _html_text(token.content)
            else:
                text = token.content.rstrip("\n")
            if text.strip():
                blocks.append(("".join(prefixes) + text.strip(), bool(numbers)))
    out = ""
    for index, (text, in_list) in enumerate(blocks):
        if index:
            out += "\n" if in_list and blocks[index - 1][1] else "\n\n"
        out += text
    return out


def _inline_text(children: Iterable[Token], base_url: str) -> str:
    parts: list[str] = []
    links: list[tuple[str, int]] = []  # (href, index in parts where the link text starts)
    skipping = False  # inside an inline <script> or <style>, whose text is not prose
    for child in children:
        if skipping:
            skipping = not (child.type == "html_inline" and _SCRIPT_CLOSE.search(child.content))
        elif child.type in ("text", "code_inline"):
            parts.append(child.content)
        elif child.type == "softbreak":
            parts.append(" ")
        elif child.type == "hardbreak":
            parts.append("\n")
        elif child.type == "image":
            parts.append(child.content)
        elif child.type == "html_inline":
            skipping = bool(_SCRIPT_OPEN.match(child.content)) and not _SCRIPT_CLOSE.search(child.content)
        elif child.type == "link_open":
            links.append((absolute_url(str(child.attrGet("href") or ""), base_url), len(parts)))
        elif child.type == "link_close" and links:
            href, start = links.pop()
            label = "".join(parts[start:]).strip()
            scheme = href.split(":", 1)[0].lower()
            if href and scheme in URL_SCHEMES and href not in (label, f"mailto:{label}"):
                parts.append(f" ({href})")
    return "".join(parts)


def _html_text(fragment: str) -> str:
    # nh3 with no allowed tags keeps only text and drops script/style contents entirely.
    return html.unescape(nh3.clean(fragment, tags=set()))
