"""Editions, runs and builds in the ledger, and streaming a recipients list into an edition."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import islice

from ..addresses import normalize_email
from ..errors import LedgerError
from ..models import Recipient
from .batches import REACHED, now
from .schema import Database

CHUNK = 5000  # rows per transaction while streaming a list in: bounded memory, few commits

# add_recipients: new people become pending; a corrected name may still reach people not yet sent (sent rows
# keep what they got). Row by row, or a chunk at once from a JSON array of [email_norm, email, name].
_ADD_UPSERT = (
    "ON CONFLICT (edition, email_norm) DO UPDATE SET run_id = excluded.run_id, "
    "name = CASE WHEN state IN ('pending', 'failed') THEN excluded.name ELSE name END"
)
_ADD_ROW = (
    "INSERT INTO recipients (edition, email_norm, email, name, state, run_id, updated_at) "
    "VALUES (?, ?, ?, ?, 'pending', ?, ?) " + _ADD_UPSERT
)
_ADD_JSON = (
    "INSERT INTO recipients (edition, email_norm, email, name, state, run_id, updated_at) "
    "SELECT ?, json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'), 'pending', "
    "?, ? FROM json_each(?) WHERE true " + _ADD_UPSERT  # WHERE: the parser needs it before an upsert clause
)


@dataclass(frozen=True)
class AddResult:
    """What streaming a recipients list into an edition did."""

    listed: int  # recipients in this list
    added: int  # of them, new to the edition (now pending)


def _short(content_hash: str) -> str:
    return content_hash.removeprefix("sha256:")[:12] + "…"


class EditionsMixin:
    """Editions, runs, builds and lists (Ledger inherits them)."""

    _db: Database

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
            row = conn.execute("SELECT content_hash FROM editions WHERE id = ?", (edition,)).fetchone()
            if row is None:
                conn.execute(
                    "INSERT INTO editions (id, newsletter, period, content_hash, subject, created_at) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (edition, newsletter, period, content_hash, subject, now()),
                )
                return
            if row[0] == content_hash:
                return
            self.check_content(edition, content_hash, allow_changed)
            conn.execute(
                "UPDATE editions SET content_hash = ?, subject = ?, finished_at = NULL WHERE id = ?",
                (content_hash, subject, edition),
            )

    def check_content(self, edition: str, content_hash: str, allow_changed: bool = False) -> None:
        """Raise the content-change refusal (see begin_edition) if it applies; reads only."""
        row = self._db.read("SELECT content_hash FROM editions WHERE id = ?", (edition,)).fetchone()
        if row is None or row[0] == content_hash or allow_changed:
            return
        reached = self._db.read(
            f"SELECT count(*) FROM recipients r WHERE edition = ? AND {REACHED}", (edition,)
        ).fetchone()[0]
        if reached:
            raise LedgerError(
                f"edition {edition} was already sent to {reached} recipients with different content "
                f"(hash {_short(row[0])} vs {_short(content_hash)}); nothing sent. Re-run with --allow-changed "
                "to send the new content to the remaining recipients, or use a new period"
            )

    def record_build(self, edition: str, item_ids: Sequence[str], folder: str, content_hash: str | None = None) -> bool:
        """Remember the build folder an edition is sent from and the item ids it carries (for digest retry and
        --if-new). With `content_hash`, only if it is the edition's content (a refused build is not recorded).
        Returns whether anything was recorded (False: no such edition, or another content)."""
        sql = "UPDATE editions SET build_folder = ?, item_ids = ? WHERE id = ?"
        params: list[object] = [folder, json.dumps(list(item_ids)), edition]
        if content_hash is not None:
            sql += " AND content_hash = ?"
            params.append(content_hash)
        with self._db.tx() as conn:
            return conn.execute(sql, params).rowcount > 0

    def start_run(self, edition: str, backend: str) -> int:
        """Register a send run; its id scopes which pending rows this run may send (see add_recipients)."""
        with self._db.tx() as conn:
            cur = conn.execute(
                "INSERT INTO runs (edition, backend, pid, started_at) VALUES (?, ?, ?, ?) RETURNING id",
                (edition, backend, os.getpid(), now()),
            )
            return int(cur.fetchone()[0])

    def finish_run(self, run_id: int, outcome: str) -> None:
        """Close a run with its outcome: done, partial, error or declined (a run that died is found later)."""
        with self._db.tx() as conn:
            conn.execute("UPDATE runs SET finished_at = ?, outcome = ? WHERE id = ?", (now(), outcome, run_id))

    def finish_edition_if_done(self, edition: str) -> bool:
        """Stamp finished_at when nobody is left pending, in flight or unknown. Returns whether it is done."""
        with self._db.tx() as conn:
            left = conn.execute(
                "SELECT count(*) FROM recipients WHERE edition = ? AND state IN ('pending', 'in_flight', 'unknown')",
                (edition,),
            ).fetchone()[0]
            if left:
                return False
            conn.execute("UPDATE editions SET finished_at = ? WHERE id = ?", (now(), edition))
            return True

    def add_recipients(self, edition: str, recipients: Iterable[Recipient], run_id: int | None = None) -> AddResult:
        """Stream a list into the edition: new people become pending, known ones keep their state.

        Memory stays bounded (CHUNK rows at a time, one commit per chunk). With `run_id`, every listed
        row is stamped with it, so a run sends only to people on *its* list: someone pending from an
        earlier, interrupted run who has since left the list or unsubscribed is not sent to.

        A chunk goes in as one statement over a JSON array (json_each) where SQLite has the JSON functions:
        a fifth less time than a statement per row, and SQLite works with the GIL released for the whole
        chunk, so a thread reading the list ahead (send.prepare_send) runs meanwhile.
        """
        before = self._edition_size(edition)
        listed = 0
        it = iter(recipients)
        bulk = self._db.json_functions
        while chunk := list(islice(it, CHUNK)):
            listed += len(chunk)
            at = now()
            rows = [(normalize_email(r.email), r.email.strip(), r.name) for r in chunk]
            data = json.dumps(rows, ensure_ascii=False) if bulk else ""
            with self._db.tx() as conn:
                if bulk and "\\u0000" not in data:  # (NUL in a value: row by row, SQLite's text stops at NUL)
                    conn.execute(_ADD_JSON, (edition, run_id, at, data))
                else:
                    conn.executemany(_ADD_ROW, ((edition, *row, run_id, at) for row in rows))
        return AddResult(listed=listed, added=self._edition_size(edition) - before)

    def _edition_size(self, edition: str) -> int:
        return int(self._db.read("SELECT count(*) FROM recipients WHERE edition = ?", (edition,)).fetchone()[0])
