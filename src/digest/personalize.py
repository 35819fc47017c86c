"""Placeholders in the rendered edition and the per-recipient values that fill them."""

from __future__ import annotations

from html import escape

FIELDS = ("name", "email", "unsubscribe_url", "view_url")


def html_token(field: str) -> str:
    return f"%%{field}%%"


def text_token(field: str) -> str:
    return f"%%{field}:text%%"


HTML_TOKENS = {f: html_token(f) for f in FIELDS}
TEXT_TOKENS = {f: text_token(f) for f in FIELDS}


def substitutions(values: dict[str, str]) -> dict[str, str]:
    """Token -> value for both parts: HTML-escaped for the HTML tokens, plain for the text ones."""
    out: dict[str, str] = {}
    for field in FIELDS:
        value = values.get(field, "")
        out[HTML_TOKENS[field]] = escape(value, quote=True)
        out[TEXT_TOKENS[field]] = value
    return out


def fill(template: str, values: dict[str, str]) -> str:
    """Fill every token of both kinds in a str (used for previews and the outbox)."""
    for token, value in substitutions(values).items():
        template = template.replace(token, value)
    return template
