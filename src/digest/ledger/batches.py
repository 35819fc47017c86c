"""The exactly-once rules: how a recipient of an edition moves between states, batch by batch.

A recipient of an edition is in one state, and only these moves exist:

    pending ──claim──▶ in_flight ──record──▶ sent | failed | unknown
    in_flight ──release──▶ pending        the backend refused before handing anything over (DeliveryError)
    in_flight ──mark_batch_unknown──▶ unknown   the request left and no answer came (BatchOutcomeUnknown)
    unknown ──resolve_unknown──▶ pending | sent the user's decision (--resend-unknown / --mark-unknown-sent)
    failed ──retry_failed──▶ pending      digest retry
    sent                                  final: never re-sent, whatever happens

A batch is the unit handed to a backend; its row in `batches` is what says "handed over". Its state
mirrors its recipients': in_flight, done, unknown, released, resolved.

Write-ahead. `claim_batch` moves the next pending rows (list order) to in_flight under a new batch id
*and* writes the batch row, in one transaction fsynced before it returns; only then may the request
leave. `record` writes the answer in one commit. Recipients the answer does not mention become
unknown, never sent. Faster, same rules: `reserve_batch` moves rows to in_flight *without* a batch row
(not fsynced) while another request is out; `promote` writes the batch row (fsynced) just before the
request leaves, and may in the same commit settle the previous batch as `done` when every one of its
rows was accepted, its rows being marked sent (`record`) right after.

What a crash leaves, and what `recover_in_flight` (the next run, under the newsletter lock) makes of it:

    in_flight with a batch row in_flight   -> unknown  (the request may have left: only the provider knows)
    in_flight without a batch row          -> pending  (reserved, never handed over; attempt not counted)
    in_flight under a batch row `done`     -> sent     (accepted; the row update was cut off)

So digest never re-sends a batch that may have gone out: an unknown batch waits for the user. Several
batches may be in flight at once (one claim per request); a crash then leaves at most that many
unknown batches. Every method is one transaction, keyed by edition and batch id, so concurrent runs
of different newsletters and concurrent batches of one run do not interfere; a store on PostgreSQL
claims with `SELECT ... FOR UPDATE SKIP LOCKED` where SQLite's single writer needs nothing.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from ..addresses import normalize_email
from ..deliver.base import BatchResult
from ..errors import LedgerError
from ..models import Recipient
from .schema import GREATEST, Database

STATES = ("pending", "in_flight", "sent", "failed", "unknown")
State = Literal["pending", "in_flight", "sent", "failed", "unknown"]
UnknownAction = Literal["resend", "mark-sent"]

# A recipient the edition may have reached: sent, unknown, or in flight in a batch that was handed over
# (rows merely reserved for the next batch have no batch row yet).
REACHED = (
    "(r.state IN ('sent', 'unknown') OR (r.state = 'in_flight' AND EXISTS "
    "(SELECT 1 FROM batches b WHERE b.id = r.batch_id)))"
)
# Rows reserved for a batch (reserve_batch) but never handed over: in flight without a batch row ...
_RESERVED = "state = 'in_flight' AND NOT EXISTS (SELECT 1 FROM batches b WHERE b.id = recipients.batch_id)"
# ... and how they go back to pending, as if never reserved (the attempt is not counted).
_UNRESERVE = (
    f"UPDATE recipients SET state = 'pending', batch_id = NULL, attempts = {GREATEST}(attempts - 1, 0), updated_at = ?"
)
_INSERT_BATCH = (
    "INSERT INTO batches (id, edition, run_id, backend, state, content_hash, size, created_at, updated_at) "
    "VALUES (?, ?, ?, ?, 'in_flight', ?, ?, ?, ?)"
)


def now() -> str:
    """The ledger's timestamps: UTC, ISO 8601, milliseconds."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class PendingRow:
    """A recipient ready to be personalised and handed to a backend."""

    email_norm: str
    email: str
    name: str
    rowid: int = 0  # its place in the list, as next_batch / claim_batch read it; 0: not known

    def recipient(self) -> Recipient:
        return Recipient(email=self.email, name=self.name)


def _insert_batch(
    conn: sqlite3.Connection,
    batch_id: str,
    edition: str,
    run_id: int | None,
    backend: str,
    content_hash: str,
    size: int,
    at: str,
) -> None:
    """The batch row: from its commit on, the batch counts as handed over."""
    conn.execute(_INSERT_BATCH, (batch_id, edition, run_id, backend, content_hash, size, at, at))


def _take_pending(
    conn: sqlite3.Connection, edition: str, size: int, batch_id: str, run_id: int | None, at: str
) -> list[PendingRow]:
    """In the caller's transaction: up to `size` pending rows, in list order, go in flight under `batch_id`."""
    scope = "" if run_id is None else " AND run_id = :run"
    rows = conn.execute(
        "UPDATE recipients SET state = 'in_flight', batch_id = :batch, attempts = attempts + 1, "
        "error = NULL, updated_at = :now WHERE rowid IN (SELECT rowid FROM recipients "
        f"WHERE edition = :edition AND state = 'pending'{scope} ORDER BY rowid LIMIT :size) "
        "RETURNING rowid, email_norm, email, name",
        {"batch": batch_id, "now": at, "edition": edition, "run": run_id, "size": size},
    ).fetchall()
    rows.sort()  # RETURNING promises no order; the list's order is the rowid's
    return [PendingRow(email_norm, email, name, rowid) for rowid, email_norm, email, name in rows]


class BatchesMixin:
    """The transitions above, on the ledger's database (Ledger inherits them)."""

    _db: Database

    def next_batch(self, edition: str, size: int, run_id: int | None = None) -> list[PendingRow]:
        """Up to `size` pending recipients, in list order; with `run_id`, only those on that run's list."""
        scope = "" if run_id is None else " AND run_id = ?"
        params = (edition,) if run_id is None else (edition, run_id)
        rows = self._db.read(
            "SELECT email_norm, email, name, rowid FROM recipients WHERE edition = ? AND state = 'pending'"
            f"{scope} ORDER BY rowid LIMIT ?",
            (*params, size),
        ).fetchall()
        return [PendingRow(*row) for row in rows]

    def claim_batch(
        self,
        edition: str,
        size: int,
        batch_id: str,
        backend: str,
        content_hash: str,
        run_id: int | None = None,
    ) -> list[PendingRow]:
        """Write ahead: up to `size` pending rows, in list order, are in flight under `batch_id` with its batch
        row, durably (fsynced), when this returns; only then may the request leave. [] when none are left."""
        at = now()
        with self._db.tx(durable=True) as conn:
            rows = _take_pending(conn, edition, size, batch_id, run_id, at)
            if rows:
                _insert_batch(conn, batch_id, edition, run_id, backend, content_hash, len(rows), at)
        return rows

    def reserve_batch(self, edition: str, size: int, batch_id: str, run_id: int | None = None) -> list[PendingRow]:
        """claim_batch *without* the batch row that says the rows were handed over, while another request is
        out, so that the step between its answer and the next request (promote) is small.

        Not fsynced: a reservation lost in a crash leaves the rows pending, which they truly are."""
        with self._db.tx() as conn:
            return _take_pending(conn, edition, size, batch_id, run_id, now())

    def promote(
        self,
        edition: str,
        batch_id: str,
        size: int,
        backend: str,
        content_hash: str,
        run_id: int | None = None,
        done: tuple[str, str] | None = None,
    ) -> None:
        """A reserved batch is about to be handed over: its batch row, fsynced (the write-ahead point, as
        claim_batch's). The reservation's own commit is older, so this fsync makes it durable too.

        `done` = (batch id, provider id) of a previous batch whose every row was accepted: its batch row
        becomes done in the same commit, so it is settled before the next request leaves, and its rows can
        be marked sent (record) while that request is out."""
        at = now()
        with self._db.tx(durable=True) as conn:
            if done is not None:
                conn.execute(
                    "UPDATE batches SET state = 'done', provider_id = ?, updated_at = ? "
                    "WHERE id = ? AND state = 'in_flight'",
                    (done[1] or None, at, done[0]),
                )
            reserved = conn.execute(
                "SELECT count(*) FROM recipients WHERE batch_id = ? AND state = 'in_flight'", (batch_id,)
            ).fetchone()[0]
            if reserved != size:
                raise LedgerError(f"batch {batch_id}: {reserved} rows reserved, expected {size} (internal error)")
            _insert_batch(conn, batch_id, edition, run_id, backend, content_hash, size, at)

    def mark_in_flight(
        self,
        edition: str,
        emails: Sequence[str],
        batch_id: str,
        backend: str,
        content_hash: str,
        run_id: int | None = None,
    ) -> None:
        """claim_batch in two steps, for tools: these pending recipients (from next_batch) in flight under
        `batch_id`, durably, before the request leaves."""
        at = now()
        with self._db.tx(durable=True) as conn:
            _insert_batch(conn, batch_id, edition, run_id, backend, content_hash, len(emails), at)
            conn.executemany(
                "UPDATE recipients SET state = 'in_flight', batch_id = ?, attempts = attempts + 1, error = NULL, "
                "updated_at = ? WHERE edition = ? AND email_norm = ? AND state = 'pending'",
                ((batch_id, at, edition, normalize_email(e)) for e in emails),
            )

    def record(self, edition: str, batch_id: str, result: BatchResult) -> dict[str, int]:
        """Record the backend's answer for a batch in one commit; returns counts by new state.

        Anybody of the batch the result does not mention is marked unknown rather than guessed.
        """
        at = now()
        # The provider id lives on the batch only: it is one per request for SendGrid, and the outbox's
        # list of file names per batch would otherwise be copied onto every row of the batch.
        provider = result.provider_id or None
        counts: dict[str, int] = {}
        with self._db.tx() as conn:
            in_flight = {
                r[0]
                for r in conn.execute(
                    "SELECT email_norm FROM recipients WHERE batch_id = ? AND state = 'in_flight'", (batch_id,)
                )
            }
            sent_keys = {normalize_email(e) for e in result.sent}
            if not result.failed and not result.unknown and sent_keys == in_flight:
                # The common answer, "all of them": one statement instead of one per recipient.
                cur = conn.execute(
                    "UPDATE recipients SET state = 'sent', updated_at = ? WHERE batch_id = ? AND state = 'in_flight'",
                    (at, batch_id),
                )
            else:
                cur = conn.executemany(
                    "UPDATE recipients SET state = 'sent', updated_at = ? "
                    "WHERE batch_id = ? AND state = 'in_flight' AND edition = ? AND email_norm = ?",
                    ((at, batch_id, edition, key) for key in sent_keys),
                )
            counts["sent"] = cur.rowcount
            for state, pairs in (("failed", result.failed), ("unknown", result.unknown)):
                counts[state] = conn.executemany(
                    "UPDATE recipients SET state = ?, error = ?, updated_at = ? "
                    "WHERE batch_id = ? AND state = 'in_flight' AND edition = ? AND email_norm = ?",
                    ((state, reason, at, batch_id, edition, normalize_email(e)) for e, reason in pairs),
                ).rowcount
            counts["unknown"] += conn.execute(
                "UPDATE recipients SET state = 'unknown', updated_at = ?, "
                "error = 'the backend did not report this recipient' "
                "WHERE batch_id = ? AND state = 'in_flight'",
                (at, batch_id),
            ).rowcount
            conn.execute(
                "UPDATE batches SET state = ?, provider_id = ?, updated_at = ? WHERE id = ?",
                ("unknown" if counts["unknown"] else "done", provider, at, batch_id),
            )
        return {state: n for state, n in counts.items() if n > 0}

    def mark_batch_unknown(self, batch_id: str, error: str, provider_id: str = "") -> int:
        """The request went out and no answer came: the whole batch becomes unknown. Returns its size."""
        at = now()
        with self._db.tx() as conn:
            cur = conn.execute(
                "UPDATE recipients SET state = 'unknown', error = ?, updated_at = ? "
                "WHERE batch_id = ? AND state = 'in_flight'",
                (error, at, batch_id),
            )
            conn.execute(
                "UPDATE batches SET state = 'unknown', error = ?, provider_id = ?, updated_at = ? WHERE id = ?",
                (error, provider_id or None, at, batch_id),
            )
            return cur.rowcount

    def release(self, batch_id: str, error: str = "") -> int:
        """Nothing of the batch was sent (the backend said so): back to pending. Returns how many."""
        at = now()
        with self._db.tx() as conn:
            cur = conn.execute(
                "UPDATE recipients SET state = 'pending', batch_id = NULL, error = ?, updated_at = ? "
                "WHERE batch_id = ? AND state = 'in_flight'",
                (error or None, at, batch_id),
            )
            conn.execute(
                "UPDATE batches SET state = 'released', error = ?, updated_at = ? WHERE id = ?",
                (error or None, at, batch_id),
            )
            return cur.rowcount

    def drop_reservation(self, batch_id: str) -> int:
        """A reserved batch that will not be sent after all: its rows are pending again, as if never
        reserved. A batch that was promoted is left alone. Returns how many rows."""
        with self._db.tx() as conn:
            return conn.execute(f"{_UNRESERVE} WHERE batch_id = ? AND {_RESERVED}", (now(), batch_id)).rowcount

    def recover_in_flight(self, edition: str) -> int:
        """What a crash left (see the table above): in flight -> unknown, reserved -> pending, done -> sent.
        Call only while holding the newsletter lock: then no live run can own them. Returns how many
        became unknown."""
        at = now()
        note = "a run stopped after handing this batch to the backend and before recording the answer"
        with self._db.tx() as conn:
            conn.execute(
                "UPDATE recipients SET state = 'sent', updated_at = ? WHERE edition = ? AND state = 'in_flight' "
                "AND EXISTS (SELECT 1 FROM batches b WHERE b.id = recipients.batch_id AND b.state = 'done')",
                (at, edition),
            )
            conn.execute(f"{_UNRESERVE} WHERE edition = ? AND {_RESERVED}", (at, edition))
            conn.execute(
                "UPDATE batches SET state = 'unknown', error = ?, updated_at = ? "
                "WHERE edition = ? AND state = 'in_flight'",
                (note, at, edition),
            )
            cur = conn.execute(
                "UPDATE recipients SET state = 'unknown', error = ?, updated_at = ? "
                "WHERE edition = ? AND state = 'in_flight'",
                (note, at, edition),
            )
            # Runs of this edition without an outcome died (we hold the lock and have not started ours yet).
            conn.execute(
                "UPDATE runs SET outcome = 'died', finished_at = ? WHERE edition = ? AND outcome IS NULL",
                (at, edition),
            )
            return cur.rowcount

    def resolve_unknown(self, edition: str, action: UnknownAction, batch_ids: Sequence[str] | None = None) -> int:
        """The user's decision on unknown rows: "resend" -> pending, "mark-sent" -> sent. Returns how many.

        `batch_ids` limits it to some batches (e.g. the ones the provider's activity feed shows)."""
        if action not in ("resend", "mark-sent"):
            raise LedgerError(f"resolve_unknown: action must be 'resend' or 'mark-sent' (got {action!r})")
        new_state = "pending" if action == "resend" else "sent"
        note = (
            "resent after an unknown outcome"
            if action == "resend"
            else "marked sent by the user after an unknown outcome"
        )
        where = "edition = ? AND state = 'unknown'"
        params: list[object] = [edition]
        if batch_ids is not None:
            if not batch_ids:
                return 0
            where += f" AND batch_id IN ({','.join('?' * len(batch_ids))})"
            params += list(batch_ids)
        at = now()
        with self._db.tx() as conn:
            batches = [r[0] for r in conn.execute(f"SELECT DISTINCT batch_id FROM recipients WHERE {where}", params)]
            # error keeps the decision on the row: an audit trail of who chose what.
            cur = conn.execute(
                f"UPDATE recipients SET state = ?, error = ?, updated_at = ? WHERE {where}",
                [new_state, note, at, *params],
            )
            conn.executemany(
                "UPDATE batches SET state = 'resolved', error = ?, updated_at = ? WHERE id = ?",
                ((f"{action} by the user", at, b) for b in batches if b),
            )
            return cur.rowcount

    def retry_failed(self, edition: str) -> int:
        """Failed -> pending (digest retry). Returns how many."""
        with self._db.tx() as conn:
            cur = conn.execute(
                "UPDATE recipients SET state = 'pending', updated_at = ? WHERE edition = ? AND state = 'failed'",
                (now(), edition),
            )
            if cur.rowcount:
                conn.execute("UPDATE editions SET finished_at = NULL WHERE id = ?", (edition,))
            return cur.rowcount
