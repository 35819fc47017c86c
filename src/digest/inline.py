"""Inline: CSS into style attributes with premailer, keeping what email clients need.

Clients without <style> support (Gmail for non-Google accounts, some webmails) see only inline styles,
so the head's rules are copied onto the elements. Everything else stays as MJML wrote it:
- the <style> blocks themselves (keep_style_tags), verbatim, so the responsive and dark-mode
  @media rules keep their `!important` (premailer rewrites only the blocks it re-serialises, and
  with keep_style_tags it re-serialises none);
- Outlook conditional comments (lxml keeps comments as they are);
- the `<!doctype html>`, which premailer drops (peterbe/premailer#156), is put back.
Nothing is fetched: remote stylesheets and @import are removed first, because cssutils resolves
@import even with allow_network=False, and an email must not depend on a web font anyway.
"""

from __future__ import annotations

import logging
import re
import sys
import types

from lxml import etree

from .css import STYLE_BLOCK


class _NoNetwork(types.ModuleType):
    """Stands in for a network module premailer or cssutils imports but digest never lets them use: any use fails."""

    def __getattr__(self, name: str) -> object:
        raise RuntimeError(f"premailer tried {self.__name__}.{name}: digest renders without network access")


def _no_fetch(url: str) -> None:
    raise RuntimeError(f"cssutils tried to fetch {url}: digest renders without network access")


def _import_premailer() -> None:
    if "premailer.premailer" in sys.modules:
        return
    stand_ins: dict[str, types.ModuleType] = {}
    if "requests" not in sys.modules:
        stand_ins["requests"] = _NoNetwork("requests")
    if "cssutils" not in sys.modules:
        # Every @import is removed before premailer runs, so cssutils' fetcher is never needed: this one fails.
        fetch = types.ModuleType("cssutils._fetch")
        setattr(fetch, "_defaultFetcher", _no_fetch)  # noqa: B010
        stand_ins["cssutils._fetch"] = fetch
        if "urllib.request" not in sys.modules:
            # cssutils needs urllib.request only to read stylesheets from files or URLs, which digest never asks.
            stand_ins["urllib.request"] = _NoNetwork("urllib.request")
    sys.modules.update(stand_ins)
    try:
        import premailer  # noqa: F401
    finally:
        for name in stand_ins:  # anyone else who imports them later gets the real modules
            del sys.modules[name]


_import_premailer()
import premailer  # noqa: E402
from premailer import merge_style  # noqa: E402

_validated_pairs = merge_style.csstext_to_pairs


def _pairs_unvalidated(csstext: str, validate: bool = True) -> list[tuple[str, str]]:
    """premailer's style-attribute parsing, without the cssutils validation it forces on: validation only
    logs, and is slow to set up (tests/test_render.py checks the output is identical)."""
    result: list[tuple[str, str]] = _validated_pairs(csstext, validate=False)
    return result


# The original body takes `csstext_to_pairs._lock` from its module: hand the same lock over.
setattr(_pairs_unvalidated, "_lock", getattr(_validated_pairs, "_lock"))  # noqa: B009, B010
merge_style.csstext_to_pairs = _pairs_unvalidated

DOCTYPE = "<!doctype html>"
_LINK_STYLESHEET = re.compile(r"<link\b[^>]*\brel\s*=\s*[\"']?stylesheet\b[^>]*>", re.IGNORECASE)
_IMPORT = re.compile(r"@import\s+(?:url\([^)]*\)|\"[^\"]*\"|'[^']*')[^;{}]*;?", re.IGNORECASE)
_LEADING_DOCTYPE = re.compile(r"^\s*<!doctype[^>]*>\s*", re.IGNORECASE)


def strip_remote_css(html: str) -> str:
    """Remove <link rel=stylesheet> and @import rules, and the <style> blocks left empty by that."""
    html = _LINK_STYLESHEET.sub("", html)

    def clean(match: re.Match[str]) -> str:
        opening, body, closing = match.groups()
        if "@import" not in body.lower():
            return match.group(0)
        body = _IMPORT.sub("", body)
        return "" if not body.strip() else f"{opening}{body}{closing}"

    return STYLE_BLOCK.sub(clean, html)


def _lang_on_body_children(root: etree._Element) -> None:
    """Give every element directly in <body> the document's lang and dir (EMC accessibility rules 1 and 2).

    The shipped template needs no help (all content sits in MJML's article wrapper, which has both);
    this covers a newsletter's own template that brings back mj-preview or adds raw blocks.
    """
    lang = root.get("lang")
    direction = root.get("dir")
    for body in root.iterchildren("body"):
        for child in body.iterchildren():
            if not isinstance(child.tag, str):
                continue  # comments, including Outlook's conditional ones
            if lang and not child.get("lang"):
                child.set("lang", lang)
            if direction and not child.get("dir"):
                child.set("dir", direction)


def _premailer() -> premailer.Premailer:
    return premailer.Premailer(
        allow_network=False,
        strip_important=False,
        keep_style_tags=True,
        remove_classes=False,  # the dark-mode and responsive rules select by class
        disable_validation=True,
        cssutils_logging_level=logging.CRITICAL,  # cssutils warns about every mso-* property
        cache_css_parsing=True,
    )


def inline_css(html: str) -> str:
    """Inline the document's CSS; return it with its doctype, <style> blocks and conditional comments kept."""
    source = _LEADING_DOCTYPE.sub("", strip_remote_css(html))
    root = etree.fromstring(source, etree.HTMLParser())
    if root is None:
        return html  # an empty document: nothing to inline
    _lang_on_body_children(root)
    tree = _premailer().transform(root)
    # Serialise the root element, not the tree: lxml would add its own upper-case DOCTYPE line.
    out = str(etree.tostring(tree.getroot(), method="html", encoding="unicode"))
    return DOCTYPE + out + "\n"  # a final newline, as MIME parts and text files end anyway
