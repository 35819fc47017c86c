"""The exactly-once rules: how a recipient of an edition moves between states, batch by batch.

A recipient of an edition is in one state, and only these moves exist:

    pending ──claim──▶ in_flight ──record──▶ sent | failed | unknown
    in_flight ──release──▶ pending        the backend refused before handing anything over (DeliveryError)
    in_flight ──mark_batch_unknown──▶ unknown   the request left and no answer came (BatchOutcomeUnknown)
    unknown ──resolve_unknown──▶ pending | sent the user's decision (--resend-unknown / --mark-unknown-sent)
    failed ──retry_failed──▶ pending      digest retry
    sent                                  final: never re-sent, whatever happens

A batch is the unit handed to a backend; its row in `batches`, in state in_flight, is what says "handed
over". Its state mirrors its recipients': reserved (not handed over yet), in_flight, done, unknown,
released, resolved.

Write-ahead. `claim_batch` moves the next pending rows (list order) to in_flight under a new batch id
*and* writes the batch row, in one transaction fsynced before it returns; only then may the request
leave. `record` writes the answer in one commit. Recipients the answer does not mention become
unknown, never sent. Faster, same rules: `reserve_batch` moves rows to in_flight under a batch row in
state `reserved` (not fsynced) while another request is out; `promote` turns it in_flight (fsynced) just
before the request leaves, and may in the same commit settle the previous batch as `done` when every one of its
rows was accepted, its rows being marked sent (`record`) right after.

What a crash leaves, and what `recover_in_flight` (the next run, under the newsletter lock) makes of it:

    in_flight under a batch in_flight      -> unknown  (the request may have left: only the provider knows)
    in_flight under a batch reserved       -> pending  (never handed over; attempt not counted)
    in_flight under a batch done           -> sent     (accepted; the row update was cut off)

So digest never re-sends a batch that may have gone out: an unknown batch waits for the user. Several
batches may be in flight at once (one claim per request); a crash then leaves at most that many
unknown batches. Every method is one transaction, keyed by edition and batch id, so concurrent runs
of different newsletters and concurrent batches of one run do not interfere; a store on PostgreSQL
claims with `SELECT ... FOR UPDATE SKIP LOCKED` where SQLite's single writer needs nothing.

Workers (`shared`, PostgreSQL): several `--worker` runs send one edition together, each claiming the
pending rows any open worker run listed (WORKER_RUNS). Each run holds a lease it renews (leases.py);
`recover_expired` makes the moves above for the batches of runs whose lease ran out, and none other:
a live worker's batches are its own.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Literal, NamedTuple

from ..addresses import normalize_email, split_address
from ..deliver.base import BatchResult
from ..errors import LedgerError
from ..models import Recipient
from .db import Conn, Database, StagedRow

STATES = ("pending", "in_flight", "sent", "failed", "unknown")  # the order counts are shown in
State = Literal["pending", "in_flight", "sent", "failed", "unknown"]
UnknownAction = Literal["resend", "mark-sent"]
# A recipient's state as stored: small integers (0 and 1, the commonest, take no bytes in a SQLite record).
PENDING, SENT, IN_FLIGHT, FAILED, UNKNOWN = 0, 1, 2, 3, 4
CODES: dict[str, int] = {"pending": PENDING, "sent": SENT, "in_flight": IN_FLIGHT, "failed": FAILED, "unknown": UNKNOWN}
NAMES: dict[int, str] = {code: name for name, code in CODES.items()}

# A recipient's addresses, from `recipients r` joined with ADDRESS.
ADDRESS = "JOIN addresses a ON a.id = r.address JOIN domains d ON d.id = a.domain"
EMAIL_NORM = "a.local || '@' || d.name"
EMAIL = f"coalesce(a.email, {EMAIL_NORM})"
# A recipient the edition may have reached: sent, unknown, or in flight in a batch that was handed over
# (rows merely reserved for the next batch are under a `reserved` batch).
REACHED = (
    f"(r.state IN ({SENT}, {UNKNOWN}) OR (r.state = {IN_FLIGHT} AND EXISTS "
    "(SELECT 1 FROM batches b WHERE b.id = r.batch AND b.state <> 'reserved')))"
)
_NOTE_CRASH = "a run stopped after handing this batch to the backend and before recording the answer"


def now() -> str:
    """The ledger's timestamps: UTC, ISO 8601, milliseconds."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class PendingRow(NamedTuple):
    """A recipient ready to be personalised and handed to a backend (a tuple: a send makes one per recipient)."""

    email_norm: str
    email: str
    name: str
    position: int = 0  # its place in the ledger's order (the address id); 0: not known

    def recipient(self) -> Recipient:
        return Recipient(self.email, self.name)


def edition_key(conn: Conn, edition: str) -> int | None:
    """The integer an edition's rows are stored under; None when the ledger has no such edition."""
    row = conn.execute("SELECT id FROM editions WHERE name = ?", (edition,)).fetchone()
    return None if row is None else int(row[0])


def batch_key(conn: Conn, batch_id: str, state: str | None = None) -> int | None:
    """The integer a batch's rows refer to it by (optionally only while it is in `state`)."""
    sql = "SELECT id FROM batches WHERE name = ?" + ("" if state is None else " AND state = ?")
    row = conn.execute(sql, (batch_id,) if state is None else (batch_id, state)).fetchone()
    return None if row is None else int(row[0])


def staged(recipients: Iterable[Recipient]) -> list[StagedRow]:
    """Recipients as Database.stage takes them: (local part, domain, the address as written if it differs, name)."""
    rows: dict[tuple[str, str], StagedRow] = {}
    for r in recipients:
        written = r.email.strip()
        local, domain = split_address(normalize_email(written))
        # Two spellings of one address in a chunk are one row (the later one's), at the earlier one's place.
        rows[local, domain] = (local, domain, None if written == f"{local}@{domain}" else written, r.name)
    return list(rows.values())


# The staged addresses that the ledger knows, with their ids (ADDRESS's aliases).
STAGED = "stage s JOIN domains d ON d.name = s.domain JOIN addresses a ON a.domain = d.id AND a.local = s.local"


def _open_batch(
    conn: Conn,
    batch_id: str,
    edition: str,
    run_id: int | None,
    state: str,
    backend: str = "",
    content_hash: str = "",
    size: int = 0,
) -> tuple[int, int] | None:
    """The batch row of the edition named `edition` (found by the same statement: one less per batch for the send
    loop's thread): its key and the edition's, or None when the ledger has no such edition. From the commit of
    one in state in_flight on, the batch counts as handed over."""
    at = now()
    row = conn.execute(
        "INSERT INTO batches (name, edition, run, backend, state, content_hash, size, created_at, updated_at) "
        "SELECT ?, id, CAST(? AS INTEGER), ?, ?, ?, CAST(? AS INTEGER), ?, ? FROM editions WHERE name = ? "
        "RETURNING id, edition",
        (batch_id, run_id, backend, state, content_hash, size, at, at, edition),
    ).fetchone()
    return None if row is None else (int(row[0]), int(row[1]))


def _take_pending(
    conn: Conn, db: Database, edition: int, size: int, batch: int, run_id: int | None, shared: bool = False
) -> list[PendingRow]:
    """In the caller's transaction: up to `size` pending rows, in order, go in flight under `batch`."""
    pending, params = _pending(db, edition, run_id, shared)
    # The rows are picked once (a materialised CTE: PostgreSQL may run an IN subquery with LIMIT and SKIP
    # LOCKED more than once and take more than `size`), skipping rows another worker is claiming; FOR UPDATE
    # re-checks `state` on the row it locks, so the update needs no condition that would steer the planner
    # off the primary key.
    conn.execute(
        f"WITH picked AS MATERIALIZED ({pending} LIMIT ?{db.skip_locked}) "
        f"UPDATE recipients SET state = {IN_FLIGHT}, batch = ?, attempts = attempts + 1, error = NULL "
        "WHERE edition = ? AND address IN (SELECT address FROM picked)",
        (*params, size, batch, edition),
    )
    return _rows_of(conn, db, batch)


# The open --worker runs of an edition (parameter: edition): a worker sends the pending rows any of them
# listed, since they all read the same list; a worker that died stays open until recovered.
WORKER_RUNS = "SELECT id FROM runs WHERE edition = ? AND lease_until IS NOT NULL AND outcome IS NULL"


def run_scope(edition: int, run_id: int | None, shared: bool = False) -> tuple[str, tuple[int, ...]]:
    """The condition on `recipients` that keeps the rows on a run's list, and its parameters: none without a
    run; with `shared` (a --worker run), those on the list of any open worker run (WORKER_RUNS)."""
    if run_id is None:
        return "", ()
    if shared:
        return f" AND run IN ({WORKER_RUNS})", (edition,)
    return " AND run = ?", (run_id,)


def _pending(db: Database, edition: int, run_id: int | None, shared: bool = False) -> tuple[str, tuple[int, ...]]:
    """The addresses of an edition's pending rows in sending order, and the query's parameters (run_scope).
    Without a run (digest retry) they go run by run: the order the pending index keeps them in."""
    scope, params = run_scope(edition, run_id, shared)
    order = " ORDER BY address" if run_id is not None and not shared else " ORDER BY run, address"
    return (
        f"SELECT address FROM recipients {db.hint('recipients_pending')} "
        f"WHERE edition = ? AND state = {PENDING}{scope}{order}",
        (edition, *params),
    )


def _rows_of(conn: Conn, db: Database, batch: int) -> list[PendingRow]:
    rows = db.select_all(
        conn,
        (EMAIL_NORM, EMAIL, "a.name", "r.address"),
        f"FROM recipients r {ADDRESS} WHERE r.batch = ? AND r.state = {IN_FLIGHT}",
        (batch,),
    )
    return sorted((PendingRow(*row) for row in rows), key=_position)


def _position(row: PendingRow) -> int:
    return row.position


class BatchesMixin:
    """The transitions above, on the ledger's database (Ledger inherits them)."""

    _db: Database
    shared = False  # a --worker run (see the module's docstring); set while Ledger.newsletter_lock holds it

    @property
    def _unreserve(self) -> str:
        """How reserved rows go back to pending, as if never reserved (the attempt is not counted)."""
        return f"UPDATE recipients SET state = {PENDING}, batch = NULL, attempts = {self._db.greatest}(attempts - 1, 0)"

    def next_batch(self, edition: str, size: int, run_id: int | None = None) -> list[PendingRow]:
        """Up to `size` pending recipients, in order; with `run_id`, only those on that run's list."""
        found = self._db.read("SELECT id FROM editions WHERE name = ?", (edition,)).fetchone()
        if found is None:
            return []
        pending, params = _pending(self._db, found[0], run_id, self.shared)
        rows = self._db.read(
            f"SELECT {EMAIL_NORM}, {EMAIL}, a.name, r.address FROM ({pending} LIMIT ?) p "
            f"JOIN recipients r ON r.edition = ? AND r.address = p.address {ADDRESS}",
            (*params, size, found[0]),
        ).fetchall()
        return sorted((PendingRow(*row) for row in rows), key=lambda row: row.position)

    def claim_batch(
        self,
        edition: str,
        size: int,
        batch_id: str,
        backend: str,
        content_hash: str,
        run_id: int | None = None,
    ) -> list[PendingRow]:
        """Write ahead: up to `size` pending rows, in order, are in flight under `batch_id` with its batch row,
        durably (fsynced), when this returns; only then may the request leave. [] when none are left."""
        with self._db.tx(durable=True) as conn:
            opened = _open_batch(conn, batch_id, edition, run_id, "in_flight", backend, content_hash, size)
            if opened is None:
                return []
            batch, ed = opened
            rows = _take_pending(conn, self._db, ed, size, batch, run_id, self.shared)
            if not rows:
                conn.execute("DELETE FROM batches WHERE id = ?", (batch,))
            elif len(rows) != size:
                conn.execute("UPDATE batches SET size = ? WHERE id = ?", (len(rows), batch))
        return rows

    def reserve_batch(self, edition: str, size: int, batch_id: str, run_id: int | None = None) -> list[PendingRow]:
        """claim_batch under a batch row in state `reserved`, not yet handed over, while another request is
        out, so that the step between its answer and the next request (promote) is small.

        Not fsynced: a reservation lost in a crash leaves the rows pending, which they truly are."""
        with self._db.tx() as conn:
            opened = _open_batch(conn, batch_id, edition, run_id, "reserved")
            if opened is None:
                return []
            batch, ed = opened
            rows = _take_pending(conn, self._db, ed, size, batch, run_id, self.shared)
            if not rows:
                conn.execute("DELETE FROM batches WHERE id = ?", (batch,))
            return rows

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
        """A reserved batch is about to be handed over: its batch row turns in_flight, fsynced (the write-ahead
        point, as claim_batch's). The reservation's own commit is older, so this fsync makes it durable too.

        `done` = (batch id, provider id) of a previous batch whose every row was accepted: its batch row
        becomes done in the same commit, so it is settled before the next request leaves, and its rows can
        be marked sent (record) while that request is out."""
        at = now()
        with self._db.tx(durable=True) as conn:
            if done is not None:
                conn.execute(
                    "UPDATE batches SET state = 'done', provider_id = ?, updated_at = ? "
                    "WHERE name = ? AND state = 'in_flight'",
                    (done[1] or None, at, done[0]),
                )
            batch = batch_key(conn, batch_id, "reserved")
            reserved = 0
            if batch is not None:
                reserved = conn.execute(
                    f"SELECT count(*) FROM recipients WHERE batch = ? AND state = {IN_FLIGHT}", (batch,)
                ).fetchone()[0]
            if batch is None or reserved != size:
                raise LedgerError(f"batch {batch_id}: {reserved} rows reserved, expected {size} (internal error)")
            conn.execute(
                "UPDATE batches SET state = 'in_flight', run = ?, backend = ?, content_hash = ?, size = ?, "
                "created_at = ?, updated_at = ? WHERE id = ?",
                (run_id, backend, content_hash, size, at, at, batch),
            )

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
        with self._db.tx(durable=True) as conn:
            opened = _open_batch(conn, batch_id, edition, run_id, "in_flight", backend, content_hash, len(emails))
            if opened is None:
                return
            batch, ed = opened
            self._db.stage(conn, staged(Recipient(e) for e in emails))
            conn.execute(
                f"UPDATE recipients SET state = {IN_FLIGHT}, batch = ?, attempts = attempts + 1, error = NULL "
                f"WHERE edition = ? AND state = {PENDING} AND address IN (SELECT a.id FROM {STAGED})",
                (batch, ed),
            )

    def record(self, edition: str, batch_id: str, result: BatchResult, all_sent: bool = False) -> dict[str, int]:
        """Record the backend's answer for a batch in one commit; returns counts by new state.

        Anybody of the batch the result does not mention is marked unknown rather than guessed.
        `all_sent`: the caller checked that the answer accepts exactly the rows claim_batch (or reserve_batch)
        gave it for this batch, and nothing else; its rows still in flight are then marked sent by batch,
        without being looked up one by one.
        """
        at = now()
        counts: dict[str, int] = {}
        with self._db.tx() as conn:
            if all_sent:
                counts["sent"] = conn.execute(
                    f"UPDATE recipients SET state = {SENT} "
                    f"WHERE batch = (SELECT id FROM batches WHERE name = ?) AND state = {IN_FLIGHT}",
                    (batch_id,),
                ).rowcount
                conn.execute(
                    "UPDATE batches SET state = 'done', provider_id = ?, updated_at = ? WHERE name = ?",
                    (result.provider_id or None, at, batch_id),
                )
                return {state: n for state, n in counts.items() if n > 0}
            found = conn.execute("SELECT id, edition FROM batches WHERE name = ?", (batch_id,)).fetchone()
            if found is None:
                return {}
            batch, ed = found
            # norm -> address of the rows still in flight: the answer can only settle those.
            in_flight = {
                f"{local}@{domain}": address
                for local, domain, address in conn.execute(
                    "SELECT a.local, d.name, r.address FROM recipients r JOIN addresses a ON a.id = r.address "
                    f"JOIN domains d ON d.id = a.domain WHERE r.batch = ? AND r.state = {IN_FLIGHT}",
                    (batch,),
                )
            }
            sent_keys = {normalize_email(e) for e in result.sent}
            by_key = (
                "UPDATE recipients SET state = ?, error = ? "
                f"WHERE edition = ? AND address = ? AND batch = ? AND state = {IN_FLIGHT}"
            )
            if not result.failed and not result.unknown and sent_keys == in_flight.keys():
                # The common answer, "all of them": one statement instead of one per recipient.
                counts["sent"] = conn.execute(
                    f"UPDATE recipients SET state = {SENT} WHERE batch = ? AND state = {IN_FLIGHT}", (batch,)
                ).rowcount
            else:
                counts["sent"] = conn.executemany(
                    by_key, ((SENT, None, ed, in_flight[k], batch) for k in sent_keys if k in in_flight)
                ).rowcount
            for state, pairs in (("failed", result.failed), ("unknown", result.unknown)):
                keyed = ((normalize_email(e), reason) for e, reason in pairs)
                counts[state] = conn.executemany(
                    by_key, ((CODES[state], reason, ed, in_flight[k], batch) for k, reason in keyed if k in in_flight)
                ).rowcount
            counts["unknown"] += conn.execute(
                f"UPDATE recipients SET state = {UNKNOWN}, error = 'the backend did not report this recipient' "
                f"WHERE batch = ? AND state = {IN_FLIGHT}",
                (batch,),
            ).rowcount
            # The provider id lives on the batch only: one per request for SendGrid.
            conn.execute(
                "UPDATE batches SET state = ?, provider_id = ?, updated_at = ? WHERE id = ?",
                ("unknown" if counts["unknown"] else "done", result.provider_id or None, at, batch),
            )
        return {state: n for state, n in counts.items() if n > 0}

    def mark_batch_unknown(self, batch_id: str, error: str, provider_id: str = "") -> int:
        """The request went out and no answer came: the whole batch becomes unknown. Returns its size."""
        with self._db.tx() as conn:
            batch = batch_key(conn, batch_id)
            if batch is None:
                return 0
            conn.execute(
                "UPDATE batches SET state = 'unknown', error = ?, provider_id = ?, updated_at = ? WHERE id = ?",
                (error, provider_id or None, now(), batch),
            )
            return conn.execute(
                f"UPDATE recipients SET state = {UNKNOWN}, error = NULL WHERE batch = ? AND state = {IN_FLIGHT}",
                (batch,),
            ).rowcount

    def release(self, batch_id: str, error: str = "") -> int:
        """Nothing of the batch was sent (the backend said so): back to pending. Returns how many."""
        with self._db.tx() as conn:
            batch = batch_key(conn, batch_id)
            if batch is None:
                return 0
            conn.execute(
                "UPDATE batches SET state = 'released', error = ?, updated_at = ? WHERE id = ?",
                (error or None, now(), batch),
            )
            return conn.execute(
                f"UPDATE recipients SET state = {PENDING}, error = NULL WHERE batch = ? AND state = {IN_FLIGHT}",
                (batch,),
            ).rowcount

    def drop_reservation(self, batch_id: str) -> int:
        """A reserved batch that will not be sent after all: its rows are pending again, as if never
        reserved, and its batch row goes. A batch that was promoted is left alone. Returns how many rows."""
        with self._db.tx() as conn:
            batch = batch_key(conn, batch_id, "reserved")
            if batch is None:
                return 0
            n = conn.execute(f"{self._unreserve} WHERE batch = ? AND state = {IN_FLIGHT}", (batch,)).rowcount
            conn.execute("DELETE FROM batches WHERE id = ?", (batch,))
            return n

    def recover_in_flight(self, edition: str) -> int:
        """What a crash left (see the table above): in flight -> unknown, reserved -> pending, done -> sent.
        Call only while holding the newsletter lock: then no live run can own them (among --worker runs, only
        those whose lease ran out: recover_expired). Returns how many became unknown."""
        if self.shared:
            return self.recover_expired(edition)
        at = now()
        with self._db.tx() as conn:
            ed = edition_key(conn, edition)
            if ed is None:
                return 0
            # Keyed by batch, so SQLite walks the small in-flight index rather than the whole edition.
            in_batches = (
                f"WHERE state = {IN_FLIGHT} AND batch IN (SELECT id FROM batches WHERE edition = ? AND state = ?)"
            )
            conn.execute(f"UPDATE recipients SET state = {SENT} {in_batches}", (ed, "done"))
            conn.execute(f"{self._unreserve} {in_batches}", (ed, "reserved"))
            conn.execute(f"{self._unreserve} WHERE state = {IN_FLIGHT} AND batch IS NULL AND +edition = ?", (ed,))
            conn.execute("DELETE FROM batches WHERE edition = ? AND state = 'reserved'", (ed,))
            conn.execute(
                "UPDATE batches SET state = 'unknown', error = ?, updated_at = ? "
                "WHERE edition = ? AND state = 'in_flight'",
                (_NOTE_CRASH, at, ed),
            )
            n = conn.execute(
                f"UPDATE recipients SET state = {UNKNOWN}, error = NULL "
                f"WHERE state = {IN_FLIGHT} AND batch IN (SELECT id FROM batches WHERE edition = ?)",
                (ed,),
            ).rowcount
            # Runs of this edition without an outcome died (we hold the lock and have not started ours yet).
            conn.execute(
                "UPDATE runs SET outcome = 'died', finished_at = ? WHERE edition = ? AND outcome IS NULL", (at, ed)
            )
            return n

    def recover_expired(self, edition: str, heir: int | None = None) -> int:
        """recover_in_flight among --worker runs: the same moves, for the batches of dead runs only (no outcome
        and a lease that ran out, or none: a run without --worker cannot be alive beside workers). Their
        pending rows go to `heir`'s list, so that the live workers send them. Returns how many became unknown."""
        at = now()
        with self._db.tx() as conn:
            ed = edition_key(conn, edition)
            if ed is None:
                return 0
            # Locked, skipping runs another worker is recovering this moment: each dead run is recovered once.
            dead = [
                int(row[0])
                for row in conn.execute(
                    "SELECT id FROM runs WHERE edition = ? AND outcome IS NULL "
                    f"AND (lease_until IS NULL OR lease_until < {self._db.clock}){self._db.skip_locked}",
                    (ed, 0.0),
                )
            ]
            if not dead:
                return 0
            # Their pending rows change lists below: not while a worker's list joins rows of older runs (editions).
            self._db.serialise(conn, f"list:{ed}")
            runs = ", ".join("?" * len(dead))
            of_dead = f"SELECT id FROM batches WHERE edition = ? AND run IN ({runs})"
            rows = f"WHERE state = {IN_FLIGHT} AND batch IN ({of_dead} AND state = ?)"
            conn.execute(f"UPDATE recipients SET state = {SENT} {rows}", (ed, *dead, "done"))
            conn.execute(f"{self._unreserve} {rows}", (ed, *dead, "reserved"))
            conn.execute(f"DELETE FROM batches WHERE state = 'reserved' AND id IN ({of_dead})", (ed, *dead))
            n = conn.execute(f"UPDATE recipients SET state = {UNKNOWN}, error = NULL {rows}", (ed, *dead, "in_flight"))
            conn.execute(
                f"UPDATE batches SET state = 'unknown', error = ?, updated_at = ? WHERE state = 'in_flight' "
                f"AND id IN ({of_dead})",
                (_NOTE_CRASH, at, ed, *dead),
            )
            if heir is not None:
                conn.execute(
                    f"UPDATE recipients SET run = ? WHERE edition = ? AND state = {PENDING} AND run IN ({runs})",
                    (heir, ed, *dead),
                )
            conn.execute(f"UPDATE runs SET outcome = 'died', finished_at = ? WHERE id IN ({runs})", (at, *dead))
            return n.rowcount

    def resolve_unknown(self, edition: str, action: UnknownAction, batch_ids: Sequence[str] | None = None) -> int:
        """The user's decision on unknown rows: "resend" -> pending, "mark-sent" -> sent. Returns how many.

        `batch_ids` limits it to some batches (e.g. the ones the provider's activity feed shows). The
        decision is kept on each batch (state resolved, "<action> by the user"): an audit trail."""
        if action not in ("resend", "mark-sent"):
            raise LedgerError(f"resolve_unknown: action must be 'resend' or 'mark-sent' (got {action!r})")
        if batch_ids is not None and not batch_ids:
            return 0
        with self._db.tx() as conn:
            ed = edition_key(conn, edition)
            if ed is None:
                return 0
            where = f"edition = ? AND state = {UNKNOWN}"
            params: list[object] = [ed]
            if batch_ids is not None:
                where += f" AND batch IN (SELECT id FROM batches WHERE name IN ({','.join('?' * len(batch_ids))}))"
                params += list(batch_ids)
            batches = [r[0] for r in conn.execute(f"SELECT DISTINCT batch FROM recipients WHERE {where}", params)]
            n = conn.execute(
                f"UPDATE recipients SET state = ?, error = NULL WHERE {where}",
                [PENDING if action == "resend" else SENT, *params],
            ).rowcount
            conn.executemany(
                "UPDATE batches SET state = 'resolved', error = ?, updated_at = ? WHERE id = ?",
                ((f"{action} by the user", now(), b) for b in batches if b is not None),
            )
            return n

    def retry_failed(self, edition: str) -> int:
        """Failed -> pending (digest retry). Returns how many."""
        with self._db.tx() as conn:
            ed = edition_key(conn, edition)
            if ed is None:
                return 0
            n = conn.execute(
                f"UPDATE recipients SET state = {PENDING} WHERE edition = ? AND state = {FAILED}", (ed,)
            ).rowcount
            if n:
                conn.execute("UPDATE editions SET finished_at = NULL WHERE id = ?", (ed,))
            return n
