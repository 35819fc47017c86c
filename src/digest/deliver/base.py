"""The one small interface every backend implements, and what a batch send returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from ..models import Build, Recipient


@dataclass(slots=True)
class Personal:
    """A recipient with the values filled into the placeholders of the build (not frozen: one is made per
    recipient of a send, and a frozen dataclass's __init__ costs twice as much)."""

    recipient: Recipient
    values: dict[str, str]  # name, email, unsubscribe_url (plain, unescaped); a missing field is left empty
    headers: dict[str, str] = field(default_factory=dict)  # List-Unsubscribe, List-Unsubscribe-Post


@dataclass
class BatchResult:
    """Outcome of one batch. Every recipient of the batch is in exactly one list."""

    sent: list[str] = field(default_factory=list)  # emails
    failed: list[tuple[str, str]] = field(default_factory=list)  # (email, reason)
    provider_id: str = ""  # SendGrid X-Message-Id, SMTP queue id or the Maildir file name
    # (email, reason): one message of a multi-message batch whose fate cannot be told (SMTP connection
    # lost after the message's final dot, before the server's answer). The rest of the batch stays exact.
    unknown: list[tuple[str, str]] = field(default_factory=list)


class Backend(Protocol):
    name: str
    batch_size: int  # recipients per send_batch call
    concurrency: int  # send_batch calls the send loop may have out at once, each on its own thread

    def open(self) -> None: ...

    def send_batch(self, build: Build, batch: list[Personal], batch_id: str, test: bool = False) -> BatchResult:
        """Deliver one batch. Raise DeliveryError to stop the run (nothing in this batch was sent),
        BatchOutcomeUnknown (errors.py) when it cannot tell. `test` marks a --to test send (subject "[TEST] ...")."""
        ...

    def close(self) -> None: ...
