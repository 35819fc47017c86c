"""The SQLite side of the ledger: opening the file, its pragmas, transactions, running the migrations.

Everything particular to SQLite lives here (`SqliteDatabase` implements db.Database; a PostgreSQL
adapter sits beside it); the ledger's queries elsewhere go through that Protocol only.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, TypeVar

from .. import lock
from ..errors import LedgerError, UsageError
from .db import Conn, StagedRow, is_url_as_path
from .migrations import MIGRATIONS, SCHEMA_VERSION, statements

BUSY_TIMEOUT_MS = 30_000  # two newsletters may share one ledger file; writers queue instead of failing
T = TypeVar("T")


class SqliteDatabase:
    """One SQLite connection to a ledger file (db.Database): `tx()` for writes, `read()` for queries, `close()`.

    Calls may come from several threads (a send loop with requests in flight): one lock serialises them,
    as SQLite would anyway (one writer at a time).
    """

    greatest = "max"

    def __init__(self, path: Path, conn: sqlite3.Connection):
        self.path = path
        self.conn = conn
        self._lock = threading.RLock()

    @classmethod
    def open(cls, path: Path) -> SqliteDatabase:
        """Open (creating if needed) and migrate the ledger at `path`; refuse one from a newer digest."""
        path = Path(path)
        if is_url_as_path(path):
            raise LedgerError(f"{path}: a PostgreSQL URL, not a SQLite file; open it with Ledger.open_store")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: we issue BEGIN/COMMIT ourselves, so every commit point is visible
            # in the code, which is the whole point of a write-ahead ledger.
            conn = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False)
        except (OSError, sqlite3.Error) as exc:
            raise LedgerError(f"{path}: cannot open the ledger ({exc}); check 'ledger_path' in digest.toml") from None
        try:
            version = _when_free(lambda: _configure(path, conn))
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise LedgerError(
                f"{path}: not a digest ledger ({exc}); point 'ledger_path' at the right file or move this one away"
            ) from None
        except LedgerError:
            conn.close()
            raise
        if version > SCHEMA_VERSION:
            conn.close()
            raise LedgerError(
                f"{path}: ledger schema version {version} is newer than this digest understands ({SCHEMA_VERSION}); "
                "upgrade digest to the version that wrote it, nothing was changed"
            )
        db = cls(path, conn)
        try:
            db._migrate(version)
            db._finish_open()
        except LedgerError:
            conn.close()
            raise
        return db

    def _finish_open(self) -> None:
        # Incremental auto-vacuum: pages a finished run freed (the indexes of rows it sent) go back to the file
        # system (release_free_pages). A ledger made before it is rewritten once, now (VACUUM).
        if self.conn.execute("PRAGMA auto_vacuum").fetchone()[0] != 2:
            try:
                self.conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
                self.conn.execute("VACUUM")
            except sqlite3.OperationalError as exc:
                raise LedgerError(
                    f"{self.path}: could not compact the ledger after upgrading it ({exc}); check free disk space "
                    "(it needs about the ledger's size once) and re-run"
                ) from None
        # A connection's scratch table for a list chunk or a set of addresses (batches.stage).
        self.conn.execute(
            "CREATE TEMP TABLE IF NOT EXISTS stage (pos INTEGER PRIMARY KEY, local TEXT NOT NULL, "
            "domain TEXT NOT NULL, email TEXT, name TEXT NOT NULL DEFAULT '')"
        )

    def _migrate(self, version: int) -> None:
        for target in range(version + 1, SCHEMA_VERSION + 1):
            try:
                step = MIGRATIONS[target - 1]
                with self.tx() as conn:
                    # Read again under the write lock: another process opening the file at the same moment
                    # may have taken this step since `version` was read.
                    if conn.execute("PRAGMA user_version").fetchone()[0] >= target:
                        continue
                    if callable(step):
                        step(conn)
                    else:
                        for statement in statements(step):
                            conn.execute(statement)
                    # PRAGMA inside the transaction: the new version and the new schema commit together.
                    conn.execute(f"PRAGMA user_version = {target}")
            except (sqlite3.Error, LedgerError) as exc:
                raise LedgerError(
                    f"{self.path}: migrating the ledger to schema version {target} failed ({exc}); "
                    "the ledger is unchanged, restore it from a backup if it was edited by hand"
                ) from None

    @property
    def version(self) -> int:
        return int(self.read("PRAGMA user_version").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self.conn.close()

    def read(self, sql: str, params: Any = ()) -> sqlite3.Cursor:
        """A read outside any write transaction (WAL readers see the last commit)."""
        with self._lock:
            return self.conn.execute(sql, params)

    @contextmanager
    def staging(self) -> Iterator[sqlite3.Connection]:
        """The connection, for reads that use the TEMP table `stage` (writes to it touch no ledger page)."""
        with self._lock:
            yield self.conn

    skip_locked = ""  # one writer at a time: a claim never meets rows another is claiming
    clock = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ? || ' seconds')"

    def newsletter_lock(self, newsletter: str, shared: bool = False) -> AbstractContextManager[object]:
        if shared:  # pipeline.send_edition says so first, before anything is built
            raise UsageError(f"{self.path}: --worker runs need a PostgreSQL ledger (DIGEST_LEDGER_URL)")
        return lock.newsletter_lock(self.path, newsletter)

    def serialise(self, conn: Conn, name: str, shared: bool = False) -> None:
        """Nothing to do: SQLite has one writer at a time."""

    def require_lock(self, newsletter: str) -> None:
        lock.require_lock(self.path, newsletter)

    def sync_ids(self, conn: Conn, table: str) -> None:
        """Nothing to do: SQLite's next rowid already follows the largest."""

    def hint(self, index: str) -> str:
        # Without statistics SQLite's planner walks an edition's primary key (sorted like ORDER BY address)
        # past every sent row instead of the small partial index of pending ones: quadratic over a big list.
        return f"INDEXED BY {index}"

    def select_all(self, conn: Conn, columns: Sequence[str], source: str, params: Any = ()) -> list[Sequence[Any]]:
        """As one JSON array, which SQLite makes in one step: it gives the GIL up at every step, and while sender
        threads build requests the send loop's thread then waits for it back, once per row of a plain fetch."""
        named = ", ".join(f"{column} AS c{i}" for i, column in enumerate(columns))
        listed = ", ".join(f"c{i}" for i in range(len(columns)))
        sql = f"SELECT json_group_array(json_array({listed})) FROM (SELECT {named} {source})"
        return list(json.loads(conn.execute(sql, params).fetchone()[0]))

    def stage(self, conn: Conn, rows: Sequence[StagedRow]) -> None:
        """Replace the rows of the TEMP table `stage`."""
        conn.execute("DELETE FROM stage")
        conn.executemany("INSERT INTO stage (local, domain, email, name) VALUES (?, ?, ?, ?)", rows)

    def release_free_pages(self) -> None:
        """Give the file's free pages back to the file system (incremental auto-vacuum)."""
        # executescript: the pragma frees one page per step, and execute() would step it once.
        # Busy (another newsletter is writing): the next run's end frees them.
        with self._lock, contextlib.suppress(sqlite3.OperationalError):
            self.conn.executescript("PRAGMA incremental_vacuum;")

    def size(self) -> int:
        """Bytes on disk: the file and its write-ahead log."""
        wal = Path(f"{self.path}-wal")
        return self.path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)

    def vacuum(self) -> tuple[int, int]:
        """Rewrite the file without free space and empty the write-ahead log; returns the size before and after."""
        before = self.size()
        with self._lock:
            try:
                self.conn.execute("VACUUM")
                self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
            except sqlite3.OperationalError as exc:
                raise LedgerError(
                    f"{self.path}: cannot vacuum the ledger ({exc}); wait for running sends to finish and check "
                    "free disk space (it needs about the ledger's size once)"
                ) from None
        return before, self.size()

    @contextmanager
    def tx(self, durable: bool = False) -> Iterator[sqlite3.Connection]:
        """One write transaction. BEGIN IMMEDIATE takes the write lock up front (no upgrade deadlocks).

        `durable`: fsynced before it returns (the write-ahead mark; see the durability note in _configure).
        """
        with self._lock:
            if durable:
                self.conn.execute("PRAGMA synchronous = FULL")
            try:
                _when_free(lambda: self.conn.execute("BEGIN IMMEDIATE"))
                try:
                    yield self.conn
                except BaseException:
                    self.conn.execute("ROLLBACK")
                    raise
                self.conn.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                raise LedgerError(
                    f"{self.path}: the ledger is busy or unwritable ({exc}); check free disk space and that no "
                    "other program holds the file open"
                ) from None
            finally:
                if durable:
                    self.conn.execute("PRAGMA synchronous = NORMAL")


def _when_free(call: Callable[[], T]) -> T:
    """`call()`, tried again for up to the busy timeout while SQLite answers "locked" without waiting: it does
    so (no busy handler) while another process's last connection closes the file or recovers its log."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            return call()
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                raise
            time.sleep(0.005)


def _configure(path: Path, conn: sqlite3.Connection) -> int:
    """Set the pragmas every ledger connection runs with; return the file's schema version."""
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    if conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0:
        conn.execute("PRAGMA auto_vacuum = INCREMENTAL")  # a new file: before its first table, so no VACUUM
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise LedgerError(
            f"{path}: the ledger needs SQLite's WAL mode and got '{mode}'; keep the ledger on a local disk"
        )
    # Durability, argued once. In WAL mode synchronous=NORMAL makes each commit a write into the OS
    # page cache (the WAL is fsynced only at checkpoints). That survives SIGKILL, OOM kills and
    # crashes of digest itself: the kernel still writes the pages. It does not survive a power loss
    # or kernel panic, which can roll back the last few commits. Losing a `sent` or a new `pending`
    # that way is safe: the row falls back to in_flight (-> unknown, the user decides) or is re-added
    # from the list. Losing an `in_flight` mark is not: the request went out but the ledger would
    # say pending, and the next run would send again without asking. So the write-ahead mark alone
    # (tx(durable=True)) commits with synchronous=FULL: an fsync of the WAL before the request leaves,
    # which also covers every earlier NORMAL commit (the WAL is append-only).
    conn.execute("PRAGMA synchronous = NORMAL")
    # A 100,000-recipient send writes ~100 MB of WAL; checkpointing every 4 MB (the default) and
    # re-reading evicted pages cost ~40% of the ledger's time there. 32 MB of cache and a checkpoint
    # every ~40 MB keep the working set in memory; both are bounded, whatever the list's size.
    conn.execute("PRAGMA cache_size = -32000")
    conn.execute("PRAGMA wal_autocheckpoint = 10000")
    conn.execute("PRAGMA foreign_keys = ON")
    # After a checkpoint the log is cut back to this, so a big send does not leave a big -wal file behind.
    conn.execute("PRAGMA journal_size_limit = 67108864")
    return int(conn.execute("PRAGMA user_version").fetchone()[0])
