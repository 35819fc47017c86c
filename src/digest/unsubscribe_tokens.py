"""Unsubscribe tokens and the secrets that make and verify them.

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
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import os
import re
from collections.abc import Mapping
from typing import Any, Literal, overload

from .addresses import normalize_email
from .errors import BadToken, ConfigError

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


_NOT_IN_ADDRESS = re.compile(r"[\n\r\x00]")


def check_address(email: str) -> str:
    address = normalize_email(email)
    if "@" not in address or _NOT_IN_ADDRESS.search(address):
        raise ValueError(f"cannot make an unsubscribe token for {email!r}: not an email address")
    return address


class TokenMaker:
    """make_token for one list and secret, the per-list work done once: a send makes one token per recipient."""

    def __init__(self, list_id: str, secret: bytes) -> None:
        if not list_id or "\n" in list_id or "\x00" in list_id:
            raise ValueError(f"cannot make an unsubscribe token for list {list_id!r}")
        if not secret:
            raise ValueError("cannot make an unsubscribe token with an empty secret")
        self._list = b"\n" + list_id.encode("utf-8")
        self._encrypt = _cipher(secret).encrypt

    def __call__(self, address: str) -> str:
        """The token of an address that check_address returned."""
        payload = address.encode("utf-8") + self._list
        return _b64(self._encrypt(payload + b"\x00" * (-len(payload) % _PAD), _V2_AD))


def make_token(email: str, list_id: str, secret: bytes) -> str:
    """An opaque, unforgeable token naming `email` on list `list_id`."""
    return TokenMaker(list_id, secret)(check_address(email))


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
