"""Ledger migration: a schema-2 ledger written by an earlier digest (tests/data) opens compact, every row intact."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from digest.deliver.base import BatchResult
from digest.ledger import SCHEMA_VERSION, Ledger

DATA = Path(__file__).parent / "data" / "ledger-v2.sqlite3"
JAN, FEB = "mayors-innovation-2020-01", "mayors-innovation-2020-02"
MARKED = "marked sent by the user after an unknown outcome"
TIMEOUT = "read timed out after the request was sent"
# (edition, email_norm, email, name, state, run, batch, attempts, the row's own error, the batch's provider id)
EXPECTED = [
    (JAN, "ann@example.org", "Ann@Example.org", "Ann Ávila", "sent", 1, "r1-b00002", 2, None, "sg-msg-2"),
    (JAN, "bob@example.org", "bob@example.org", "Bob", "sent", 1, "r1-b00002", 2, None, "sg-msg-2"),
    (JAN, "carol@mail.example.com", "carol@mail.example.com", "Carol, \"C\" O'Neil", "failed", 1, "r1-b00002", 1,
     "550 5.1.1 no such user", "sg-msg-2"),
    (JAN, "dan@example.org", "dan@example.org", "", "unknown", 1, "r1-b00003", 1, TIMEOUT, "sg-msg-3"),
    (JAN, "erin@example.net", "erin@example.net", "Erin", "unknown", 1, "r1-b00003", 1, TIMEOUT, "sg-msg-3"),
    (JAN, "frank@example.org", "frank@example.org", "Frank", "pending", 1, None, 0, None, None),
    (JAN, "grace@example.org", "grace@example.org", "Grace", "pending", 1, None, 0, None, None),
    (FEB, "ann@example.org", "Ann@Example.org", "Ann Ávila", "sent", 2, "r2-b00001", 1, MARKED, None),
    (FEB, "bob@example.org", "bob@example.org", "Bob", "sent", 2, "r2-b00001", 1, MARKED, None),
    (FEB, "carol@mail.example.com", "carol@mail.example.com", "Carol, \"C\" O'Neil", "sent", 2, "r2-b00002", 1,
     None, None),
    (FEB, "dan@example.org", "dan@example.org", "", "sent", 2, "r2-b00002", 1, None, None),
    (FEB, "erin@example.net", "erin@example.net", "Erin", "in_flight", 2, "r2-b00003", 1, None, None),
]  # fmt: skip


@pytest.fixture
def migrated(tmp_path: Path) -> Path:
    path = tmp_path / "ledger.sqlite3"
    shutil.copyfile(DATA, path)
    Ledger.open(path).close()
    return path


def test_every_row_survives_the_migration_with_its_state(migrated: Path) -> None:
    """Each recipient row of both editions keeps state, run, batch, attempts, error and provider id."""
    conn = sqlite3.connect(migrated)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION >= 3
    rows = conn.execute(
        "SELECT v.edition, v.email_norm, v.email, v.name, v.state, v.run_id, v.batch_id, v.attempts, r.error, "
        "v.provider_id FROM recipient_rows v JOIN editions e ON e.name = v.edition "
        "JOIN recipients r ON r.edition = e.id AND r.address = (SELECT a.id FROM addresses a JOIN domains d "
        "ON d.id = a.domain WHERE a.local || '@' || d.name = v.email_norm) ORDER BY e.id, r.address"
    ).fetchall()
    assert rows == EXPECTED


def test_editions_batches_and_runs_survive(migrated: Path) -> None:
    """Editions keep their build and items, batches their state, size, error and hash, runs their outcome."""
    with Ledger.open(migrated) as ledger:
        jan = ledger.edition(JAN)
        assert jan is not None and jan.subject == "January news" and jan.counts["unknown"] == 2
        assert ledger.build_folder(JAN) == "/srv/news/build/mayors-innovation-2020-01"
        assert ledger.sent_item_ids("mayors-innovation") == {"item-a", "item-b"}
        assert [(b.id, b.state, b.size, b.provider_id, b.error) for b in ledger.batches(JAN)] == [
            ("r1-b00001", "released", 2, "", "401 bad key"),
            ("r1-b00002", "done", 3, "sg-msg-2", ""),
            ("r1-b00003", "unknown", 2, "sg-msg-3", TIMEOUT),
        ]
        assert {b.content_hash for b in ledger.batches(FEB)} == {"sha256:" + "2" * 64}
        assert [b.id for b in ledger.unknown_batches(JAN)] == ["r1-b00003"]
        assert [(r.id, r.outcome) for r in ledger.runs(JAN)] == [(1, "partial")]
        assert [(r.id, r.outcome) for r in ledger.runs(FEB)] == [(2, None)]
        assert [f.email for f in ledger.failures(JAN)] == ["carol@mail.example.com"]
        assert [h.edition for h in ledger.history("mayors-innovation")] == [FEB, JAN]


def test_a_migrated_ledger_carries_on_sending(migrated: Path) -> None:
    """After the migration the send loop's transitions work on the old rows: recovery, claims, new runs."""
    with Ledger.open(migrated) as ledger:
        assert ledger.recover_in_flight(FEB) == 1  # erin: handed over by a run that died
        assert [(r.id, r.outcome) for r in ledger.runs(FEB)] == [(2, "died")]
        run = ledger.start_run(JAN, "sendgrid")
        assert run == 3  # run ids go on where they were
        rows = ledger.claim_batch(JAN, 10, f"r{run}-b00001", "sendgrid", "sha256:" + "1" * 64, run_id=1)
        assert [r.email for r in rows] == ["frank@example.org", "grace@example.org"]
        ledger.record(JAN, f"r{run}-b00001", BatchResult(sent=[r.email for r in rows]))
        assert ledger.counts(JAN) == {"pending": 0, "in_flight": 0, "sent": 4, "failed": 1, "unknown": 2}


def test_the_migration_runs_once(migrated: Path) -> None:
    """Opening a migrated ledger again changes nothing: the version says it is done."""
    before = migrated.read_bytes()
    with Ledger.open(migrated) as ledger:
        assert ledger.schema_version == SCHEMA_VERSION
    conn = sqlite3.connect(migrated)
    assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # incremental, set by the migration
    conn.close()
    assert migrated.read_bytes()[100:] == before[100:]  # past the header (its change counter may move)
