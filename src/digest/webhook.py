"""Webhook: `POST /webhooks/sendgrid`, SendGrid's signed Event Webhook, stored in the ledger and applied.

SendGrid signs `timestamp + raw body` with ECDSA P-256; the verification key (the base64 public key its
Security panel shows) comes from DIGEST_SENDGRID_WEBHOOK_KEY. A post that does not verify gets 403 and
changes nothing. Old timestamps are accepted on purpose: SendGrid retries a failed post for 24 hours and
does not document whether a retry is signed anew, and a replay is harmless because storing is idempotent.
Events are stored (fsynced) before they are applied and before the answer; if applying fails the post
gets 503 and SendGrid posts it again, while what was stored is applied by the next post, reconcile or send.
"""

from __future__ import annotations

import binascii
import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import DigestError, EventsError, WebhookKeyError

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIEnvironment

log = logging.getLogger(__name__)

KEY_VAR = "DIGEST_SENDGRID_WEBHOOK_KEY"
PATH = "/webhooks/sendgrid"
SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
MAX_BODY = 32 * 1024 * 1024  # SendGrid posts at most ~768 KB; a bigger body is not SendGrid
_KEY_START = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE"  # DER header of every P-256 public key, in base64


def load_key(value: str) -> Any:
    """The verification key from SendGrid's base64 text (the Security panel's "Verification Key")."""
    text = "".join(value.split())
    if text.startswith("-----BEGIN"):
        text = "".join(line for line in value.strip().splitlines() if not line.startswith("-----"))
    from sendgrid.helpers.eventwebhook import EventWebhook

    try:
        return EventWebhook().convert_public_key_to_ecdsa(text)
    except (ValueError, TypeError, binascii.Error):
        raise WebhookKeyError(
            f"environment: {KEY_VAR} is not a SendGrid verification key; copy the base64 key from SendGrid's "
            f"Settings > Mail Settings > Event Webhook > Signature Verification (it starts with {_KEY_START[:12]}...)"
        ) from None


def key_from_env(env: Mapping[str, str] = os.environ) -> Any | None:
    """The verification key from DIGEST_SENDGRID_WEBHOOK_KEY; None when unset (the endpoint then answers 404)."""
    value = env.get(KEY_VAR, "").strip()
    return load_key(value) if value else None


def verify(body: bytes, signature: str | None, timestamp: str | None, key: Any) -> bool:
    """Whether SendGrid signed exactly these bytes with this timestamp (never raises)."""
    if not signature or not timestamp:
        return False
    from sendgrid.helpers.eventwebhook import EventWebhook

    try:
        # The helper signs text; the body must decode as UTF-8 to be SendGrid's at all.
        return bool(EventWebhook().verify_signature(body.decode("utf-8"), signature, timestamp, key))
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        return False


def receive(ledger_path: Path, body: bytes) -> dict[str, int]:
    """Parse, store durably, then apply a body of events; returns the counts (see ledger.events.Applied)."""
    from .events import parse_events
    from .ledger import Ledger
    from .ledger.events import ingest

    events = parse_events(body)
    with Ledger.open(ledger_path) as ledger:
        return ingest(ledger, events).to_dict()


def handle(environ: WSGIEnvironment, start_response: StartResponse, *, key: Any, ledger_path: Path) -> Iterable[bytes]:
    """The WSGI answer to one request on PATH."""
    import json

    method = str(environ.get("REQUEST_METHOD", "GET")).upper()
    if method != "POST":
        return _answer(start_response, "405 Method Not Allowed", b"POST only\n", [("Allow", "POST")])
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = -1
    if length < 0 or length > MAX_BODY:
        return _answer(start_response, "413 Content Too Large", b"body too large\n")
    body: bytes = environ["wsgi.input"].read(length) if length else b""
    signature = environ.get(_wsgi(SIGNATURE_HEADER))
    timestamp = environ.get(_wsgi(TIMESTAMP_HEADER))
    if not verify(body, signature, timestamp, key):
        log.warning("webhook: refused a post whose signature does not verify (%d bytes)", len(body))
        return _answer(start_response, "403 Forbidden", b"signature does not verify\n")
    try:
        counts = receive(ledger_path, body)
    except EventsError as exc:  # signed by SendGrid, yet not events: a retry cannot fix it
        log.error("webhook: %s", exc)
        return _answer(start_response, "400 Bad Request", f"{exc}\n".encode())
    except DigestError as exc:  # the ledger is busy or unwritable: SendGrid retries later
        log.error("webhook: %s", exc)
        return _answer(start_response, "503 Service Unavailable", b"try again later\n", [("Retry-After", "60")])
    log.info("webhook: %s", ", ".join(f"{k} {v}" for k, v in counts.items()))
    return _answer(start_response, "200 OK", json.dumps(counts).encode() + b"\n", ctype="application/json")


def _wsgi(header: str) -> str:
    """A request header's key in the WSGI environ."""
    return "HTTP_" + header.upper().replace("-", "_")


def _answer(
    start_response: StartResponse,
    status: str,
    body: bytes,
    extra: list[tuple[str, str]] | None = None,
    ctype: str = "text/plain; charset=utf-8",
) -> list[bytes]:
    start_response(status, [("Content-Type", ctype), ("Content-Length", str(len(body))), *(extra or [])])
    return [body]
