"""CSS in an email's HTML: where its <style> blocks are (inline.py, build.py and checks/ read them)."""

from __future__ import annotations

import re

# Groups: the opening tag, the CSS, the closing tag (inline.py rewrites the CSS between the two tags).
STYLE_BLOCK = re.compile(r"(<style\b[^>]*>)(.*?)(</style\s*>)", re.IGNORECASE | re.DOTALL)


def style_blocks(html: str) -> list[str]:
    """The CSS inside each <style> block, in document order."""
    return [match.group(2) for match in STYLE_BLOCK.finditer(html)]


def style_bytes(html: str) -> int:
    """Bytes inside all <style> blocks (Gmail drops them all past 16,384)."""
    return sum(len(block.encode("utf-8")) for block in style_blocks(html))
