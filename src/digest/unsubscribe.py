"""Unsubscribe: opaque tokens, the RFC 8058 one-click WSGI endpoint, and the suppression file it appends to.

A token names one recipient of one list, shows neither, and cannot be forged without DIGEST_UNSUBSCRIBE_SECRET:

    token = base64url(AES-SIV(key, padded payload, associated data "digest-unsubscribe v2"))
    key = HKDF-SHA256(secret, info "digest-unsubscribe v2 aes-siv"), 64 bytes (AES-256-SIV)
    payload = normalised email + b"\n" + list id (UTF-8), NUL-padded to a multiple of 16 bytes

AES-SIV is deterministic authenticated encryption: the same recipient always gets the same token (no nonce
to store or repeat), any changed character fails authentication, and the URL reveals only the payload's
length to 16 bytes. Tokens of the first format (v1: base64url(b"v1\n" + email + b"\n" + list id) "." a
16-byte HMAC-SHA256, which showed the address to anyone who saw the URL) are still accepted: links already
sent keep working. A token with a "." is v1, one without is v2.

Tokens carry no expiry on purpose: CAN-SPAM wants the opt-out to keep working for at least 30 days after
a send, and mail sits in inboxes for years. A token stays valid as long as the endpoint knows its secret.
To rotate, sign new sends with a new DIGEST_UNSUBSCRIBE_SECRET and give the endpoint the old one in
DIGEST_UNSUBSCRIBE_OLD_SECRETS: links already sent keep working (the endpoint logs each use of an old
secret, so you can tell when to drop it). Only a leaked secret should be dropped at once.

The endpoint (`make_app`) answers `POST <unsubscribe path>?token=...` at once with 200 and no redirect
(RFC 8058), and shows a one-button page for GET, so link scanners that prefetch URLs cannot
unsubscribe anyone. Every page is tiny, self-contained and reveals nothing about the token.
"""

from __future__ import annotations

import base64
import binascii
import fcntl
import functools
import hashlib
import hmac
import html
import ipaddress
import logging
import os
import re
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload
from urllib.parse import parse_qs, quote, urlencode, urlsplit

from .addresses import normalize_email
from .config import Settings, load_settings
from .errors import ConfigError, DigestError
from .webhook import PATH as WEBHOOK_PATH

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer
    from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

# The server side (wsgiref, the email parser, the suppression reader) is imported where it is used:
# every `digest build` imports this module for list_unsubscribe_headers, and those cost ~8 ms.

log = logging.getLogger(__name__)

SECRET_VAR = "DIGEST_UNSUBSCRIBE_SECRET"
OLD_SECRETS_VAR = "DIGEST_UNSUBSCRIBE_OLD_SECRETS"  # verified, never used to sign (rotation)
MAKE_SECRET = 'python -c "import secrets; print(secrets.token_urlsafe(32))"'
MIN_SECRET_BYTES = 16  # below 128 bits an offline guess of the key becomes thinkable
MAC_BYTES = 16  # v1's 128-bit tag: forging one by chance is out of reach, and the token stays short
_VERSION = b"v1"
# Domain separation: the same secret must never produce a valid MAC for another purpose.
_DOMAIN = b"digest-unsubscribe\x00"
_V2_INFO = b"digest-unsubscribe v2 aes-siv"  # HKDF info: the v2 key serves this purpose only
_V2_AD = [b"digest-unsubscribe v2"]
_PAD = 16
_B64 = re.compile(r"^[A-Za-z0-9_-]+$")
_MAX_TOKEN = 1024
_MAX_BODY = 64 * 1024  # a one-click body is 26 bytes; anything huge is not a mail client

ONE_CLICK = "List-Unsubscribe=One-Click"
SUPPRESSION_HEADER = "email"  # first line of a new file, so it is also a one-column CSV


class BadToken(DigestError):
    """An unsubscribe token is malformed, tampered with, or signed with another secret."""


# --- tokens -------------------------------------------------------------------------------------


_URLSAFE = bytes.maketrans(b"+/", b"-_")


def _b64(data: bytes) -> str:
    # base64.urlsafe_b64encode, minus two Python-level calls: this runs twice per recipient of a send.
    return binascii.b2a_base64(data, newline=False).translate(_URLSAFE).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    if not _B64.match(text):
        raise ValueError("not base64url")
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    # base64 has several spellings of the same bytes (the unused low bits of the last character);
    # insisting on the canonical one means any changed character is a different, rejected token.
    if _b64(data) != text:
        raise ValueError("not canonical base64url")
    return data


def _mac(payload: bytes, secret: bytes) -> bytes:
    return hmac.new(secret, _DOMAIN + payload, hashlib.sha256).digest()[:MAC_BYTES]


@functools.lru_cache(maxsize=16)
def _cipher(secret: bytes) -> Any:
    """The AES-SIV cipher keyed from `secret` (HKDF); cached, as the endpoint tries each secret per request."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.ciphers.aead import AESSIV
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return AESSIV(HKDF(algorithm=hashes.SHA256(), length=64, salt=None, info=_V2_INFO).derive(secret))


def _check_address(email: str) -> str:
    address = normalize_email(email)
    if not address or "@" not in address or any(c in address for c in "\n\r\x00"):
        raise ValueError(f"cannot make an unsubscribe token for {email!r}: not an email address")
    return address


def make_token(email: str, list_id: str, secret: bytes) -> str:
    """An opaque, unforgeable token naming `email` on list `list_id`."""
    address = _check_address(email)
    if not list_id or "\n" in list_id or "\x00" in list_id:
        raise ValueError(f"cannot make an unsubscribe token for list {list_id!r}")
    if not secret:
        raise ValueError("cannot make an unsubscribe token with an empty secret")
    payload = address.encode("utf-8") + b"\n" + list_id.encode("utf-8")
    return _b64(_cipher(secret).encrypt(payload + b"\x00" * (-len(payload) % _PAD), _V2_AD))


def verify_token(token: str, secret: bytes) -> tuple[str, str]:
    """Return (email, list_id) from a token made with `secret` (either format); raise BadToken on any change."""
    invalid = BadToken("this unsubscribe link is not valid; use the link from a recent email")
    if not token or len(token) > _MAX_TOKEN or not secret:
        raise invalid
    if "." in token:
        return _verify_v1(token, secret)
    from cryptography.exceptions import InvalidTag

    try:
        plain = _cipher(secret).decrypt(_unb64(token), _V2_AD)
    except (ValueError, binascii.Error, InvalidTag):
        raise invalid from None
    parts = plain.rstrip(b"\x00").split(b"\n")
    if len(parts) != 2:
        raise invalid  # made with our key but of a layout this version does not know
    try:
        return parts[0].decode("utf-8"), parts[1].decode("utf-8")
    except UnicodeDecodeError:
        raise invalid from None


def _verify_v1(token: str, secret: bytes) -> tuple[str, str]:
    """The first format (see the module docstring): accepted, never made."""
    invalid = BadToken("this unsubscribe link is not valid; use the link from a recent email")
    if token.count(".") != 1:
        raise invalid
    head, tail = token.split(".")
    try:
        payload, mac = _unb64(head), _unb64(tail)
    except (ValueError, binascii.Error):
        raise invalid from None
    if not hmac.compare_digest(mac, _mac(payload, secret)):
        raise invalid
    parts = payload.split(b"\n")
    if len(parts) != 3 or parts[0] != _VERSION:
        raise invalid  # signed by us but of a layout this version does not know
    try:
        return parts[1].decode("utf-8"), parts[2].decode("utf-8")
    except UnicodeDecodeError:
        raise invalid from None


@overload
def secret_from_env(env: Mapping[str, str] = ..., *, required: Literal[True]) -> bytes: ...


@overload
def secret_from_env(env: Mapping[str, str] = ..., *, required: bool) -> bytes | None: ...


def secret_from_env(env: Mapping[str, str] = os.environ, *, required: bool) -> bytes | None:
    """DIGEST_UNSUBSCRIBE_SECRET as bytes; None when unset and not `required` (previews, test sends)."""
    value = env.get(SECRET_VAR, "").strip()
    if not value:
        if required:
            raise ConfigError(
                f"environment: {SECRET_VAR} is not set; real list sends sign every unsubscribe link with it. "
                f"Make one with `{MAKE_SECRET}`, keep it safe and export it (the same value on the unsubscribe server)"
            )
        return None
    secret = value.encode("utf-8")
    if len(secret) < MIN_SECRET_BYTES:
        raise ConfigError(
            f"environment: {SECRET_VAR} is too short ({len(secret)} bytes, at least {MIN_SECRET_BYTES}); "
            f"make a new one with `{MAKE_SECRET}`"
        )
    return secret


def old_secrets_from_env(env: Mapping[str, str] = os.environ) -> tuple[bytes, ...]:
    """DIGEST_UNSUBSCRIBE_OLD_SECRETS: earlier secrets the endpoint still accepts, separated by commas or
    spaces (the values `secrets.token_urlsafe` makes contain neither); () when unset."""
    raw = env.get(OLD_SECRETS_VAR, "")
    secrets = [part.encode("utf-8") for part in re.split(r"[\s,]+", raw) if part]
    for position, secret in enumerate(secrets, 1):
        if len(secret) < MIN_SECRET_BYTES:
            raise ConfigError(
                f"environment: secret number {position} in {OLD_SECRETS_VAR} is too short ({len(secret)} bytes, "
                f"at least {MIN_SECRET_BYTES}); list the earlier values of {SECRET_VAR} there, separated by commas"
            )
    return tuple(secrets)


# --- URLs and headers ---------------------------------------------------------------------------


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
        make_token("probe@example.org", list_name, secret)  # the same refusals as make_token, once
        probe = format_unsubscribe_url(settings, token="TOKEN", email="probe@example.org")
        self._tail = list_unsubscribe_headers(probe, settings.unsubscribe_mailto)["List-Unsubscribe"][len(probe) + 2 :]
        self._list = b"\n" + list_name.encode("utf-8")
        self._encrypt = functools.partial(_cipher(secret).encrypt, associated_data=_V2_AD)
        self._settings = settings
        self._template = _positional_template(settings)

    def __call__(self, email: str) -> tuple[str, dict[str, str]]:
        address = _check_address(email)
        payload = address.encode("utf-8") + self._list
        token = _b64(self._encrypt(payload + b"\x00" * (-len(payload) % _PAD)))
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


# --- suppression file ---------------------------------------------------------------------------


def add_suppression(path: Path, email: str) -> bool:
    """Append `email` (case-folded) to the suppression file; False when it is already there.

    One O_APPEND write of one line under an exclusive flock: concurrent unsubscribes (threads or
    processes of a WSGI server) neither interleave nor duplicate. The file is read under the lock with
    recipients.load_suppressions, the reader sends use, so "already there" means what a send means by
    it; at a line per unsubscriber that read is cheap next to the rarity of unsubscribes.
    """
    address = normalize_email(email)
    if not address or "@" not in address or any(c in address for c in ',\r\n"'):
        raise ValueError(f"not an address to suppress: {email!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        from .recipients import load_suppressions

        if address in load_suppressions(path):
            return False
        size = os.fstat(fd).st_size
        last = os.pread(fd, 1, size - 1) if size else b""
        line = address + "\n"
        if not size:
            line = SUPPRESSION_HEADER + "\n" + line
        elif last != b"\n":
            line = "\n" + line  # someone edited the file by hand and left no final newline
        os.write(fd, line.encode("utf-8"))
        os.fsync(fd)  # the 200 we answer promises the unsubscribe is recorded
        return True
    finally:
        os.close(fd)  # also releases the lock


# --- WSGI app -----------------------------------------------------------------------------------

_PAGE = """<!doctype html>
<html lang="{lang}" dir="{dir}">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex"><title>{title}</title>
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem;color:#222}}
button{{font:inherit;padding:.6rem 1.2rem;border:0;border-radius:4px;background:#1d4f91;color:#fff}}</style>
</head>
<body>
<h1>{title}</h1>
{body}
</body>
</html>
"""

_SECURITY_HEADERS = [
    ("Cache-Control", "no-store"),
    # The token is in the URL: never let it leak to another site through the Referer header.
    ("Referrer-Policy", "no-referrer"),
    ("X-Content-Type-Options", "nosniff"),
    ("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'"),
]


def _page(settings: Settings, title: str, body: str) -> bytes:
    return _PAGE.format(
        lang=html.escape(settings.language, quote=True),
        dir=html.escape(settings.direction, quote=True),
        title=html.escape(title),
        body=body,
    ).encode("utf-8")


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


def make_app(
    settings: Settings,
    secret: bytes,
    suppression_path: Path,
    *,
    old_secrets: Sequence[bytes] = (),
    webhook_key: Any | None = None,
) -> WSGIApplication:
    """The one-click unsubscribe endpoint for one list (settings.slug), recording to `suppression_path`.

    Tokens signed with `secret` or with any of `old_secrets` (the secrets of earlier sends, after a
    rotation) are accepted. With `webhook_key` (webhook.key_from_env), the same application answers
    SendGrid's signed Event Webhook on /webhooks/sendgrid, into settings.ledger_path."""
    if len(secret) < MIN_SECRET_BYTES:
        raise ConfigError(f"environment: {SECRET_VAR} is too short; make one with `{MAKE_SECRET}`")
    if any(len(old) < MIN_SECRET_BYTES for old in old_secrets):
        raise ConfigError(f"environment: a secret in {OLD_SECRETS_VAR} is shorter than {MIN_SECRET_BYTES} bytes")
    keys = (secret, *old_secrets)  # keys[n] is old secret number n, as the log says
    paths = {unsubscribe_path(settings), "/unsubscribe"}
    name = html.escape(settings.name)

    def respond(
        start_response: StartResponse, status: str, body: bytes, method: str, extra: list[tuple[str, str]] | None = None
    ) -> list[bytes]:
        headers = [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(body)))]
        start_response(status, headers + _SECURITY_HEADERS + (extra or []))
        return [] if method == "HEAD" else [body]

    def invalid(start_response: StartResponse, method: str) -> list[bytes]:
        # One answer for every failure: a prober learns nothing about which part of a token was wrong.
        body = _page(settings, "This link is not valid", "<p>This unsubscribe link is not valid.</p>")
        return respond(start_response, "400 Bad Request", body, method)

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        method = str(environ.get("REQUEST_METHOD", "GET")).upper()
        path = str(environ.get("PATH_INFO", "")) or "/"
        if path == WEBHOOK_PATH and webhook_key is not None:
            from .webhook import handle

            return handle(environ, start_response, key=webhook_key, ledger_path=settings.path(settings.ledger_path))
        if path == "/healthz" and method in {"GET", "HEAD"}:
            start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", "3")])
            return [] if method == "HEAD" else [b"ok\n"]
        if path not in paths:
            body = _page(settings, "Not found", "<p>There is nothing here.</p>")
            return respond(start_response, "404 Not Found", body, method)
        if method not in {"GET", "HEAD", "POST"}:
            body = _page(settings, "Method not allowed", "<p>Use the link from your email.</p>")
            return respond(start_response, "405 Method Not Allowed", body, method, [("Allow", "GET, HEAD, POST")])
        query = parse_qs(str(environ.get("QUERY_STRING", "")))
        form = _read_form(environ) if method == "POST" else {}
        token = (query.get("token") or form.get("token") or [""])[0]
        try:
            address, list_id = _verify(token, keys)
        except BadToken:
            log.info("unsubscribe: rejected an invalid token (%s %s)", method, path)
            return invalid(start_response, method)
        if list_id != settings.slug:
            log.info("unsubscribe: rejected a token of another list (%s)", list_id)
            return invalid(start_response, method)
        if method in {"GET", "HEAD"}:
            # GET never unsubscribes: mail scanners and link previews fetch every URL in a message.
            # A query-only action posts back to this very URL, whatever prefix a proxy mounted us under.
            action = html.escape("?" + urlencode({"token": token}), quote=True)
            body = _page(
                settings,
                f"Unsubscribe from {settings.name}",
                f'<form method="post" action="{action}">'
                f'<input type="hidden" name="token" value="{html.escape(token, quote=True)}">'
                f'<input type="hidden" name="List-Unsubscribe" value="One-Click">'
                f"<p>Stop receiving {name} by email?</p>"
                f'<p><button type="submit">Unsubscribe</button></p></form>',
            )
            return respond(start_response, "200 OK", body, method)
        try:
            added = add_suppression(suppression_path, address)
        except (OSError, ValueError, DigestError):
            log.exception("unsubscribe: could not record an unsubscribe in %s", suppression_path)
            body = _page(settings, "Please try again", "<p>We could not record your request. Try again later.</p>")
            return respond(start_response, "503 Service Unavailable", body, method, [("Retry-After", "60")])
        log.info("unsubscribe: %s from %s (%s)", address, list_id, "added" if added else "already suppressed")
        body = _page(settings, "You are unsubscribed", f"<p>You will receive no more {name} emails.</p>")
        return respond(start_response, "200 OK", body, method)

    return app


def _verify(token: str, keys: Sequence[bytes]) -> tuple[str, str]:
    """verify_token with the current secret, then each old one (keys[1:]); BadToken if none signed it."""
    for number, key in enumerate(keys):
        try:
            found = verify_token(token, key)
        except BadToken:
            continue
        if number:
            log.info("unsubscribe: accepted a link signed with old secret number %d in %s", number, OLD_SECRETS_VAR)
        return found
    raise BadToken("this unsubscribe link is not valid; use the link from a recent email")


def _read_form(environ: WSGIEnvironment) -> dict[str, list[str]]:
    """Fields of a POST body, urlencoded or multipart (RFC 8058 allows both); {} for anything else."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length <= 0:
        return {}
    body: bytes = environ["wsgi.input"].read(min(length, _MAX_BODY))
    ctype = str(environ.get("CONTENT_TYPE", ""))
    kind = ctype.split(";", 1)[0].strip().lower()
    if kind == "application/x-www-form-urlencoded":
        return parse_qs(body.decode("latin-1"))
    if kind == "multipart/form-data":
        # The email parser reads MIME multipart bodies; the cgi module that used to do this is gone in 3.13.
        import email.parser
        import email.policy

        raw = b"Content-Type: " + ctype.encode("latin-1") + b"\r\n\r\n" + body
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(raw)
        fields: dict[str, list[str]] = {}
        if message.is_multipart():
            for part in message.iter_parts():
                field = part.get_param("name", header="content-disposition")
                payload = part.get_payload(decode=True)
                if isinstance(field, str) and isinstance(payload, bytes):
                    fields.setdefault(field, []).append(payload.decode("utf-8", errors="replace"))
        return fields
    return {}


def make_wsgi_server(app: WSGIApplication, host: str = "127.0.0.1", port: int = 8025) -> WSGIServer:
    """A wsgiref server for `app` that keeps tokens out of its request log (port 0 picks a free one)."""
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    class QuietHandler(WSGIRequestHandler):
        """wsgiref logs the full request line to stderr, token included; log method and path only."""

        def log_message(self, format: str, *args: object) -> None:
            return

        def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
            path = self.path.split("?", 1)[0]
            log.info("%s %s %s", self.command, path, code)

    return make_server(host, port, app, handler_class=QuietHandler)


def server_url(server: WSGIServer) -> str:
    raw_host, port = server.server_address[:2]
    host = raw_host.decode() if isinstance(raw_host, bytes) else str(raw_host)
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def serve(
    app: WSGIApplication,
    host: str = "127.0.0.1",
    port: int = 8025,
    *,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Run `app` on wsgiref until interrupted (Ctrl+C), for `digest unsubscribe-server`.
    `on_ready` gets the bound URL.

    wsgiref handles one request at a time, which is plenty for unsubscribes; behind a public https
    name, prefer a real WSGI server (see docs/CHECKS.md).
    """
    server = make_wsgi_server(app, host, port)
    # Requests are served on a worker thread: wsgiref's handler swallows any exception raised while
    # it handles a request (KeyboardInterrupt included), so Ctrl+C landing mid-request would be lost.
    # Signals always reach the main thread, which here only waits.
    worker = threading.Thread(target=server.serve_forever, name="unsubscribe-server", daemon=True)
    worker.start()
    try:
        if on_ready:
            on_ready(server_url(server))
        while worker.is_alive():
            worker.join(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
        worker.join()
        server.server_close()


def app_from_env(env: Mapping[str, str] | None = None) -> WSGIApplication:
    """The app for any WSGI server: settings from DIGEST_CONFIG (or ./digest.toml), the secret from
    DIGEST_UNSUBSCRIBE_SECRET (and earlier ones from DIGEST_UNSUBSCRIBE_OLD_SECRETS), suppressions into
    settings.suppression_file; with DIGEST_SENDGRID_WEBHOOK_KEY, also SendGrid's events on /webhooks/sendgrid.
    Example: gunicorn 'digest.unsubscribe:app_from_env()'"""
    from .webhook import key_from_env

    env = os.environ if env is None else env
    settings = load_settings(env=env)
    secret = secret_from_env(env, required=True)
    old = old_secrets_from_env(env)
    key = key_from_env(env)
    return make_app(settings, secret, settings.path(settings.suppression_file), old_secrets=old, webhook_key=key)
