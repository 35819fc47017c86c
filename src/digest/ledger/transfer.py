"""Moving a ledger between stores (SQLite <-> PostgreSQL) or through a file, without losing a row.

The format is JSON lines, one record per line, in this order: `edition`, `run`, `batch`, `address` (in the
ledger's sending order), `recipient`. Names, not the stores' integer keys, tie them together (run ids are
kept: batch names carry them), so a ledger imported elsewhere keeps every state, attempt, error and
provider id, and the order batches go out in.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

from ..errors import LedgerError
from .batches import ADDRESS, CODES, NAMES, STAGED
from .db import Database

CHUNK = 5000
_EDITION = ("name", "newsletter", "period", "content_hash", "subject", "created_at", "finished_at", "build_folder",
            "item_ids")  # fmt: skip
_RUN = ("id", "edition", "backend", "pid", "started_at", "finished_at", "outcome", "lease_until")
_BATCH = ("name", "edition", "run", "backend", "state", "content_hash", "provider_id", "size", "error", "created_at",
          "updated_at")  # fmt: skip


class TransferMixin:
    """export / import_rows (Ledger inherits them)."""

    _db: Database

    def export(self) -> Iterator[dict[str, Any]]:
        """Every record of the ledger, in import order (see the module's docstring)."""
        db = self._db
        for row in db.read(f"SELECT {', '.join(_EDITION)} FROM editions ORDER BY id").fetchall():
            yield {"type": "edition", **dict(zip(_EDITION, row, strict=True))}
        runs = db.read(
            "SELECT r.id, e.name, r.backend, r.pid, r.started_at, r.finished_at, r.outcome, r.lease_until "
            "FROM runs r JOIN editions e ON e.id = r.edition ORDER BY r.id"
        ).fetchall()
        for row in runs:
            yield {"type": "run", **dict(zip(_RUN, row, strict=True))}
        batches = db.read(
            "SELECT b.name, e.name, b.run, b.backend, b.state, b.content_hash, b.provider_id, b.size, b.error, "
            "b.created_at, b.updated_at FROM batches b JOIN editions e ON e.id = b.edition ORDER BY b.id"
        ).fetchall()
        for row in batches:
            yield {"type": "batch", **dict(zip(_BATCH, row, strict=True))}
        last = 0
        while rows := db.read(
            "SELECT a.id, a.local, d.name, a.email, a.name FROM addresses a JOIN domains d ON d.id = a.domain "
            "WHERE a.id > ? ORDER BY a.id LIMIT ?",
            (last, CHUNK),
        ).fetchall():
            last = rows[-1][0]
            for _, local, domain, email, name in rows:
                yield {"type": "address", "local": local, "domain": domain, "email": email, "name": name}
        last_key: tuple[int, int] = (0, 0)
        while rows := db.read(
            "SELECT r.edition, r.address, e.name, a.local, d.name, r.state, r.run, b.name, r.attempts, r.error "
            f"FROM recipients r JOIN editions e ON e.id = r.edition {ADDRESS} LEFT JOIN batches b ON b.id = r.batch "
            "WHERE r.edition > ? OR (r.edition = ? AND r.address > ?) ORDER BY r.edition, r.address LIMIT ?",
            (last_key[0], last_key[0], last_key[1], CHUNK),
        ).fetchall():
            last_key = (rows[-1][0], rows[-1][1])
            for _, _, edition, local, domain, state, run, batch, attempts, error in rows:
                yield {"type": "recipient", "edition": edition, "local": local, "domain": domain,
                       "state": NAMES[state], "run": run, "batch": batch, "attempts": attempts,
                       "error": error}  # fmt: skip

    def import_rows(self, records: Iterable[dict[str, Any]]) -> dict[str, int]:
        """Load an export into this ledger, which must be empty; returns how many records of each type."""
        db = self._db
        if db.read("SELECT count(*) FROM editions").fetchone()[0]:
            raise LedgerError(f"{db.path}: the ledger to import into already holds editions; import into a new one")
        counts = dict.fromkeys(("edition", "run", "batch", "address", "recipient"), 0)
        pending: list[dict[str, Any]] = []
        kind = ""
        for record in records:
            if record.get("type") not in counts:
                raise LedgerError(
                    f"ledger import: unknown record type {record.get('type')!r} (line {sum(counts.values()) + 1})"
                )
            if record["type"] != kind or len(pending) >= CHUNK:
                self._import(kind, pending)
                pending = []
                kind = record["type"]
            pending.append(record)
            counts[kind] += 1
        self._import(kind, pending)
        return counts

    def _import(self, kind: str, records: list[dict[str, Any]]) -> None:
        if not records:
            return
        with self._db.tx() as conn:
            if kind == "edition":
                conn.executemany(
                    f"INSERT INTO editions ({', '.join(_EDITION)}) VALUES ({', '.join('?' * len(_EDITION))})",
                    [tuple(r[k] for k in _EDITION) for r in records],
                )
            elif kind == "run":
                conn.executemany(
                    "INSERT INTO runs (id, edition, backend, pid, started_at, finished_at, outcome, lease_until) "
                    "SELECT ?, id, ?, ?, ?, ?, ?, ? FROM editions WHERE name = ?",
                    [(r["id"], r["backend"], r["pid"], r["started_at"], r["finished_at"], r["outcome"],
                      r.get("lease_until"), r["edition"]) for r in records],
                )  # fmt: skip
                self._db.sync_ids(conn, "runs")
            elif kind == "batch":
                columns = [k for k in _BATCH if k != "edition"]
                conn.executemany(
                    f"INSERT INTO batches (edition, {', '.join(columns)}) "
                    f"SELECT id, {', '.join('?' * len(columns))} FROM editions WHERE name = ?",
                    [(*(r[k] for k in columns), r["edition"]) for r in records],
                )
            elif kind == "address":
                self._db.stage(conn, [(r["local"], r["domain"], r["email"], r["name"]) for r in records])
                conn.execute("INSERT INTO domains (name) SELECT DISTINCT domain FROM stage WHERE true "
                             "ON CONFLICT (name) DO NOTHING")  # fmt: skip
                conn.execute(
                    "INSERT INTO addresses (domain, local, email, name) SELECT d.id, s.local, s.email, s.name "
                    "FROM stage s JOIN domains d ON d.name = s.domain ORDER BY s.pos"
                )
            else:
                self._db.stage(conn, [(r["local"], r["domain"], None, "") for r in records])
                ids = [row[0] for row in conn.execute(f"SELECT a.id FROM {STAGED} ORDER BY s.pos").fetchall()]
                if len(ids) != len(records):
                    raise LedgerError("ledger import: a recipient's address is not in the file's address records")
                editions = dict(conn.execute("SELECT name, id FROM editions").fetchall())
                batches = dict(conn.execute("SELECT name, id FROM batches").fetchall())
                conn.executemany(
                    "INSERT INTO recipients (edition, address, state, run, batch, attempts, error) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [(editions[r["edition"]], address, CODES[r["state"]], r["run"],
                      batches.get(r["batch"]) if r["batch"] else None, r["attempts"], r["error"])
                     for r, address in zip(records, ids, strict=True)],
                )  # fmt: skip


def dumps(record: dict[str, Any]) -> str:
    """One line of the export file."""
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"))
