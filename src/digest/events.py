"""Events: SendGrid's Event Webhook objects read into `Event`s, and what each kind of event means for digest.

The same parser reads a webhook post (a JSON array) and `digest reconcile --events FILE` (that array, or
one JSON object per line). Matching uses the custom_args every digest request carries, `edition` and
`batch` (they arrive as top-level keys of each event), plus the address. Unknown event types and fields
are kept in the raw text and otherwise ignored, as SendGrid asks of receivers.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .addresses import normalize_email
from .errors import EventsError

# Evidence that SendGrid accepted a recipient's message: an unknown batch's recipient was sent.
ACCEPTED = frozenset({"processed", "delivered", "deferred", "open", "click"})
# Evidence that a recipient's message will never arrive: failed, with the event's reason.
REFUSED = frozenset({"dropped", "bounce"})
# Events after which nobody should be mailed again (a block, type "blocked", is not one: it is temporary).
SUPPRESSING = frozenset({"bounce", "spamreport", "unsubscribe", "group_unsubscribe"})
# SendGrid emits one of these for every message it accepted: a batch with neither was never accepted.
REPORTED = frozenset({"processed", "dropped"})


@dataclass(frozen=True)
class Event:
    """One webhook event, with the fields digest uses; `raw` is the object as it arrived (compact JSON)."""

    event: str
    email: str  # case-folded
    sg_event_id: str
    sg_message_id: str
    edition: str
    batch: str
    timestamp: int
    reason: str  # dropped/bounce reason, or the bounce type for a block
    bounce_type: str  # "bounce" (hard) or "blocked"; "" for other events
    raw: str

    @property
    def suppresses(self) -> bool:
        """Whether this event puts the address on the suppression list."""
        if self.event == "bounce":
            return self.bounce_type in ("", "bounce")
        return self.event in SUPPRESSING

    @property
    def dedupe_key(self) -> str:
        """The same happening told twice with two sg_event_ids: same event, address and message id (or,
        without a message id, the same edition, batch and second)."""
        where = self.sg_message_id or f"{self.edition}\x1f{self.batch}\x1f{self.timestamp}"
        return f"{self.event}\x1f{self.email}\x1f{where}"

    @property
    def suppression_reason(self) -> str:
        return suppression_reason(self.event, self.reason)


def suppression_reason(event: str, reason: str = "") -> str:
    """The reason stored with the suppression an event causes: "bounce: 550 5.1.1 ...", "spam complaint", ..."""
    if event == "bounce":
        return f"bounce: {reason}" if reason else "bounce"
    return {"spamreport": COMPLAINT, "group_unsubscribe": "group unsubscribe"}.get(event, event)


COMPLAINT = "spam complaint"  # the one suppression reason whose removal asks for confirmation


def _text(value: object) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def _event(obj: object, where: str) -> Event:
    if not isinstance(obj, dict):
        raise EventsError(f"{where}: an event must be a JSON object (got {type(obj).__name__})")
    kind = obj.get("event")
    email = obj.get("email")
    if not isinstance(kind, str) or not kind:
        raise EventsError(f"{where}: the event has no 'event' field; is this a SendGrid Event Webhook export?")
    if not isinstance(email, str) or "@" not in email:
        raise EventsError(f"{where}: the {kind!r} event has no valid 'email' field")
    try:
        timestamp = int(obj.get("timestamp") or 0)  # an integer in practice, typed String in the reference
    except (TypeError, ValueError):
        timestamp = 0
    reason = _text(obj.get("reason")) or (_text(obj.get("response")) if kind == "deferred" else "")
    return Event(
        event=kind,
        email=normalize_email(email),
        sg_event_id=_text(obj.get("sg_event_id")),
        sg_message_id=_text(obj.get("sg_message_id")),
        edition=_text(obj.get("edition")),
        batch=_text(obj.get("batch")),
        timestamp=timestamp,
        reason=reason,
        bounce_type=_text(obj.get("type")) if kind == "bounce" else "",
        raw=json.dumps(obj, separators=(",", ":"), ensure_ascii=False, sort_keys=True),
    )


def parse_events(data: bytes | str, source: str = "the request body") -> list[Event]:
    """Events from a webhook body or an export: a JSON array, or one JSON object per line.

    Raises EventsError naming `source` (and the line, for one-per-line files) and what is wrong."""
    text = data.decode("utf-8-sig") if isinstance(data, bytes) else data.removeprefix("\ufeff")
    stripped = text.strip()
    if not stripped:
        return []
    if stripped.startswith("["):
        try:
            value = json.loads(text)  # the whole text, so the line numbers are the file's
        except json.JSONDecodeError as exc:
            raise EventsError(
                f"{source}:{exc.lineno}: not a JSON array of events ({exc.msg} at column {exc.colno}); "
                "give the body SendGrid posts"
            ) from None
        return [_event(obj, f"{source}: event {n}") for n, obj in enumerate(value, 1)]
    return list(_lines(text, source))


def _lines(text: str, source: str) -> Iterator[Event]:
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as exc:
            raise EventsError(
                f"{source}:{number}: not a JSON object ({exc}); give one event per line, or the JSON array"
            ) from None
        yield _event(obj, f"{source}:{number}")


def read_events_file(path: Path) -> list[Event]:
    """`parse_events` of a file, with read errors turned into EventsError naming it."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise EventsError(f"{path}: cannot read the events file ({exc.strerror}); check the path") from None
    try:
        return parse_events(data, str(path))
    except UnicodeDecodeError:
        raise EventsError(f"{path}: not UTF-8 text; export the events as JSON") from None
