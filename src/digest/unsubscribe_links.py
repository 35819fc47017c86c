"""The unsubscribe link every message carries: the recipient's URL and the RFC 2369 / RFC 8058 List-Unsubscribe
headers, checked once per send and filled per recipient."""

from __future__ import annotations

import ipaddress
from urllib.parse import parse_qs, quote, urlsplit

from .addresses import normalize_email
from .config import Settings
from .errors import ConfigError
from .unsubscribe_tokens import TokenMaker, check_address, make_token

ONE_CLICK = "List-Unsubscribe=One-Click"


def unsubscribe_url(settings: Settings, email: str, secret: bytes, *, list_id: str | None = None) -> str:
    """The recipient's unsubscribe URL from the settings template ({base_url}, {token}, optional {email})."""
    token = make_token(email, list_id or settings.slug, secret)
    return format_unsubscribe_url(settings, token=token, email=normalize_email(email))


def format_unsubscribe_url(settings: Settings, *, token: str, email: str = "") -> str:
    """Fill settings.unsubscribe_url; a wrong template is a config error naming the key."""
    try:
        return settings.unsubscribe_url.format(
            base_url=settings.base_url.rstrip("/"), token=token, email=quote(email, safe="@")
        )
    except (KeyError, IndexError, ValueError) as exc:
        where = settings.config_file or "settings"
        raise ConfigError(
            f"{where}: 'unsubscribe_url' cannot be filled ({exc!r}); use only {{base_url}}, {{token}} and {{email}}, "
            'e.g. "{base_url}/unsubscribe?token={token}"'
        ) from None


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def require_https(url: str, *, allow_loopback: bool = True) -> str:
    """Check the one-click URL: RFC 8058 demands https. http is accepted only for a loopback host
    (127.0.0.1, ::1, localhost) when `allow_loopback`, so a local test server can be used; such a URL
    reaches nobody, and `digest check` (row 4) still fails it before any list send."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return url
    if allow_loopback and parts.scheme == "http" and parts.hostname and _is_loopback(parts.hostname):
        return url
    raise ConfigError(
        f"settings: the unsubscribe URL {parts.scheme or '(no scheme)'}://{parts.hostname or ''}... is not https; "
        "RFC 8058 one-click needs an https URL: set base_url (or unsubscribe_url) in digest.toml to https://..."
    )


def mailto_uri(mailto: str) -> str:
    """`unsubscribe@x.org` or `mailto:unsubscribe@x.org` -> `mailto:unsubscribe@x.org?subject=unsubscribe`."""
    address = mailto.strip()
    if not address:
        return ""
    if not address.lower().startswith("mailto:"):
        address = "mailto:" + address
    if "@" not in address or any(c in address for c in "<>, \r\n"):
        raise ConfigError(
            f"settings: 'unsubscribe_mailto' {mailto!r} is not an email address; fix it or leave it empty"
        )
    return address if "?" in address else address + "?subject=unsubscribe"


def list_unsubscribe_headers(url: str, mailto: str = "", *, allow_loopback: bool = True) -> dict[str, str]:
    """RFC 2369 + RFC 8058 headers: exactly one https URI (first, the one-click target) and an optional mailto."""
    require_https(url, allow_loopback=allow_loopback)
    if any(c in url for c in "<> \r\n"):
        raise ConfigError("settings: the unsubscribe URL contains '<', '>' or a space; fix 'unsubscribe_url'")
    uris = [f"<{url}>"]
    if mailto:
        uris.append(f"<{mailto_uri(mailto)}>")
    return {"List-Unsubscribe": ", ".join(uris), "List-Unsubscribe-Post": ONE_CLICK}


def recipient_unsubscribe(settings: Settings, email: str, secret: bytes) -> tuple[str, dict[str, str]]:
    """Everything delivery needs for one recipient: the URL for the body and the two headers."""
    url = unsubscribe_url(settings, email, secret)
    return url, list_unsubscribe_headers(url, settings.unsubscribe_mailto)


class Unsubscriber:
    """`recipient_unsubscribe` for a whole send: the same URL and headers, with the per-run work done once.

    At 100,000 recipients the per-recipient cost matters (issue 4). What does not depend on the
    recipient is done here, once: the URL template is checked (https, no '<', '>' or spaces) and gets
    its base_url filled in, the mailto URI is built, and the cipher is keyed. Per recipient only the
    token is encrypted (one AES-SIV call) and put into the URL. Checking one probe URL stands for
    all of them: a token is base64url, an {email} is percent-quoted, so neither can add a scheme, a
    '<' or a space, and a template with a placeholder where the scheme goes fails the probe.
    """

    def __init__(self, settings: Settings, secret: bytes, *, list_id: str | None = None):
        list_name = list_id or settings.slug
        self._token = TokenMaker(list_name, secret)  # the same refusals as make_token, once
        probe = format_unsubscribe_url(settings, token="TOKEN", email="probe@example.org")
        self._tail = list_unsubscribe_headers(probe, settings.unsubscribe_mailto)["List-Unsubscribe"][len(probe) + 2 :]
        self._settings = settings
        self._template = _positional_template(settings)

    def __call__(self, email: str) -> tuple[str, dict[str, str]]:
        address = check_address(email)
        token = self._token(address)
        if self._template is None:
            url = format_unsubscribe_url(self._settings, token=token, email=address)
        else:
            template, with_email = self._template
            url = template.format(token, quote(address, safe="@") if with_email else "")
        return url, {"List-Unsubscribe": f"<{url}>{self._tail}", "List-Unsubscribe-Post": ONE_CLICK}


def _positional_template(settings: Settings) -> tuple[str, bool] | None:
    """settings.unsubscribe_url with {base_url} filled in and {token}, {email} turned into {0}, {1}
    (literal braces stay doubled), and whether it uses {email}; None for a template with a format spec
    or conversion, which str.format then fills per recipient. Only called after format_unsubscribe_url
    accepted the template, so every field is one of the three."""
    import string

    def escaped(text: str) -> str:
        return text.replace("{", "{{").replace("}", "}}")

    out: list[str] = []
    with_email = False
    for literal, field, spec, conversion in string.Formatter().parse(settings.unsubscribe_url):
        out.append(escaped(literal))
        if field is None:
            continue
        if spec or conversion:
            return None
        if field == "base_url":
            out.append(escaped(settings.base_url.rstrip("/")))
        else:
            with_email = with_email or field == "email"
            out.append("{0}" if field == "token" else "{1}")
    return "".join(out), with_email


def unsubscribe_path(settings: Settings) -> str:
    """The path of the unsubscribe URL ("/unsubscribe" by default), checking the token rides in `?token=`."""
    probe = format_unsubscribe_url(settings, token="TOKEN", email="probe@example.org")
    parts = urlsplit(probe)
    if parse_qs(parts.query).get("token") != ["TOKEN"]:
        where = settings.config_file or "settings"
        raise ConfigError(
            f"{where}: 'unsubscribe_url' must carry the token as a query parameter for the built-in server, "
            'e.g. "{base_url}/unsubscribe?token={token}"'
        )
    return parts.path or "/"
