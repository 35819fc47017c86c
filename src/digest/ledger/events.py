"""Ledger evidence: provider events stored then applied, the suppression list, and settling unknowns.

Rules, each written once here:

- Events are stored before anything is applied (one fsynced commit), idempotently: a second copy with
  the same sg_event_id, or with the same event, address and message id under a new id, is not stored.
- Applying is order-free and may run any number of times: it only looks at what is stored. An unknown
  recipient with a `dropped`/`bounce` event for its batch becomes failed (failure evidence wins); with
  any of processed/delivered/deferred/open/click it becomes sent.
- At the start of a send (not while posts come in: one batch's events may come in a later post than
  another's), a SendGrid batch without a single event, while events of its edition kept arriving `wait`
  after it was handed over, was never accepted (SendGrid reports every message it accepts): its recipients go
  back to pending and are sent by the next run. A batch with events for some of its recipients was
  accepted whole: after the same wait, the rest of it counts as sent.
- Newly stored bounces (hard), spam reports and unsubscribes add the address to the suppression list.
- Every recipient settled by evidence is written to `settlements` (what `digest status` counts).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..addresses import normalize_email
from ..events import ACCEPTED, COMPLAINT, REFUSED, REPORTED, Event, suppression_reason
from .batches import ADDRESS, EMAIL_NORM, FAILED, NAMES, PENDING, SENT, UNKNOWN, edition_key
from .db import Conn

if TYPE_CHECKING:
    from .store import Ledger

_ACCEPTED = "(" + ",".join(f"'{e}'" for e in sorted(ACCEPTED)) + ")"
_REFUSED = "(" + ",".join(f"'{e}'" for e in sorted(REFUSED)) + ")"
_REPORTED = "(" + ",".join(f"'{e}'" for e in sorted(REPORTED)) + ")"


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _stamp(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Settled:
    """What applying evidence changed."""

    sent: int = 0  # unknown -> sent
    failed: int = 0  # unknown -> failed
    resend: int = 0  # unknown -> pending (never accepted)
    batches: list[str] = field(default_factory=list)  # batches left with no unknown recipient

    @property
    def total(self) -> int:
        return self.sent + self.failed + self.resend

    def add(self, other: Settled) -> None:
        self.sent += other.sent
        self.failed += other.failed
        self.resend += other.resend
        self.batches += other.batches


@dataclass
class Applied:
    """What storing and applying a post (or file) of events did; the webhook and `digest reconcile` report it."""

    received: int = 0
    stored: int = 0  # new; the rest were copies of events already stored
    ignored: int = 0  # of the new ones, for editions this ledger does not know
    suppressed: int = 0  # addresses newly on the suppression list
    settled: Settled = field(default_factory=Settled)

    @property
    def duplicates(self) -> int:
        return self.received - self.stored

    def to_dict(self) -> dict[str, int]:
        return {
            "received": self.received,
            "stored": self.stored,
            "duplicates": self.duplicates,
            "ignored": self.ignored,
            "suppressed": self.suppressed,
            "settled_sent": self.settled.sent,
            "settled_failed": self.settled.failed,
            "settled_resend": self.settled.resend,
        }


@dataclass(frozen=True)
class Suppression:
    email: str
    reason: str
    source: str  # event | user | file
    created_at: str

    def to_dict(self) -> dict[str, str]:
        return {"email": self.email, "reason": self.reason, "source": self.source, "created_at": self.created_at}


# --- storing and applying events -------------------------------------------------------------------


def store_events(ledger: Ledger, events: Sequence[Event]) -> int:
    """Store events durably (fsynced before it returns), skipping copies; returns how many were new."""
    if not events:
        return 0
    now = _now()
    with ledger._db.tx(durable=True) as conn:
        cur = conn.executemany(
            "INSERT INTO events (sg_event_id, dedupe_key, event, email_norm, edition, batch, reason, "
            "suppresses, timestamp, raw, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (
                (
                    e.sg_event_id,
                    e.dedupe_key,
                    e.event,
                    e.email,
                    e.edition,
                    e.batch,
                    e.reason,
                    int(e.suppresses),
                    e.timestamp,
                    e.raw,
                    now,
                )
                for e in events
            ),
        )
        return int(cur.rowcount)


def ingest(ledger: Ledger, events: Sequence[Event]) -> Applied:
    """Store `events` (durably, first), then apply everything stored; a failure to apply leaves them stored,
    to be applied by the next call (or send)."""
    stored = store_events(ledger, events)
    applied = apply_stored(ledger)
    applied.received, applied.stored = len(events), stored
    return applied


def apply_stored(ledger: Ledger) -> Applied:
    """Apply what is stored and not yet applied: suppressions, then settle every edition's unknown recipients
    that have events of their own."""
    applied = Applied()
    with ledger._db.tx() as conn:
        applied.ignored = conn.execute(
            "SELECT count(*) FROM events e WHERE applied = 0 AND NOT EXISTS "
            "(SELECT 1 FROM editions d WHERE d.name = e.edition)"
        ).fetchone()[0]
        rows = conn.execute(
            "SELECT email_norm, event, reason, timestamp, received_at FROM events "
            "WHERE applied = 0 AND suppresses = 1 ORDER BY id"
        ).fetchall()
        for email, event, reason, timestamp, received in rows:
            when = _stamp(dt.datetime.fromtimestamp(timestamp, dt.UTC)) if timestamp else received
            applied.suppressed += conn.execute(
                "INSERT INTO suppressions (email_norm, reason, source, created_at) VALUES (?, ?, 'event', ?) "
                "ON CONFLICT (email_norm) DO NOTHING",
                (email, suppression_reason(event, reason), when),
            ).rowcount
        conn.execute("UPDATE events SET applied = 1 WHERE applied = 0")
        editions = [
            r[0]
            for r in conn.execute(
                f"SELECT name FROM editions e WHERE EXISTS "
                f"(SELECT 1 FROM recipients r WHERE r.edition = e.id AND r.state = {UNKNOWN})"
            )
        ]
    for edition in editions:
        applied.settled.add(settle_by_events(ledger, edition, wait_hours=0, by_silence=False))
    return applied


def settle_by_events(
    ledger: Ledger, edition: str, *, wait_hours: float, now: dt.datetime | None = None, by_silence: bool = True
) -> Settled:
    """Settle the edition's unknown SendGrid recipients by the stored events (the rules above). Without
    `by_silence` only a recipient's own events count: what the webhook applies, since the events of one
    batch may come in a later post than those of another; a send (by_silence) decides about silence."""
    settled = Settled()
    stamp = _now()
    with ledger._db.tx() as conn:
        ed = edition_key(conn, edition)
        if ed is None:
            return settled
        own = f"e.edition = :name AND e.batch = b.name AND e.email_norm = {EMAIL_NORM}"
        rows = conn.execute(
            f"SELECT r.address, b.name, {EMAIL_NORM}, (SELECT 'SendGrid ' || e.event || CASE WHEN e.reason <> '' "
            f"THEN ': ' || e.reason ELSE '' END FROM events e WHERE {own} AND e.event IN {_REFUSED} "
            f"ORDER BY e.id LIMIT 1), EXISTS (SELECT 1 FROM events e WHERE {own} AND e.event IN {_ACCEPTED}) "
            f"FROM recipients r JOIN batches b ON b.id = r.batch {ADDRESS} "
            f"WHERE r.edition = :ed AND r.state = {UNKNOWN}",
            {"name": edition, "ed": ed},
        ).fetchall()
        failed = [(address, batch, email, refused) for address, batch, email, refused, _ in rows if refused]
        sent = [
            (address, batch, email) for address, batch, email, refused, accepted in rows if accepted and not refused
        ]
        update = f"UPDATE recipients SET state = ?, error = ? WHERE edition = ? AND address = ? AND state = {UNKNOWN}"
        conn.executemany(update, ((FAILED, refused, ed, address) for address, _, _, refused in failed))
        conn.executemany(update, ((SENT, "settled by SendGrid events: accepted", ed, a) for a, _, _ in sent))
        _settlements(conn, edition, [(b, e) for _, b, e, _ in failed], "failed", "events", stamp)
        _settlements(conn, edition, [(b, e) for _, b, e in sent], "sent", "events", stamp)
        settled.failed, settled.sent = len(failed), len(sent)
        if by_silence:
            settled.add(_after_the_wait(conn, edition, ed, wait_hours, now or dt.datetime.now(dt.UTC), stamp))
        settled.batches = _close_batches(conn, ed, "settled by SendGrid events", stamp)
    return settled


def _after_the_wait(conn: Conn, edition: str, ed: int, wait_hours: float, now: dt.datetime, stamp: str) -> Settled:
    """Unknown SendGrid batches once `wait_hours` have passed and events of the edition arrived after that:
    with no event at all, never accepted (pending); with events for some, the request was accepted whole,
    so the rest were handed over too (sent)."""
    settled = Settled()
    batches = conn.execute(
        "SELECT b.id, b.name, b.created_at, EXISTS (SELECT 1 FROM events e WHERE e.edition = :name "
        "AND e.batch = b.name) FROM batches b WHERE b.edition = :ed AND b.backend = 'sendgrid' "
        f"AND EXISTS (SELECT 1 FROM recipients r WHERE r.edition = :ed AND r.batch = b.id AND r.state = {UNKNOWN})",
        {"name": edition, "ed": ed},
    ).fetchall()
    for key, name, created_at, reported in batches:
        threshold = dt.datetime.fromisoformat(created_at.replace("Z", "+00:00")) + dt.timedelta(hours=wait_hours)
        if threshold > now:
            continue
        evidence = conn.execute(
            f"SELECT 1 FROM events WHERE edition = ? AND event IN {_REPORTED} AND received_at >= ? LIMIT 1",
            (edition, _stamp(threshold)),
        ).fetchone()
        if evidence is None:
            continue
        state, note = (
            (SENT, "settled by SendGrid events: its request was accepted")
            if reported
            else (PENDING, "SendGrid reported no event for this batch: never accepted, sent again")
        )
        rows = conn.execute(
            f"SELECT r.address, {EMAIL_NORM} FROM recipients r {ADDRESS} "
            f"WHERE r.edition = ? AND r.batch = ? AND r.state = {UNKNOWN}",
            (ed, key),
        ).fetchall()
        conn.execute(
            f"UPDATE recipients SET state = ?, error = ? WHERE edition = ? AND batch = ? AND state = {UNKNOWN}",
            (state, note, ed, key),
        )
        _settlements(
            conn, edition, [(name, e) for _, e in rows], NAMES[state], "events" if reported else "no-events", stamp
        )
        if reported:
            settled.sent += len(rows)
        else:
            settled.resend += len(rows)
    return settled


def _settlements(
    conn: Conn, edition: str, rows: Iterable[tuple[str, str]], outcome: str, evidence: str, at: str
) -> None:
    conn.executemany(
        "INSERT INTO settlements (edition, batch_id, email_norm, outcome, evidence, at) VALUES (?, ?, ?, ?, ?, ?)",
        ((edition, batch, email, outcome, evidence, at) for batch, email in rows),
    )


def _close_batches(conn: Conn, ed: int, note: str, stamp: str) -> list[str]:
    """Unknown batches of the edition that no longer hold an unknown recipient become resolved."""
    rows = conn.execute(
        "UPDATE batches SET state = 'resolved', error = ?, updated_at = ? WHERE edition = ? AND state = 'unknown' "
        "AND NOT EXISTS (SELECT 1 FROM recipients r WHERE r.edition = batches.edition AND r.batch = batches.id "
        f"AND r.state = {UNKNOWN}) RETURNING name",
        (note, stamp, ed),
    ).fetchall()
    return [r[0] for r in rows]


def settle_by_presence(ledger: Ledger, edition: str, backend: str, present: frozenset[str]) -> Settled:
    """Settle the edition's unknown recipients of `backend` batches by whether their message is where the
    backend puts it (`present`: case-folded addresses found there): sent if so, pending (never written) if not."""
    settled = Settled()
    stamp = _now()
    with ledger._db.tx() as conn:
        ed = edition_key(conn, edition)
        if ed is None:
            return settled
        rows = conn.execute(
            f"SELECT r.address, b.name, {EMAIL_NORM} FROM recipients r JOIN batches b ON b.id = r.batch {ADDRESS} "
            f"WHERE r.edition = ? AND r.state = {UNKNOWN} AND b.backend = ?",
            (ed, backend),
        ).fetchall()
        found = [(a, b, e) for a, b, e in rows if e in present]
        missing = [(a, b, e) for a, b, e in rows if e not in present]
        for state, group, note in (
            (SENT, found, f"settled by the {backend}: the message is there"),
            (PENDING, missing, f"settled by the {backend}: the message was never written, sent again"),
        ):
            conn.executemany(
                "UPDATE recipients SET state = ?, error = ? WHERE edition = ? AND address = ?",
                ((state, note, ed, a) for a, _, _ in group),
            )
            _settlements(conn, edition, [(b, e) for _, b, e in group], NAMES[state], backend, stamp)
        settled.sent, settled.resend = len(found), len(missing)
        settled.batches = _close_batches(conn, ed, f"settled by the {backend}", stamp)
    return settled


# --- what status shows -----------------------------------------------------------------------------


def evidence_counts(ledger: Ledger, edition: str) -> dict[str, int]:
    """Per edition: unknowns settled by evidence (by outcome), bounces and complaints reported by events."""
    out = {"settled_sent": 0, "settled_failed": 0, "settled_resend": 0, "bounces": 0, "complaints": 0}
    names = {"sent": "settled_sent", "failed": "settled_failed", "pending": "settled_resend"}
    conn = ledger._db
    for outcome, n in conn.read(
        "SELECT outcome, count(*) FROM settlements WHERE edition = ? GROUP BY outcome", (edition,)
    ):
        out[names[outcome]] = n
    out["bounces"] = conn.read(
        "SELECT count(DISTINCT email_norm) FROM events WHERE edition = ? AND event = 'bounce'", (edition,)
    ).fetchone()[0]
    out["complaints"] = conn.read(
        "SELECT count(DISTINCT email_norm) FROM events WHERE edition = ? AND event = 'spamreport'", (edition,)
    ).fetchone()[0]
    return out


# --- the suppression list ---------------------------------------------------------------------------


def waiting(ledger: Ledger, edition: str) -> list[tuple[str, str]]:
    """(email, name) of the edition's failed and pending recipients, in list order: what `digest retry` sends."""
    rows = ledger._db.read(
        f"SELECT coalesce(a.email, {EMAIL_NORM}), a.name FROM recipients r JOIN editions e ON e.id = r.edition "
        f"{ADDRESS} WHERE e.name = ? AND r.state IN ({FAILED}, {PENDING}) ORDER BY r.address",
        (edition,),
    ).fetchall()
    return [(str(email), str(name)) for email, name in rows]


def suppressions(ledger: Ledger) -> list[Suppression]:
    rows = ledger._db.read(
        "SELECT email_norm, reason, source, created_at FROM suppressions ORDER BY created_at, email_norm"
    ).fetchall()
    return [Suppression(*row) for row in rows]


def suppressed_addresses(ledger: Ledger) -> frozenset[str]:
    return frozenset(r[0] for r in ledger._db.read("SELECT email_norm FROM suppressions"))


def suppression(ledger: Ledger, email: str) -> Suppression | None:
    row = ledger._db.read(
        "SELECT email_norm, reason, source, created_at FROM suppressions WHERE email_norm = ?",
        (normalize_email(email),),
    ).fetchone()
    return None if row is None else Suppression(*row)


def add_suppression(ledger: Ledger, email: str, reason: str, source: str = "user") -> bool:
    """Put an address on the list; False when it is there already (its first reason stays)."""
    with ledger._db.tx() as conn:
        return (
            conn.execute(
                "INSERT INTO suppressions (email_norm, reason, source, created_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (email_norm) DO NOTHING",
                (normalize_email(email), reason, source, _now()),
            ).rowcount
            > 0
        )


def remove_suppression(ledger: Ledger, email: str, because: str) -> Suppression | None:
    """Take an address off the list, keeping the removal and `because` on record; None if it was not listed."""
    key = normalize_email(email)
    with ledger._db.tx() as conn:
        row = conn.execute(
            "DELETE FROM suppressions WHERE email_norm = ? RETURNING email_norm, reason, source, created_at", (key,)
        ).fetchone()
        if row is None:
            return None
        conn.execute(
            "INSERT INTO suppression_removals (email_norm, reason, removed_because, at) VALUES (?, ?, ?, ?)",
            (key, row[1], because, _now()),
        )
    return Suppression(*row)


def is_complaint(entry: Suppression) -> bool:
    return entry.reason == COMPLAINT
