"""Settle: before a send, evidence decides the unknown outcomes it can, so no person has to.

- SendGrid: the stored Event Webhook events (ledger.events.settle_by_events).
- Outbox: the Maildir itself; a message file in new/ or cur/ was written whole (tmp/ then rename), so the
  recipient is sent if theirs is there and pending (never written) if not.
- SMTP: nothing. After the final dot only the relay knows whether it took the message; those stay
  unknown until a person decides (--mark-unknown-sent / --resend-unknown).
"""

from __future__ import annotations

import email.parser
import email.policy
from email.utils import getaddresses
from pathlib import Path

from .ledger import Ledger
from .ledger.events import Settled, settle_by_events, settle_by_presence

_HEADERS = email.parser.BytesHeaderParser(policy=email.policy.compat32)


def settle_unknown(ledger: Ledger, edition: str, *, wait_hours: float, maildir: Path | None) -> Settled:
    """Apply every kind of evidence to the edition's unknown recipients; returns what changed."""
    settled = settle_by_events(ledger, edition, wait_hours=wait_hours)
    if maildir is not None and _has_unknown(ledger, edition, "outbox"):
        settled.add(settle_by_presence(ledger, edition, "outbox", addressees(maildir)))
    return settled


def _has_unknown(ledger: Ledger, edition: str, backend: str) -> bool:
    return any(b.backend == backend for b in ledger.unknown_batches(edition))


def addressees(maildir: Path) -> frozenset[str]:
    """The case-folded To: addresses of every complete message in a Maildir (new/ and cur/)."""
    found: set[str] = set()
    for sub in ("new", "cur"):
        folder = maildir / sub
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            try:
                head = _head(path)
            except OSError:
                continue
            to = _HEADERS.parsebytes(head).get_all("To") or []
            found.update(addr.strip().casefold() for _, addr in getaddresses([str(v) for v in to]) if addr)
    return frozenset(found)


def _head(path: Path) -> bytes:
    """A message file's header block: its lines up to the first empty one."""
    lines: list[bytes] = []
    with path.open("rb") as fh:
        for line in fh:
            if line in (b"\n", b"\r\n"):
                break
            lines.append(line)
    return b"".join(lines)
