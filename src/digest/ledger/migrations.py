"""The SQLite ledger's versioned migrations: one entry per schema version, run once, in order, by schema.py.

PostgreSQL's migrations (postgres.py) are derived from these, so the DDL is written once.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator

from ..addresses import split_address

# --- version 3: the compact ledger -------------------------------------------------------------------
#
# An address, its name and its domain are stored once (`addresses`, `domains`); an edition's recipient is a
# row of small integers keyed by (edition, address) in a WITHOUT ROWID table, ~20 bytes. States are integers
# (batches.CODES); rows name their batch by integer; error texts a whole batch shares live on the batch.
# Version 2's text-keyed tables are copied row by row.

# The ledger's tables at version 3. Names are resolved once per call (edition, batch) by the code;
# no REFERENCES clauses: SQLite would check two indexes on every recipient row written.
COMPACT = [
    """CREATE TABLE domains (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE
    )""",
    """CREATE TABLE addresses (
        id INTEGER PRIMARY KEY,            -- order of first appearance: batches go out in this order
        domain INTEGER NOT NULL,
        local TEXT NOT NULL,               -- normalised address = local || '@' || domains.name
        email TEXT,                        -- as written on the list, only when it differs from the normalised one
        name TEXT NOT NULL DEFAULT '',     -- as the latest list gives it
        UNIQUE (domain, local)
    )""",
    """CREATE TABLE editions3 (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,         -- "<newsletter>-<period>", e.g. mayors-innovation-2020-01
        newsletter TEXT NOT NULL,
        period TEXT NOT NULL,
        content_hash TEXT NOT NULL,        -- the content being sent now (see --allow-changed)
        subject TEXT NOT NULL,
        created_at TEXT NOT NULL,
        finished_at TEXT,                  -- last run that left nothing pending, in flight or unknown
        build_folder TEXT,
        item_ids TEXT                      -- JSON list of the content item ids it carried
    )""",
    """CREATE TABLE runs3 (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        edition INTEGER NOT NULL,
        backend TEXT NOT NULL,
        pid INTEGER NOT NULL,
        started_at TEXT NOT NULL,
        finished_at TEXT,
        outcome TEXT                       -- NULL while running or when the process died
    )""",
    """CREATE TABLE batches3 (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,         -- what the provider sees (custom_args batch), e.g. r12-b00001
        edition INTEGER NOT NULL,
        run INTEGER,
        backend TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('reserved', 'in_flight', 'done', 'unknown', 'released', 'resolved')),
        content_hash TEXT NOT NULL,        -- which content this batch carried
        provider_id TEXT,
        size INTEGER NOT NULL,
        error TEXT,                        -- what happened to the whole batch; a row's own error wins
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    )""",
    """CREATE TABLE recipients3 (
        edition INTEGER NOT NULL,
        address INTEGER NOT NULL,
        state INTEGER NOT NULL DEFAULT 0,  -- batches.CODES: 0 pending, 1 sent, 2 in_flight, 3 failed, 4 unknown
        run INTEGER,                       -- last run whose recipients list named this person
        batch INTEGER,                     -- the batch that last carried it
        attempts INTEGER NOT NULL DEFAULT 0,
        error TEXT,                        -- this recipient's own reason (a refusal), else the batch's
        PRIMARY KEY (edition, address)
    ) WITHOUT ROWID""",
]
RENAMES = [("editions3", "editions"), ("runs3", "runs"), ("batches3", "batches"), ("recipients3", "recipients")]
COMPACT_INDEXES = [
    "CREATE INDEX editions_newsletter ON editions(newsletter, created_at)",
    "CREATE INDEX batches_edition ON batches(edition, state)",
    # Partial indexes: a row is in one only while it waits or is in flight, so marking 100,000 people sent
    # costs no index writes for the sent ones, and a sent edition costs no index space at all.
    "CREATE INDEX recipients_pending ON recipients(edition, run) WHERE state = 0",
    "CREATE INDEX recipients_in_flight ON recipients(batch) WHERE state = 2",
    # For people and for audits: the recipients as version 2 showed them (names, not numbers).
    """CREATE VIEW recipient_rows AS
        SELECT e.name AS edition, a.local || '@' || d.name AS email_norm,
               coalesce(a.email, a.local || '@' || d.name) AS email, a.name AS name,
               CASE r.state WHEN 0 THEN 'pending' WHEN 1 THEN 'sent' WHEN 2 THEN 'in_flight' WHEN 3 THEN 'failed'
                            ELSE 'unknown' END AS state,
               r.run AS run_id, b.name AS batch_id, r.attempts AS attempts, coalesce(r.error, b.error) AS error,
               b.provider_id AS provider_id, b.content_hash AS content_hash
        FROM recipients r JOIN editions e ON e.id = r.edition JOIN addresses a ON a.id = r.address
        JOIN domains d ON d.id = a.domain LEFT JOIN batches b ON b.id = r.batch""",
]


def _compact(conn: sqlite3.Connection) -> None:
    """Version 2 -> 3 in the caller's transaction: every row copied, nothing lost (row errors kept as they were).
    A new ledger runs it too, on empty tables."""
    for statement in COMPACT:
        conn.execute(statement)
    conn.execute(
        "INSERT INTO editions3 (name, newsletter, period, content_hash, subject, created_at, finished_at, "
        "build_folder, item_ids) SELECT id, newsletter, period, content_hash, subject, created_at, finished_at, "
        "build_folder, item_ids FROM editions ORDER BY rowid"
    )
    conn.execute(
        "INSERT INTO runs3 (id, edition, backend, pid, started_at, finished_at, outcome) "
        "SELECT r.id, e.id, r.backend, r.pid, r.started_at, r.finished_at, r.outcome "
        "FROM runs r JOIN editions3 e ON e.name = r.edition ORDER BY r.id"
    )
    conn.execute(
        "INSERT INTO batches3 (name, edition, run, backend, state, content_hash, provider_id, size, error, "
        "created_at, updated_at) SELECT b.id, e.id, b.run_id, b.backend, b.state, b.content_hash, b.provider_id, "
        "b.size, b.error, b.created_at, b.updated_at FROM batches b JOIN editions3 e ON e.name = b.edition "
        "ORDER BY b.rowid"
    )
    # Addresses in order of first appearance (the old list order); each keeps its latest name and spelling.
    conn.execute("CREATE TEMP TABLE address_of (email_norm TEXT PRIMARY KEY, id INTEGER NOT NULL) WITHOUT ROWID")
    domains: dict[str, int] = {}
    rows = conn.execute("SELECT email_norm, email, name FROM recipients ORDER BY rowid").fetchall()
    for email_norm, email, name in rows:
        local, domain = split_address(email_norm)
        if domain not in domains:
            domains[domain] = int(
                conn.execute("INSERT INTO domains (name) VALUES (?) RETURNING id", (domain,)).fetchone()[0]
            )
        written = None if email == email_norm else email
        (address,) = conn.execute(
            "INSERT INTO addresses (domain, local, email, name) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (domain, local) DO UPDATE SET email = excluded.email, name = excluded.name RETURNING id",
            (domains[domain], local, written, name),
        ).fetchone()
        conn.execute("INSERT OR IGNORE INTO address_of VALUES (?, ?)", (email_norm, address))
    conn.execute(
        "INSERT INTO recipients3 (edition, address, state, run, batch, attempts, error) "
        "SELECT e.id, m.id, CASE r.state WHEN 'pending' THEN 0 WHEN 'sent' THEN 1 WHEN 'in_flight' THEN 2 "
        "WHEN 'failed' THEN 3 ELSE 4 END, r.run_id, b.id, r.attempts, r.error "
        "FROM recipients r JOIN editions3 e ON e.name = r.edition JOIN address_of m ON m.email_norm = r.email_norm "
        "LEFT JOIN batches3 b ON b.name = r.batch_id ORDER BY e.id, m.id"
    )
    conn.execute("DROP TABLE address_of")
    for table in ("recipients", "batches", "runs", "editions"):
        conn.execute(f"DROP TABLE {table}")
    for old, new in RENAMES:
        conn.execute(f"ALTER TABLE {old} RENAME TO {new}")
    for statement in COMPACT_INDEXES:
        conn.execute(statement)


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
    # 3: compact (~20 bytes per recipient per edition instead of ~215): see COMPACT below.
    _compact,
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
    # 6: the lease a `--worker` run renews while it lives, so the others know when its batches are orphans.
    "ALTER TABLE runs ADD COLUMN lease_until TEXT",
    # 7: which list a `--worker` run adds (a digest of the file) and, once added, how many it listed, so that
    # workers given the same file wait for one of them to add it instead of each adding it again.
    """
    ALTER TABLE runs ADD COLUMN list_digest TEXT;
    ALTER TABLE runs ADD COLUMN listed INTEGER;
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)


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
