"""Ledger migration: a schema-2 ledger written by an earlier digest (tests/data) opens compact, every row intact."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from digest.deliver.base import BatchResult
from digest.errors import LedgerError
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


def _everything(ledger: Ledger) -> list[dict[str, object]]:
    return list(ledger.export())


@pytest.mark.parametrize("direction", ["sqlite-to-postgres", "postgres-to-sqlite"])
def test_a_ledger_moves_between_stores_without_losing_a_row(
    migrated: Path, tmp_path: Path, pg_cluster: object, direction: str
) -> None:
    """digest ledger migrate both ways keeps every record (states, attempts, errors, provider ids, runs, order)."""
    from digest.ledger import lookup

    url = pg_cluster.create_database(f"m_{direction.replace('-', '_')}")  # type: ignore[attr-defined]
    with Ledger.open(migrated) as source:
        expected = _everything(source)
    assert {r["type"] for r in expected} == {"edition", "run", "batch", "address", "recipient"}
    if direction == "sqlite-to-postgres":
        counts = lookup.migrate(migrated, url)
        target: Path | str = url
    else:
        lookup.migrate(migrated, url)
        target = tmp_path / "back.sqlite3"
        counts = lookup.migrate(url, target)
    assert counts["recipient"] == len(EXPECTED)
    with Ledger.open_store(target) as copy:
        assert _everything(copy) == expected
        assert copy.counts(JAN) == {"pending": 2, "in_flight": 0, "sent": 2, "failed": 1, "unknown": 2}
        run = copy.start_run(JAN, "sendgrid")
        assert run == 3  # run ids go on after the copied ones
        rows = copy.claim_batch(JAN, 10, f"r{run}-b00001", "sendgrid", "sha256:" + "1" * 64, run_id=1)
        assert [r.email for r in rows] == ["frank@example.org", "grace@example.org"]
    with pytest.raises(LedgerError, match="already holds editions"):
        lookup.migrate(migrated, target)


def test_export_and_import_through_a_file(migrated: Path, tmp_path: Path) -> None:
    """digest ledger export / import: the JSON lines file carries the whole ledger into a new one."""
    from click.testing import CliRunner

    from digest.cli import main

    config = tmp_path / "digest.toml"
    named = 'name = "Mayors"\nslug = "mayors-innovation"\nsender = "Mayors <news@example.org>"\n'
    config.write_text(named + f'ledger_path = "{migrated}"\n', encoding="utf-8")
    runner = CliRunner()
    result = runner.invoke(main, ["--config", str(config), "ledger", "export", str(tmp_path / "l.jsonl")])
    assert result.exit_code == 0, result.output
    assert "12 recipients" in result.stdout and "7 addresses" in result.stdout
    config.write_text(named + f'ledger_path = "{tmp_path / "new.sqlite3"}"\n', encoding="utf-8")
    result = runner.invoke(main, ["--config", str(config), "ledger", "import", str(tmp_path / "l.jsonl")])
    assert result.exit_code == 0, result.output
    with Ledger.open(migrated) as old, Ledger.open(tmp_path / "new.sqlite3") as new:
        assert _everything(new) == _everything(old)
    config.write_text(named + f'ledger_path = "{tmp_path / "other.sqlite3"}"\n', encoding="utf-8")
    (tmp_path / "bad.jsonl").write_text('{"type": "edition"\n', encoding="utf-8")
    result = runner.invoke(main, ["--config", str(config), "ledger", "import", str(tmp_path / "bad.jsonl")])
    assert result.exit_code == 1 and "bad.jsonl:1: not a ledger export line" in result.stderr


def test_two_processes_creating_one_ledger_at_once_both_open_it(tmp_path: Path) -> None:
    """Two opens of a new ledger file at the same moment: each migration step runs once, neither open fails."""
    import subprocess
    import sys

    code = "import sys; from digest.ledger import Ledger; Ledger.open(sys.argv[1]).close()"
    for n in range(8):
        path = tmp_path / f"l{n}.sqlite3"
        procs = [subprocess.Popen([sys.executable, "-c", code, str(path)], stderr=subprocess.PIPE) for _ in range(2)]
        errors = [p.communicate()[1].decode() for p in procs]
        assert [p.returncode for p in procs] == [0, 0], errors
        with Ledger.open(path) as ledger:
            assert ledger.schema_version == SCHEMA_VERSION


def test_an_open_waits_out_locked_answers_sqlite_gives_without_waiting() -> None:
    """SQLite answers "database is locked" at once, not after its busy timeout, while another process's last
    connection closes the file: opening and BEGIN try again then; any other error is raised at once."""
    from digest.ledger.schema import _when_free

    def busy() -> sqlite3.OperationalError:
        exc = sqlite3.OperationalError("database is locked")
        exc.sqlite_errorcode = sqlite3.SQLITE_BUSY
        return exc

    answers: list[object] = [busy(), busy(), "opened"]

    def call() -> object:
        answer = answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    assert _when_free(call) == "opened" and answers == []
    broken = sqlite3.OperationalError("disk I/O error")
    broken.sqlite_errorcode = sqlite3.SQLITE_IOERR
    answers[:] = [broken, "never reached"]
    with pytest.raises(sqlite3.OperationalError, match="disk I/O"):
        _when_free(call)
    assert answers == ["never reached"]
