"""Links: UTM tagging of the content URLs an edition points to.

Tagging belongs at render time, where each link is built from an item: the renderer asks `utm_for`
once per edition and calls the result with (item.url, item.id), so campaign = edition id and
content = item id. Unsubscribe, view-in-browser and mailto links are never passed in, and anything
that is not an absolute http(s) URL (mailto:, tel:, #anchors, %%placeholders%%) is returned as is,
so a stray call cannot break them either.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from urllib.parse import parse_qsl, quote, urlsplit

from .config import Settings

UTM_KEYS = ("utm_source", "utm_medium", "utm_campaign", "utm_content")
_HREF = re.compile(r'(\bhref\s*=\s*)(["\'])(.*?)\2', re.IGNORECASE | re.DOTALL)


def is_taggable(url: str) -> bool:
    """Only absolute http(s) URLs without placeholder tokens get UTM parameters."""
    if not url or "%%" in url:
        return False
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return False  # e.g. an unbalanced "[" in the host: leave the author's URL alone
    return parts.scheme.lower() in {"http", "https"} and bool(parts.netloc)


def tag_url(url: str, *, source: str, medium: str, campaign: str, content: str = "") -> str:
    """`url` with utm_source/medium/campaign/content appended.

    Existing query parameters and the fragment are kept byte for byte; a utm_* the URL already has
    (any case) is never overridden, because an author who set one meant it; empty values are left out.
    """
    if not is_taggable(url):
        return url
    base, hash_mark, fragment = url.partition("#")
    path, _, query = base.partition("?")
    present = {key.lower() for key, _ in parse_qsl(query, keep_blank_values=True)}
    wanted = zip(UTM_KEYS, (source, medium, campaign, content), strict=True)
    added = "&".join(f"{key}={quote(value, safe='-._~')}" for key, value in wanted if value and key not in present)
    if not added:
        return url
    joiner = "&" if query and not query.endswith("&") else ""
    return f"{path}?{query}{joiner}{added}{hash_mark}{fragment}"


def utm_for(settings: Settings, edition: str) -> Callable[[str, str], str]:
    """(url, item_id) -> tagged url for one edition; the identity when settings.utm is off."""
    if not settings.utm:
        return lambda url, item_id: url

    def tag(url: str, item_id: str) -> str:
        return tag_url(url, source=settings.utm_source, medium=settings.utm_medium, campaign=edition, content=item_id)

    return tag


def tag_html(fragment: str, tag: Callable[[str], str]) -> str:
    """Apply `tag` to every quoted href in an HTML fragment (an item's sanitised summary).

    The href is unescaped before tagging and escaped again after, so `&amp;` in an existing query
    stays correct; untaggable hrefs come back unchanged because `tag_url` leaves them alone.
    """

    def one(match: re.Match[str]) -> str:
        prefix, quote_char, value = match.groups()
        url = html.unescape(value)
        tagged = tag(url)
        if tagged == url:
            return match.group(0)
        return f"{prefix}{quote_char}{html.escape(tagged, quote=True)}{quote_char}"

    return _HREF.sub(one, fragment)


def retag_medium(url: str, *, source: str, medium: str, new_medium: str) -> str:
    """`url` with the utm_medium that `utm_for` gave it (source and medium ours) changed to `new_medium`.

    The web archive's copy of an edition counts its clicks as `utm_medium=web`; every other byte of the
    URL, an author's own utm_* included, stays as it was.
    """
    if not is_taggable(url) or "?" not in url:
        return url
    base, hash_mark, fragment = url.partition("#")
    path, _, query = base.partition("?")
    pairs = query.split("&")
    ours = f"utm_source={quote(source, safe='-._~')}" in pairs and f"utm_medium={quote(medium, safe='-._~')}" in pairs
    if not ours:
        return url
    old, new = f"utm_medium={quote(medium, safe='-._~')}", f"utm_medium={quote(new_medium, safe='-._~')}"
    return f"{path}?{'&'.join(new if pair == old else pair for pair in pairs)}{hash_mark}{fragment}"
