"""Editions, runs and builds in the ledger, and streaming a recipients list into an edition."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import TYPE_CHECKING

from ..errors import LedgerError
from ..models import Recipient
from .batches import IN_FLIGHT, PENDING, REACHED, STAGED, UNKNOWN, WORKER_RUNS, edition_key, now, staged
from .db import Conn, Database

CHUNK = 5000  # rows per transaction while streaming a list in: bounded memory, few commits

# add_recipients, per chunk of the list in `stage`: new domains and addresses first (the latest list gives an
# address its name and spelling), then the edition's rows: new people pending, known ones keep their state.
_ADD = [
    "INSERT INTO domains (name) SELECT DISTINCT domain FROM stage WHERE true ORDER BY domain "
    "ON CONFLICT (name) DO NOTHING",
    # (WHERE true: SQLite's parser needs it between a SELECT and an upsert clause; every statement writes in one
    # order, so --worker runs adding the same list at once wait for each other's rows, never deadlock)
    "INSERT INTO addresses (domain, local, email, name) SELECT d.id, s.local, s.email, s.name "
    "FROM stage s JOIN domains d ON d.name = s.domain WHERE true ORDER BY s.pos "
    "ON CONFLICT (domain, local) DO UPDATE SET email = excluded.email, name = excluded.name "
    "WHERE coalesce(addresses.email, '') <> coalesce(excluded.email, '') OR addresses.name <> excluded.name",
    f"INSERT INTO recipients (edition, address, state, run) SELECT ?, a.id, {PENDING}, ? FROM {STAGED} "
    "WHERE true ORDER BY s.pos ON CONFLICT (edition, address) DO UPDATE SET run = excluded.run",
]
# The last statement for a --worker run: rows another worker may have in flight are left alone, not locked (an
# upsert would lock them, and could deadlock with that worker recording its answer). Rows that then join its
# list (_join_list) are on no open worker run's list, so no worker claims them meanwhile.
_ADD_SHARED = (
    f"INSERT INTO recipients (edition, address, state, run) SELECT ?, a.id, {PENDING}, ? FROM {STAGED} "
    "WHERE true ORDER BY s.pos ON CONFLICT (edition, address) DO NOTHING"
)


@dataclass(frozen=True)
class AddResult:
    """What streaming a recipients list into an edition did."""

    listed: int  # recipients in this list
    added: int  # of them, new to the edition (now pending)
    listed_by: int | None = None  # a --worker run: the other worker run that added this same list (none read here)


LIST_WAIT_POLL = 0.2  # seconds between looks at the worker run adding the list this run was given too


def _short(content_hash: str) -> str:
    return content_hash.removeprefix("sha256:")[:12] + "…"


class EditionsMixin:
    """Editions, runs, builds and lists (Ledger inherits them)."""

    _db: Database
    shared: bool  # a --worker run (batches.py): lists are added beside other workers' claims

    def begin_edition(
        self,
        edition: str,
        newsletter: str,
        period: str,
        content_hash: str,
        subject: str,
        allow_changed: bool = False,
    ) -> None:
        """Create the edition, or check that its content is the content already (possibly) delivered.

        Content that changed after somebody may have received the edition is refused unless
        `allow_changed`: then the edition takes the new content, recipients already sent keep their
        state (they get nothing more) and the rest get the new content. Each batch records the hash it
        carried, so who got which version stays answerable. If nobody can have received it yet, the
        new content simply replaces the old one.
        """
        with self._db.tx() as conn:
            row = conn.execute("SELECT content_hash FROM editions WHERE name = ?", (edition,)).fetchone()
            if row is None:
                added = conn.execute(
                    "INSERT INTO editions (name, newsletter, period, content_hash, subject, created_at) "
                    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO NOTHING",
                    (edition, newsletter, period, content_hash, subject, now()),
                ).rowcount
                if added:
                    return
                # Another --worker run began it this moment: its content is checked like any earlier one's.
                row = conn.execute("SELECT content_hash FROM editions WHERE name = ?", (edition,)).fetchone()
            if row[0] == content_hash:
                return
            self.check_content(edition, content_hash, allow_changed)
            conn.execute(
                "UPDATE editions SET content_hash = ?, subject = ?, finished_at = NULL WHERE name = ?",
                (content_hash, subject, edition),
            )

    def check_content(self, edition: str, content_hash: str, allow_changed: bool = False) -> None:
        """Raise the content-change refusal (see begin_edition) if it applies; reads only."""
        row = self._db.read("SELECT id, content_hash FROM editions WHERE name = ?", (edition,)).fetchone()
        if row is None or row[1] == content_hash or allow_changed:
            return
        reached = self._db.read(f"SELECT count(*) FROM recipients r WHERE edition = ? AND {REACHED}", (row[0],))
        count = reached.fetchone()[0]
        if count:
            raise LedgerError(
                f"edition {edition} was already sent to {count} recipients with different content "
                f"(hash {_short(row[1])} vs {_short(content_hash)}); nothing sent. Re-run with --allow-changed "
                "to send the new content to the remaining recipients, or use a new period"
            )

    def record_build(self, edition: str, item_ids: Sequence[str], folder: str, content_hash: str | None = None) -> bool:
        """Remember the build folder an edition is sent from and the item ids it carries (for digest retry and
        --if-new). With `content_hash`, only if it is the edition's content (a refused build is not recorded).
        Returns whether anything was recorded (False: no such edition, or another content)."""
        sql = "UPDATE editions SET build_folder = ?, item_ids = ? WHERE name = ?"
        params: list[object] = [folder, json.dumps(list(item_ids)), edition]
        if content_hash is not None:
            sql += " AND content_hash = ?"
            params.append(content_hash)
        with self._db.tx() as conn:
            return conn.execute(sql, params).rowcount > 0

    def start_run(self, edition: str, backend: str, lease: float | None = None) -> int:
        """Register a send run; its id scopes which pending rows this run may send (see add_recipients).
        `lease`: a --worker run, alive for that many seconds from this commit on (leases.py renews it)."""
        until, params = ("NULL", ()) if lease is None else (self._db.clock, (lease,))
        with self._db.tx() as conn:
            ed = edition_key(conn, edition)
            if ed is None:
                raise LedgerError(f"start_run: no edition {edition} in the ledger (begin_edition first)")
            cur = conn.execute(
                "INSERT INTO runs (edition, backend, pid, started_at, lease_until) "
                f"VALUES (?, ?, ?, ?, {until}) RETURNING id",
                (ed, backend, os.getpid(), now(), *params),
            )
            return int(cur.fetchone()[0])

    def finish_run(self, run_id: int, outcome: str) -> None:
        """Close a run with its outcome: done, partial, error or declined (a run that died is found later).
        Space freed by the run (the indexes of rows it sent) goes back to the file system."""
        with self._db.tx() as conn:
            conn.execute("UPDATE runs SET finished_at = ?, outcome = ? WHERE id = ?", (now(), outcome, run_id))
        self._db.release_free_pages()

    def finish_edition_if_done(self, edition: str) -> bool:
        """Stamp finished_at when nobody is left pending, in flight or unknown. Returns whether it is done."""
        with self._db.tx() as conn:
            ed = edition_key(conn, edition)
            if ed is None:
                return False
            left = conn.execute(
                f"SELECT count(*) FROM recipients WHERE edition = ? AND state IN ({PENDING}, {IN_FLIGHT}, {UNKNOWN})",
                (ed,),
            ).fetchone()[0]
            if left:
                return False
            conn.execute("UPDATE editions SET finished_at = ? WHERE id = ?", (now(), ed))
            return True

    def add_recipients(
        self, edition: str, recipients: Iterable[Recipient], run_id: int | None = None, list_digest: str | None = None
    ) -> AddResult:
        """Stream a list into the edition: new people become pending, known ones keep their state.

        Memory stays bounded (CHUNK rows at a time, one commit per chunk). With `run_id`, every listed
        row is stamped with it, so a run sends only to people on *its* list: someone pending from an
        earlier, interrupted run who has since left the list or unsubscribed is not sent to.
        """
        row = self._db.read("SELECT id FROM editions WHERE name = ?", (edition,)).fetchone()
        if row is None:
            raise LedgerError(f"add_recipients: no edition {edition} in the ledger (begin_edition first)")
        ed = int(row[0])
        if self.shared and run_id is not None and list_digest is not None:
            lister = self._list_or_wait(edition, ed, run_id, list_digest)
            if lister is not None:
                return AddResult(listed=lister[1], added=0, listed_by=lister[0])
        before = self._edition_size(ed)
        listed = 0
        it = iter(recipients)
        while chunk := list(islice(it, CHUNK)):
            rows = staged(chunk)
            listed += len(rows)
            with self._db.tx() as conn:
                if self.shared:  # side by side, never while a dead run's rows change lists (recover_expired)
                    self._db.serialise(conn, f"list:{ed}", shared=True)
                self._db.stage(conn, rows)
                conn.execute(_ADD[0])
                conn.execute(_ADD[1])
                if self.shared and run_id is not None:
                    conn.execute(_ADD_SHARED, (ed, run_id))
                    self._join_list(conn, ed, run_id)
                else:
                    conn.execute(_ADD[2], (ed, run_id))
        if self.shared and run_id is not None and list_digest is not None:
            with self._db.tx() as conn:  # the workers waiting for this list go on now
                conn.execute("UPDATE runs SET listed = ? WHERE id = ?", (listed, run_id))
        return AddResult(listed=listed, added=self._edition_size(ed) - before)

    def _list_or_wait(self, edition: str, ed: int, run_id: int, list_digest: str) -> tuple[int, int] | None:
        """A --worker run given the list `list_digest`: None when it is to add the list itself (no live worker run
        adds or added it); else, once that run has added it, (its id, how many it listed). A run that dies
        while adding is recovered (its rows join this run's list) and this run adds the list after all."""
        while True:
            with self._db.tx() as conn:
                self._db.serialise(conn, f"lister:{ed}")  # two workers starting together: one of them lists
                row = conn.execute(
                    f"SELECT id, listed, lease_until >= {self._db.clock} FROM runs WHERE edition = ? "
                    "AND list_digest = ? AND outcome IS NULL AND id <> ? ORDER BY id LIMIT 1",
                    (0.0, ed, list_digest, run_id),
                ).fetchone()
                if row is None:
                    conn.execute("UPDATE runs SET list_digest = ? WHERE id = ?", (list_digest, run_id))
                    return None
            if row[1] is not None:
                return int(row[0]), int(row[1])
            if not row[2]:  # another worker may be recovering it this moment: look again after the pause
                self.recover_expired(edition, heir=run_id)
            time.sleep(LIST_WAIT_POLL)

    if TYPE_CHECKING:  # batches.BatchesMixin's, beside this mixin in Ledger

        def recover_expired(self, edition: str, heir: int | None = None) -> int: ...

    def _join_list(self, conn: Conn, ed: int, run_id: int) -> None:
        """A worker's chunk: its pending rows on the list of no open worker run (an earlier run's) join its list.
        By id: joined with `stage`, a planner without statistics walks every pending row per staged one."""
        ids = [int(row[0]) for row in conn.execute(f"SELECT a.id FROM {STAGED}")]
        if ids:
            conn.execute(
                f"UPDATE recipients SET run = ? WHERE edition = ? AND state = {PENDING} "
                f"AND coalesce(run, 0) NOT IN ({WORKER_RUNS}) AND address IN ({', '.join('?' * len(ids))})",
                (run_id, ed, ed, *ids),
            )

    def _edition_size(self, ed: int) -> int:
        return int(self._db.read("SELECT count(*) FROM recipients WHERE edition = ?", (ed,)).fetchone()[0])
