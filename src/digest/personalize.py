"""Placeholders in the rendered edition and the per-recipient values that fill them."""

from __future__ import annotations

import dataclasses
import re
from html import escape
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .config import Settings
    from .models import Build

FIELDS = ("name", "email", "unsubscribe_url", "view_url")


def html_token(field: str) -> str:
    return f"%%{field}%%"


def text_token(field: str) -> str:
    return f"%%{field}:text%%"


HTML_TOKENS = {f: html_token(f) for f in FIELDS}
TEXT_TOKENS = {f: text_token(f) for f in FIELDS}


_HTML_SPECIAL = re.compile(r"[&<>\"']")


def html_value(value: str) -> str:
    """`value` escaped for HTML (quotes too: values land in href attributes); most values have nothing
    to escape, so a search first spares escape's five replaces."""
    return escape(value, quote=True) if _HTML_SPECIAL.search(value) else value


# (field, HTML token, text token) for every field; tokens_used gives the subset a content has.
ALL_TOKENS = tuple((field, HTML_TOKENS[field], TEXT_TOKENS[field]) for field in FIELDS)


def substitutions(values: dict[str, str], tokens: tuple[tuple[str, str, str], ...] = ALL_TOKENS) -> dict[str, str]:
    """Token -> value for both parts: HTML-escaped for the HTML tokens, plain for the text ones.
    A field missing from `values` becomes empty, so no placeholder is ever left in a message.
    `tokens` (tokens_used of a content) limits the result to the placeholders that content has;
    an empty token is one the content does not use."""
    out: dict[str, str] = {}
    for field, html_token, text_token in tokens:
        value = values.get(field, "")
        if html_token:
            out[html_token] = html_value(value)
        if text_token:
            out[text_token] = value
    return out


def tokens_used(*, html: str, text: str) -> tuple[tuple[str, str, str], ...]:
    """(field, HTML token or "", text token or "") for each field whose placeholder occurs in the HTML or
    in the text: a backend that sends substitutions per recipient sends only these (SendGrid bills
    every byte of 100,000 personalizations in parsing time)."""
    used = []
    for field in FIELDS:
        html_token_, text_token_ = HTML_TOKENS[field], TEXT_TOKENS[field]
        in_html, in_text = html_token_ in html, text_token_ in text
        if in_html or in_text:
            used.append((field, html_token_ if in_html else "", text_token_ if in_text else ""))
    return tuple(used)


def with_shared_values(build: Build, values: dict[str, str]) -> Build:
    """The build with the placeholders whose value is the same for every recipient (the view-in-browser
    URL) filled in once, so no backend carries them per recipient."""
    html, text, subject = build.html, build.text, build.subject
    for field, value in values.items():
        html = html.replace(HTML_TOKENS[field], html_value(value))
        text = text.replace(TEXT_TOKENS[field], value)
        subject = subject.replace(TEXT_TOKENS[field], value)
    return dataclasses.replace(build, html=html, text=text, subject=subject)


def fill(template: str, values: dict[str, str]) -> str:
    """Fill every token of both kinds in a str (used for previews and the outbox)."""
    for token, value in substitutions(values).items():
        template = template.replace(token, value)
    return template


SAMPLE_NAME = "Alexandra Montgomery-Whitfield"
SAMPLE_EMAIL = "alexandra.montgomery-whitfield@communications.example-municipality.org"
_SAMPLE_SECRET = b"digest sample tokens only, never a real secret"


def view_url(settings: Settings, edition: str) -> str:
    """The edition's web copy ("view in browser"), the same for everyone."""
    from .errors import ConfigError

    try:
        return settings.view_url.format(base_url=settings.base_url.rstrip("/"), edition=edition)
    except (KeyError, IndexError, ValueError) as exc:
        where = settings.config_file or "settings"
        raise ConfigError(
            f"{where}: 'view_url' cannot be filled ({exc!r}); use only {{base_url}} and {{edition}}"
        ) from None


def sample_values(settings: Settings, edition: str) -> dict[str, str]:
    """The one sample recipient of previews, the sample .eml and the checks. As long as real values:
    the Gmail size budget is measured on these, not on the short tokens."""
    from .unsubscribe_links import format_unsubscribe_url

    token = _sample_token(settings.slug)
    return {
        "name": SAMPLE_NAME,
        "email": SAMPLE_EMAIL,
        "unsubscribe_url": format_unsubscribe_url(settings, token=token, email=SAMPLE_EMAIL),
        "view_url": view_url(settings, edition),
    }


def _sample_token(list_id: str) -> str:
    """The sample recipient's real token, kept in the cache folder: making one loads the cipher library,
    which a rebuild from the caches needs for nothing else. Keyed on the token code's own bytes."""
    import hashlib

    from . import unsubscribe_tokens
    from .cache import cache_dir, load_pickle, store_pickle

    base = cache_dir()
    if base is None:
        return unsubscribe_tokens.make_token(SAMPLE_EMAIL, list_id, _SAMPLE_SECRET)
    with open(unsubscribe_tokens.__file__, "rb") as source:
        shape = (source.read(), SAMPLE_EMAIL, list_id, _SAMPLE_SECRET)
    path = base / "sample-tokens" / f"{hashlib.sha256(repr(shape).encode()).hexdigest()[:32]}.pickle"
    cached = load_pickle(path)
    if isinstance(cached, str):
        return cached
    token = unsubscribe_tokens.make_token(SAMPLE_EMAIL, list_id, _SAMPLE_SECRET)
    store_pickle(path, token)
    return token
