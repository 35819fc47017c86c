"""Test kit: the Event Webhook side of the SendGrid emulator: events for accepted requests, signed as SendGrid signs.

For every recipient of every request the emulator accepted (also those whose answer it dropped) it makes
`processed`, then `delivered`, or a hard `bounce` for a scriptable share, and a `spamreport` for another
share of the delivered. Each event carries the request's custom_args as top-level keys, SendGrid's way.
A `Signer` holds a real ECDSA P-256 key: posts are signed over `timestamp + body` (the body compact JSON
with sorted keys and a trailing CRLF, as observed from SendGrid), and its public key is the base64 text
SendGrid shows as the verification key.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
MAX_POST_BYTES = 768 * 1024  # SendGrid posts a batch at this size (or after ~30 s)
BOUNCE_REASON = "550 5.1.1 The email account that you tried to reach does not exist"


class Signer:
    """An ECDSA P-256 key pair standing in for the one SendGrid keeps for a signed webhook."""

    def __init__(self) -> None:
        from cryptography.hazmat.primitives.asymmetric import ec

        self._key = ec.generate_private_key(ec.SECP256R1())

    @property
    def public_key(self) -> str:
        """The verification key as SendGrid shows it: base64 of the DER SubjectPublicKeyInfo, no PEM armour."""
        from cryptography.hazmat.primitives import serialization

        der = self._key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return base64.b64encode(der).decode("ascii")

    def sign(self, body: bytes, timestamp: str) -> str:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec

        return base64.b64encode(self._key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))).decode()

    def headers(self, body: bytes, timestamp: str | None = None) -> dict[str, str]:
        """The two signature headers for `body` (timestamp: now)."""
        ts = timestamp or str(int(time.time()))
        return {SIGNATURE_HEADER: self.sign(body, ts), TIMESTAMP_HEADER: ts}


def _event_id(*parts: object) -> str:
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()[:16]
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def request_events(
    body: Mapping[str, Any],
    message_id: str,
    accepted_at: float,
    rng: random.Random,
    *,
    bounce_rate: float = 0.0,
    spam_rate: float = 0.0,
) -> list[dict[str, Any]]:
    """The events SendGrid would post about one accepted mail/send request."""
    out: list[dict[str, Any]] = []
    message_args = body.get("custom_args") or {}
    categories = body.get("categories")
    for number, p in enumerate(body.get("personalizations") or []):
        args = {**message_args, **(p.get("custom_args") or {})}
        for kind in ("to", "cc", "bcc"):
            for address in p.get(kind) or ():
                base: dict[str, Any] = {
                    **args,  # custom_args are top-level keys; SendGrid's own fields win
                    "email": str(address["email"]),
                    "sg_message_id": f"{message_id}.recvd-emu-{number}",
                    "smtp-id": f"<{message_id}@emulator>",
                }
                if categories:
                    base["category"] = list(categories)
                fates: list[tuple[str, int, dict[str, Any]]] = [("processed", 0, {})]
                if rng.random() < bounce_rate:
                    fates.append(("bounce", 2, _HARD_BOUNCE))
                else:
                    fates.append(("delivered", 1, {"response": "250 2.0.0 OK", "tls": 1}))
                    if rng.random() < spam_rate:
                        fates.append(("spamreport", 60, {}))
                for event, delay, extra in fates:
                    sg_event_id = _event_id(base["sg_message_id"], base["email"], event)
                    out.append(
                        {
                            **base,
                            **extra,
                            "event": event,
                            "timestamp": int(accepted_at) + delay,
                            "sg_event_id": sg_event_id,
                        }
                    )
    return out


_HARD_BOUNCE: dict[str, Any] = {
    "type": "bounce",
    "reason": BOUNCE_REASON,
    "status": "5.1.1",
    "bounce_classification": "Invalid Address",
}


def batches(events: Sequence[Mapping[str, Any]], max_bytes: int = MAX_POST_BYTES) -> Iterable[bytes]:
    """Post bodies as SendGrid makes them: compact sorted JSON arrays with a trailing CRLF, each <= max_bytes."""
    chunk: list[str] = []
    size = 2
    for event in events:
        text = json.dumps(event, separators=(",", ":"), sort_keys=True)
        if chunk and size + len(text) + 1 > max_bytes:
            yield ("[" + ",".join(chunk) + "]\r\n").encode()
            chunk, size = [], 2
        chunk.append(text)
        size += len(text) + 1
    if chunk:
        yield ("[" + ",".join(chunk) + "]\r\n").encode()


def post(url: str, events: Sequence[Mapping[str, Any]], signer: Signer, *, timeout: float = 30.0) -> list[int]:
    """POST the events to a webhook URL, signed, in SendGrid-sized batches; the HTTP status of each post."""
    statuses: list[int] = []
    for body in batches(events):
        request = urllib.request.Request(
            url,
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", "User-Agent": "SendGrid Event API", **signer.headers(body)},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as answer:
                statuses.append(answer.status)
        except urllib.error.HTTPError as exc:
            statuses.append(exc.code)
    return statuses


def write(path: Path, events: Sequence[Mapping[str, Any]], *, lines: bool = False) -> None:
    """The events as a file for `digest reconcile --events`: the JSON array, or one event per line."""
    if lines:
        text = "".join(json.dumps(e, separators=(",", ":"), sort_keys=True) + "\n" for e in events)
    else:
        text = json.dumps(list(events), separators=(",", ":"), sort_keys=True) + "\n"
    path.write_text(text, encoding="utf-8")
