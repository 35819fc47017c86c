"""The ledger the send loop sees (`BatchStore`, a Protocol) and its SQLite implementation (`Ledger`)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

from ..deliver.base import BatchResult
from ..errors import NoLedger
from ..models import Recipient
from .batches import BatchesMixin, PendingRow, UnknownAction
from .db import Database, is_url
from .editions import AddResult, EditionsMixin
from .leases import Lease
from .pages import PagesMixin
from .schema import SqliteDatabase
from .transfer import TransferMixin
from .views import BatchInfo, EditionSummary, ViewsMixin


class BatchStore(Protocol):
    """What send.py asks of a ledger, and nothing more. The rules behind each call are in batches.py.

    An implementation must keep every call one transaction keyed by edition and batch id (several
    batches may be in flight at once, and calls may come from several threads), and make claim_batch
    and promote durable before they return.
    """

    path: Path  # shown in messages (a PostgreSQL URL without its password)

    def require_lock(self, newsletter: str) -> None: ...

    # --- a run of an edition
    def begin_edition(
        self, edition: str, newsletter: str, period: str, content_hash: str, subject: str, allow_changed: bool = False
    ) -> None: ...
    def check_content(self, edition: str, content_hash: str, allow_changed: bool = False) -> None: ...
    def edition(self, edition: str) -> EditionSummary | None: ...
    def start_run(self, edition: str, backend: str) -> int: ...
    def add_recipients(
        self, edition: str, recipients: Iterable[Recipient], run_id: int | None = None, list_digest: str | None = None
    ) -> AddResult: ...
    def counts(self, edition: str, run_id: int | None = None) -> dict[str, int]: ...
    def states_of(self, edition: str, emails: Sequence[str]) -> dict[str, str]: ...
    def unknown_batches(self, edition: str, include_in_flight: bool = False) -> list[BatchInfo]: ...
    def finish_run(self, run_id: int, outcome: str) -> None: ...
    def finish_edition_if_done(self, edition: str) -> bool: ...

    # --- the transitions (batches.py)
    def recover_in_flight(self, edition: str) -> int: ...
    def resolve_unknown(self, edition: str, action: UnknownAction, batch_ids: Sequence[str] | None = None) -> int: ...
    def retry_failed(self, edition: str) -> int: ...
    def next_batch(self, edition: str, size: int, run_id: int | None = None) -> list[PendingRow]: ...
    def claim_batch(
        self, edition: str, size: int, batch_id: str, backend: str, content_hash: str, run_id: int | None = None
    ) -> list[PendingRow]: ...
    def reserve_batch(self, edition: str, size: int, batch_id: str, run_id: int | None = None) -> list[PendingRow]: ...
    def promote(
        self,
        edition: str,
        batch_id: str,
        size: int,
        backend: str,
        content_hash: str,
        run_id: int | None = None,
        done: tuple[str, str] | None = None,
    ) -> None: ...
    def drop_reservation(self, batch_id: str) -> int: ...
    def record(self, edition: str, batch_id: str, result: BatchResult, all_sent: bool = False) -> dict[str, int]: ...
    def mark_batch_unknown(self, batch_id: str, error: str, provider_id: str = "") -> int: ...
    def release(self, batch_id: str, error: str = "") -> int: ...


class Ledger(BatchesMixin, EditionsMixin, ViewsMixin, PagesMixin, TransferMixin):
    """One SQLite file, one connection. Open with `Ledger.open(path)`; close (or use as a context manager)."""

    def __init__(self, db: Database):
        self._db = db
        self.path = db.path
        self.shared = False
        self._lease_seconds = 0.0
        self._lease: Lease | None = None

    @classmethod
    def open(cls, path: Path) -> Ledger:
        """Open (creating if needed) and migrate the ledger at `path`; refuse one from a newer digest."""
        return cls(SqliteDatabase.open(path))

    @classmethod
    def open_store(cls, location: Path | str) -> Ledger:
        """The ledger at `location`: a SQLite file's path, or a postgresql:// URL (the `postgres` extra)."""
        if is_url(location):
            from .postgres import PostgresDatabase

            return cls(PostgresDatabase.open(str(location)))
        return cls.open(Path(location))

    @classmethod
    def open_existing(cls, location: Path | str) -> Ledger:
        """Open the ledger for reading what was sent; NoLedger if nothing was ever sent with this SQLite file."""
        if not is_url(location) and not Path(location).exists():
            raise NoLedger(f"{location}: no ledger yet; nothing has been sent. 'digest send' creates it")
        return cls.open_store(location)

    @contextmanager
    def newsletter_lock(self, newsletter: str, worker_lease: float | None = None) -> Iterator[None]:
        """Hold one run of `newsletter` at a time (SQLite: a file lock beside the ledger; PostgreSQL: an
        advisory lock); LockedError at once when another run holds it.

        `worker_lease` (seconds; PostgreSQL): a --worker run, one of several sending an edition together.
        The lock is shared with the other workers only; the run started under it (start_run) holds a lease
        of that length, renewed until it finishes; only a run whose lease ran out is recovered."""
        with self._db.newsletter_lock(newsletter, shared=worker_lease is not None):
            self.shared, self._lease_seconds = worker_lease is not None, worker_lease or 0.0
            try:
                yield
            finally:
                self._stop_lease()
                self.shared = False

    def start_run(self, edition: str, backend: str, lease: float | None = None) -> int:
        if not self.shared:
            return super().start_run(edition, backend, lease)
        self._stop_lease()
        run = super().start_run(edition, backend, self._lease_seconds)  # alive from its first commit
        self._lease = Lease(self._db, run, self._lease_seconds)
        return run

    def finish_run(self, run_id: int, outcome: str) -> None:
        if self._lease is not None and self._lease.run == run_id:
            self._stop_lease()
        super().finish_run(run_id, outcome)

    def claim_batch(
        self,
        edition: str,
        size: int,
        batch_id: str,
        backend: str,
        content_hash: str,
        run_id: int | None = None,
    ) -> list[PendingRow]:
        rows = super().claim_batch(edition, size, batch_id, backend, content_hash, run_id)
        if rows or not self.shared:
            return rows
        # Out of work: what a worker whose lease ran out held (its reserved rows, its list) is this run's to send.
        self.recover_expired(edition, heir=run_id)
        return super().claim_batch(edition, size, batch_id, backend, content_hash, run_id)

    def _stop_lease(self) -> None:
        if self._lease is not None:
            self._lease.stop()
            self._lease = None

    def require_lock(self, newsletter: str) -> None:
        """Raise unless this process holds `newsletter`'s lock (recovering in-flight rows needs it)."""
        self._db.require_lock(newsletter)

    def vacuum(self) -> tuple[int, int]:
        """Reclaim free space (`digest ledger vacuum`); returns the size in bytes before and after."""
        return self._db.vacuum()

    @property
    def schema_version(self) -> int:
        return self._db.version

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
