"""Placeholders in the rendered edition and the per-recipient values that fill them."""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .config import Settings

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


def sample_values(settings: Settings, edition: str = "") -> dict[str, str]:
    """The one sample recipient of previews, the sample .eml and the checks. As long as real values:
    the Gmail size budget is measured on these, not on the short tokens."""
    from .unsubscribe import format_unsubscribe_url, make_token

    token = make_token(SAMPLE_EMAIL, settings.slug, _SAMPLE_SECRET)
    return {
        "name": SAMPLE_NAME,
        "email": SAMPLE_EMAIL,
        "unsubscribe_url": format_unsubscribe_url(settings, token=token, email=SAMPLE_EMAIL),
        "view_url": view_url(settings, edition or f"{settings.slug}-2020-01"),
    }
