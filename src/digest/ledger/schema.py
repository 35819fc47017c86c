"""The SQLite side of the ledger: opening the file, its pragmas, transactions and versioned migrations.

Everything that is particular to SQLite's connection lives here (a PostgreSQL adapter would sit beside
it); the ledger's queries elsewhere use `?` placeholders, `Database.tx()` and the `GREATEST` hook only.
"""

from __future__ import annotations

import contextlib
import functools
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import LedgerError
from . import compact

BUSY_TIMEOUT_MS = 30_000  # two newsletters may share one ledger file; writers queue instead of failing

# Forward migrations: MIGRATIONS[n] takes a ledger from schema version n to n + 1 (PRAGMA user_version).
# Append, never edit: a ledger written by an older digest must still open.
MIGRATIONS: list[str | Callable[[sqlite3.Connection], None]] = [
    """
    CREATE TABLE editions (
        id TEXT PRIMARY KEY,               -- "<newsletter>-<period>", e.g. mayors-innovation-2020-01
        newsletter TEXT NOT NULL,
        period TEXT NOT NULL,
        content_hash TEXT NOT NULL,        -- the content being sent now (see --allow-changed)
        subject TEXT NOT NULL,
        created_at TEXT NOT NULL,
        finished_at TEXT                   -- last run that left nothing pending, in flight or unknown
    );
    CREATE INDEX editions_newsletter ON editions(newsletter, created_at);

    CREATE TABLE runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        edition TEXT NOT NULL REFERENCES editions(id),
        backend TEXT NOT NULL,
        pid INTEGER NOT NULL,
        started_at TEXT NOT NULL,
        finished_at TEXT,
        outcome TEXT                       -- NULL while running or when the process died
    );

    CREATE TABLE recipients (
        edition TEXT NOT NULL REFERENCES editions(id),
        email_norm TEXT NOT NULL,
        email TEXT NOT NULL,
        name TEXT NOT NULL DEFAULT '',
        state TEXT NOT NULL DEFAULT 'pending'
            CHECK (state IN ('pending', 'in_flight', 'sent', 'failed', 'unknown')),
        run_id INTEGER,                    -- last run whose recipients list named this person
        batch_id TEXT,                     -- the batch that last carried it; the provider's id is on the batch
        attempts INTEGER NOT NULL DEFAULT 0,
        error TEXT,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (edition, email_norm)
    );
    -- Partial indexes: a row is in an index only while it waits or is in flight, so marking 100,000
    -- people sent costs no index writes for the sent ones (measured: a third less time per batch).
    -- Their rowid order is file order, so batches go out in the order of the recipients file.
    CREATE INDEX recipients_pending ON recipients(edition, run_id) WHERE state = 'pending';
    CREATE INDEX recipients_in_flight ON recipients(batch_id) WHERE state = 'in_flight';

    CREATE TABLE batches (
        id TEXT PRIMARY KEY,
        edition TEXT NOT NULL REFERENCES editions(id),
        run_id INTEGER,
        backend TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('in_flight', 'done', 'unknown', 'released', 'resolved')),
        content_hash TEXT NOT NULL,        -- which content this batch carried
        provider_id TEXT,
        size INTEGER NOT NULL,
        error TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE INDEX batches_edition ON batches(edition, state);
    """,
    # 2: what `digest retry` and `--if-new` need: the build folder an edition was sent from and its items.
    """
    ALTER TABLE editions ADD COLUMN build_folder TEXT;
    ALTER TABLE editions ADD COLUMN item_ids TEXT;  -- JSON list of the content item ids it carried
    """,
    # 3: compact (~20 bytes per recipient per edition instead of ~250): see compact.py.
    compact.migrate,
    # 4: each edition's web version for `digest archive`, so the archive can be rebuilt from the ledger alone.
    """
    CREATE TABLE edition_pages (
        edition INTEGER PRIMARY KEY REFERENCES editions(id),
        stored_at TEXT NOT NULL,           -- the start of its first list send: the archive's "date sent"
        page BLOB NOT NULL                 -- compressed page and metadata (archive.pack)
    );
    """,
    # 5: provider events (stored before they are applied), the suppression list, and what evidence settled.
    """
    CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        sg_event_id TEXT NOT NULL,         -- '' when the provider gave none
        dedupe_key TEXT NOT NULL,          -- event, address and message id: one happening told twice
        event TEXT NOT NULL,
        email_norm TEXT NOT NULL,
        edition TEXT NOT NULL,             -- the custom_args digest sets; '' when the event lacks them
        batch TEXT NOT NULL,
        reason TEXT NOT NULL,
        suppresses INTEGER NOT NULL,
        timestamp INTEGER NOT NULL,        -- when it happened at the provider (unix seconds; 0: not given)
        raw TEXT NOT NULL,                 -- the event as it arrived
        received_at TEXT NOT NULL,
        applied INTEGER NOT NULL DEFAULT 0
    );
    CREATE UNIQUE INDEX events_sg_event_id ON events(sg_event_id) WHERE sg_event_id <> '';
    CREATE UNIQUE INDEX events_dedupe ON events(dedupe_key);
    CREATE INDEX events_batch ON events(batch, email_norm);
    CREATE INDEX events_edition ON events(edition, event);
    CREATE INDEX events_unapplied ON events(id) WHERE applied = 0;

    CREATE TABLE suppressions (
        email_norm TEXT PRIMARY KEY,
        reason TEXT NOT NULL,              -- "bounce: 550 5.1.1 ...", "spam complaint", "unsubscribe", or the user's
        source TEXT NOT NULL,              -- event | user
        created_at TEXT NOT NULL
    );

    CREATE TABLE suppression_removals (    -- who was taken off the list, and why
        email_norm TEXT NOT NULL,
        reason TEXT NOT NULL,              -- the suppression's reason
        removed_because TEXT NOT NULL,
        at TEXT NOT NULL
    );

    CREATE TABLE settlements (             -- unknown recipients settled by evidence, not by a person
        edition TEXT NOT NULL,
        batch_id TEXT NOT NULL,
        email_norm TEXT NOT NULL,
        outcome TEXT NOT NULL,             -- sent | failed | pending (never accepted: sent again)
        evidence TEXT NOT NULL,            -- events | outbox | no-events
        at TEXT NOT NULL
    );
    CREATE INDEX settlements_edition ON settlements(edition);
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)

GREATEST = "max"  # SQL's two-argument maximum (PostgreSQL spells it greatest)


class Database:
    """One SQLite connection to a ledger file: `tx()` for writes, `read()` for queries, `close()`.

    Calls may come from several threads (a send loop with requests in flight): one lock serialises them,
    as SQLite would anyway (one writer at a time).
    """

    def __init__(self, path: Path, conn: sqlite3.Connection):
        self.path = path
        self.conn = conn
        self._lock = threading.RLock()

    @classmethod
    def open(cls, path: Path) -> Database:
        """Open (creating if needed) and migrate the ledger at `path`; refuse one from a newer digest."""
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: we issue BEGIN/COMMIT ourselves, so every commit point is visible
            # in the code, which is the whole point of a write-ahead ledger.
            conn = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False)
        except (OSError, sqlite3.Error) as exc:
            raise LedgerError(f"{path}: cannot open the ledger ({exc}); check 'ledger_path' in digest.toml") from None
        try:
            version = _configure(path, conn)
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

    def release_free_pages(self) -> None:
        """Give the file's free pages back to the file system (incremental auto-vacuum)."""
        # Busy (another newsletter is writing): the next run's end frees them.
        with self._lock, contextlib.suppress(sqlite3.OperationalError):
            self.conn.execute("PRAGMA incremental_vacuum").fetchall()

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
                self.conn.execute("BEGIN IMMEDIATE")
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

    @functools.cached_property
    def json_functions(self) -> bool:
        """Whether this SQLite has json_each / json_extract (built in since 3.38, an option before)."""
        try:
            self.read("SELECT json_extract(value, '$[0]') FROM json_each('[[1]]')").fetchall()
        except sqlite3.OperationalError:
            return False
        return True


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


def statements(script: str) -> Iterator[str]:
    """Split a migration script into statements (executescript would COMMIT our transaction)."""
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line.split("--", 1)[0] if "--" in line else line
        if sqlite3.complete_statement(buffer):
            if buffer.strip():
                yield buffer.strip()
            buffer = ""
    if buffer.strip():
        yield buffer.strip()
