"""Summaries: an imported entry's HTML -> a short, safe Markdown summary, and the entry's first real image.

nh3 removes everything an email must not carry (scripts, styles, frames, forms, event handlers,
javascript: links, images and so tracking pixels); markdownify writes what is left as Markdown; the
result is cut at a word boundary, since the digest links to the site and never copies whole articles.
"""

from __future__ import annotations

import re
from urllib.parse import urljoin

import nh3

_KEPT_TAGS = {"p", "a", "em", "strong", "b", "i", "ul", "ol", "li", "br", "code", "blockquote", "pre"}
# Removed with their contents, not just their tags: none of their text is prose.
_DROPPED_WITH_CONTENT = {
    "script", "style", "iframe", "form", "noscript", "template", "object", "embed", "svg", "math",
    "select", "textarea", "button", "figcaption", "audio", "video", "canvas", "head", "title",
}  # fmt: skip
_SCHEMES = {"http", "https", "mailto"}
# A Markdown link counts as the words of its text and is never cut inside.
_TOKEN = re.compile(r"\[[^\]\n]*\]\([^)\s]*(?:\s+\"[^\"]*\")?\)|\S+")
ELLIPSIS = "…"


def safe_html(fragment: str, base: str) -> str:
    """HTML with only text-level tags, http(s)/mailto links made absolute against `base`."""

    def absolute(tag: str, attribute: str, value: str) -> str | None:
        if tag == "a" and attribute == "href":
            return urljoin(base, value.strip()) if base else value
        return value

    return nh3.clean(
        fragment,
        tags=_KEPT_TAGS,
        clean_content_tags=_DROPPED_WITH_CONTENT,
        attributes={"a": {"href", "title"}},
        attribute_filter=absolute,
        url_schemes=_SCHEMES,
        link_rel=None,
    )


def summary(fragment: str, base: str, words: int) -> tuple[str, bool]:
    """The entry's HTML as Markdown of at most `words` words, and whether it was cut."""
    from markdownify import markdownify

    markdown = markdownify(safe_html(fragment, base), heading_style="ATX", bullets="-", strip=["pre"])
    markdown = re.sub(r"[ \t]+\n", "\n", markdown)
    markdown = re.sub(r"\n{3,}", "\n\n", markdown).strip()
    return cut(markdown, words)


def cut(markdown: str, words: int) -> tuple[str, bool]:
    """Cut Markdown after `words` words (links whole), ending in an ellipsis with its emphasis closed."""
    count = 0
    for match in _TOKEN.finditer(markdown):
        token = match.group()
        count += len(token[1 : token.index("](")].split()) if token.startswith("[") and "](" in token else 1
        if count >= words and match.end() < len(markdown) and markdown[match.end() :].strip():
            kept = markdown[: match.end()].rstrip(" ,;:–—-")
            return _close(kept) + ELLIPSIS, True
    return markdown, False


def _close(text: str) -> str:
    """Close the bold and italic markers a cut left open, so the rest of the email is not emphasised."""
    bold = text.count("**") % 2
    single = text.replace("**", "").count("*") % 2
    # Markers at the very end would close nothing: drop them instead.
    trimmed = text.rstrip("*_")
    if trimmed != text:
        return _close(trimmed)
    return text + ("*" if single else "") + ("**" if bold else "")


def first_image(fragment: str, base: str) -> tuple[str, str]:
    """The first https image of the HTML that is not a tracking pixel, with its alt text ("" if none)."""
    if "<img" not in fragment.lower():
        return "", ""
    import lxml.html

    try:
        root = lxml.html.fragment_fromstring(fragment, create_parent="div")
    except (ValueError, lxml.etree.ParserError):
        return "", ""
    for img in root.iter("img"):
        src = urljoin(base, (img.get("src") or "").strip())
        if not src.lower().startswith("https://"):
            continue
        sizes = [(img.get(name) or "").strip().removesuffix("px") for name in ("width", "height")]
        if any(size.isdigit() and int(size) <= 2 for size in sizes):
            continue  # a tracking pixel
        if "display:none" in (img.get("style") or "").replace(" ", "").lower():
            continue
        return src, " ".join((img.get("alt") or "").split())
    return "", ""
