"""Reading the ledger: counts, history, status and failures, as typed, frozen results."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..models import Recipient
from .batches import (
    ADDRESS,
    CODES,
    EMAIL,
    EMAIL_NORM,
    FAILED,
    IN_FLIGHT,
    NAMES,
    REACHED,
    STAGED,
    STATES,
    UNKNOWN,
    run_scope,
    staged,
)
from .db import Database

_SUMMARY = "SELECT name, newsletter, period, subject, content_hash, created_at, finished_at FROM editions"


@dataclass(frozen=True)
class EditionSummary:
    """One edition as `digest history` / `digest status` show it."""

    edition: str
    newsletter: str
    period: str
    subject: str
    content_hash: str
    created_at: str
    finished_at: str | None
    counts: dict[str, int] = field(default_factory=dict)  # recipients per state, every state present

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "edition": self.edition,
            "newsletter": self.newsletter,
            "period": self.period,
            "subject": self.subject,
            "content_hash": self.content_hash,
            "created_at": self.created_at,
            "finished_at": self.finished_at,
            "counts": dict(self.counts),
            "total": self.total,
        }


@dataclass(frozen=True)
class Failure:
    """A recipient the provider refused (state `failed`), with its reason."""

    email: str
    error: str
    batch_id: str | None
    updated_at: str


@dataclass(frozen=True)
class BatchInfo:
    """One batch: what was handed to which backend, and what came of it."""

    id: str
    edition: str
    backend: str
    state: str  # in_flight | done | unknown | released | resolved
    size: int
    provider_id: str
    error: str
    content_hash: str
    created_at: str
    updated_at: str


@dataclass(frozen=True)
class RunInfo:
    """One `digest send` run of an edition."""

    id: int
    backend: str
    started_at: str
    finished_at: str | None
    outcome: str | None  # done | partial | error | declined | died; None while it runs


@dataclass(frozen=True)
class EditionStatus:
    """Everything `digest status` shows for an edition."""

    summary: EditionSummary
    unknown_batches: tuple[BatchInfo, ...]
    failures: tuple[Failure, ...]
    batches: int
    runs: tuple[RunInfo, ...]

    def to_dict(self) -> dict[str, Any]:
        """`digest status --json`: the counts both under `counts` and under their own names."""
        return {
            **self.summary.counts,
            **self.summary.to_dict(),
            "unknown_batches": [
                {"id": b.id, "backend": b.backend, "size": b.size, "provider_id": b.provider_id, "error": b.error}
                for b in self.unknown_batches
            ],
            "failures": [{"email": f.email, "error": f.error, "batch_id": f.batch_id} for f in self.failures],
            "batches": self.batches,
            "runs": [
                {
                    "id": r.id,
                    "backend": r.backend,
                    "started_at": r.started_at,
                    "finished_at": r.finished_at,
                    "outcome": r.outcome,
                }
                for r in self.runs
            ],
        }


class ViewsMixin:
    """Read-only queries (Ledger inherits them)."""

    _db: Database
    shared: bool  # a --worker run: "a run's list" is the list of every open worker run (batches.run_scope)

    def _key(self, edition: str) -> int | None:
        row = self._db.read("SELECT id FROM editions WHERE name = ?", (edition,)).fetchone()
        return None if row is None else int(row[0])

    def counts(self, edition: str, run_id: int | None = None) -> dict[str, int]:
        """Recipients per state, every state present (0 when none); with `run_id`, only that run's list."""
        out = dict.fromkeys(STATES, 0)
        ed = self._key(edition)
        if ed is None:
            return out
        scope, params = run_scope(ed, run_id, self.shared)
        for state, n in self._db.read(
            f"SELECT state, count(*) FROM recipients WHERE edition = ?{scope} GROUP BY state", (ed, *params)
        ):
            out[NAMES[state]] = n
        return out

    def edition(self, edition: str) -> EditionSummary | None:
        row = self._db.read(f"{_SUMMARY} WHERE name = ?", (edition,)).fetchone()
        return None if row is None else self._summary(row)

    def history(self, newsletter: str | None = None, limit: int | None = None) -> list[EditionSummary]:
        """Editions, newest first (optionally of one newsletter)."""
        sql = _SUMMARY
        params: list[object] = []
        if newsletter is not None:
            sql += " WHERE newsletter = ?"
            params.append(newsletter)
        sql += " ORDER BY created_at DESC, id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return [self._summary(row) for row in self._db.read(sql, params).fetchall()]

    def _summary(self, row: tuple[str, str, str, str, str, str, str | None]) -> EditionSummary:
        return EditionSummary(*row, counts=self.counts(row[0]))

    def latest_edition(self, newsletter: str) -> str | None:
        latest = self.history(newsletter, limit=1)
        return latest[0].edition if latest else None

    def failures(self, edition: str, limit: int | None = 100) -> list[Failure]:
        sql = (
            f"SELECT {EMAIL}, coalesce(r.error, b.error, ''), b.name, coalesce(b.updated_at, '') "
            f"FROM recipients r {ADDRESS} LEFT JOIN batches b ON b.id = r.batch "
            f"WHERE r.edition = ? AND r.state = {FAILED} ORDER BY r.address"
        )
        params: list[object] = [self._key(edition)]
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return [Failure(*row) for row in self._db.read(sql, params).fetchall()]

    def batches(self, edition: str, state: str | None = None) -> list[BatchInfo]:
        """Batches of an edition in the order they were made (optionally only those in `state`); a
        reservation (not handed over) is not a batch yet."""
        sql = (
            "SELECT name, backend, state, size, coalesce(provider_id, ''), coalesce(error, ''), "
            "content_hash, created_at, updated_at FROM batches WHERE edition = ? AND state <> 'reserved'"
        )
        params: list[object] = [self._key(edition)]
        if state is not None:
            sql += " AND state = ?"
            params.append(state)
        rows = self._db.read(sql + " ORDER BY id", params).fetchall()
        return [BatchInfo(row[0], edition, *row[1:]) for row in rows]

    def unknown_batches(self, edition: str, include_in_flight: bool = False) -> list[BatchInfo]:
        """Batches that still have unknown recipients (what the user must decide about); with
        `include_in_flight`, also those a dead run left in flight (read-only callers: dry runs)."""
        states = f"({UNKNOWN}, {IN_FLIGHT})" if include_in_flight else f"({UNKNOWN})"
        rows = self._db.read(
            f"SELECT DISTINCT b.name FROM recipients r JOIN batches b ON b.id = r.batch "
            f"WHERE r.edition = ? AND r.state IN {states}",
            (self._key(edition),),
        ).fetchall()
        names = {r[0] for r in rows}
        return [b for b in self.batches(edition) if b.id in names]

    def runs(self, edition: str) -> list[RunInfo]:
        rows = self._db.read(
            "SELECT id, backend, started_at, finished_at, outcome FROM runs WHERE edition = ? ORDER BY id",
            (self._key(edition),),
        ).fetchall()
        return [RunInfo(*row) for row in rows]

    def status(self, edition: str, limit: int = 20) -> EditionStatus | None:
        """Everything `digest status` shows for an edition; None if there is no such edition."""
        summary = self.edition(edition)
        if summary is None:
            return None
        return EditionStatus(
            summary=summary,
            unknown_batches=tuple(self.unknown_batches(edition)),
            failures=tuple(self.failures(edition, limit)),
            batches=len(self.batches(edition)),
            runs=tuple(self.runs(edition)),
        )

    def recipients_in(self, edition: str, state: str) -> Iterator[tuple[str, str | None]]:
        """(email, batch id) of every recipient in `state`, streamed (for reports and audits)."""
        yield from self._db.read(
            f"SELECT {EMAIL}, b.name FROM recipients r {ADDRESS} LEFT JOIN batches b ON b.id = r.batch "
            "WHERE r.edition = ? AND r.state = ? ORDER BY r.address",
            (self._key(edition), CODES[state]),
        )

    def states_of(self, edition: str, emails: Sequence[str]) -> dict[str, str]:
        """email_norm -> state for those of `emails` already in the edition (read only; for dry runs)."""
        ed = self._key(edition)
        if ed is None:
            return {}
        with self._db.staging() as conn:
            self._db.stage(conn, staged(Recipient(e) for e in emails))
            rows = conn.execute(
                f"SELECT {EMAIL_NORM}, r.state FROM {STAGED} JOIN recipients r ON r.edition = ? AND r.address = a.id",
                (ed,),
            ).fetchall()
        return {norm: NAMES[state] for norm, state in rows}

    def build_folder(self, edition: str) -> str | None:
        """The build folder recorded for an edition (record_build), or None."""
        row = self._db.read("SELECT build_folder FROM editions WHERE name = ?", (edition,)).fetchone()
        return None if row is None or row[0] is None else str(row[0])

    def sent_item_ids(self, newsletter: str) -> set[str] | None:
        """Item ids of every edition of `newsletter` that reached anyone (sent, or maybe: unknown);
        None when no edition of it has reached anyone yet."""
        rows = self._db.read(
            "SELECT item_ids FROM editions e WHERE newsletter = ? AND EXISTS ("
            f"SELECT 1 FROM recipients r WHERE r.edition = e.id AND {REACHED})",
            (newsletter,),
        ).fetchall()
        if not rows:
            return None
        return {str(i) for (ids,) in rows if ids for i in json.loads(ids)}
