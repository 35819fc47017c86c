"""Ledger: states and their transitions, schema versions, streaming large lists, the content-hash rule."""

from __future__ import annotations

import sqlite3
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from digest.addresses import normalize_email
from digest.deliver.base import BatchResult
from digest.errors import LedgerError
from digest.ledger import SCHEMA_VERSION, Ledger
from digest.ledger import schema as ledger_schema
from digest.models import Recipient

ED = "mayors-innovation-2020-01"
HASH = "sha256:" + "a" * 64
OTHER = "sha256:" + "b" * 64


@pytest.fixture
def ledger(store_location: Path | str) -> Iterator[Ledger]:
    """A ledger with one edition begun: in a SQLite file, then in PostgreSQL (conftest.store_location)."""
    with Ledger.open_store(store_location) as opened:
        opened.begin_edition(ED, "mayors-innovation", "2020-01", HASH, "January")
        yield opened


def people(n: int, start: int = 0) -> list[Recipient]:
    return [Recipient(f"user{i}@example.org", f"User {i}") for i in range(start, start + n)]


def send_all(ledger: Ledger, batch_id: str, size: int = 1000) -> list[str]:
    """Move up to `size` pending rows through in_flight to sent, as the send loop does."""
    rows = ledger.next_batch(ED, size)
    ledger.mark_in_flight(ED, [r.email_norm for r in rows], batch_id, "outbox", HASH)
    ledger.record(ED, batch_id, BatchResult(sent=[r.email for r in rows], provider_id="pid-" + batch_id))
    return [r.email for r in rows]


def test_open_sets_wal_and_current_schema(tmp_path: Path) -> None:
    """A new ledger is in WAL mode with user_version at the current schema version."""
    with Ledger.open(tmp_path / "sub" / "l.sqlite3") as ledger:
        assert ledger.schema_version == SCHEMA_VERSION >= 1
    conn = sqlite3.connect(tmp_path / "sub" / "l.sqlite3")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_newer_schema_is_refused_untouched(tmp_path: Path) -> None:
    """A ledger written by a newer digest is refused with a clear message and left as it was."""
    path = tmp_path / "l.sqlite3"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(LedgerError, match=r"schema version \d+ is newer than this digest understands"):
        Ledger.open(path)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1
    assert conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0


def test_forward_migrations_run_in_order_and_keep_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Opening an older ledger applies only the missing migrations and keeps its rows."""
    path = tmp_path / "l.sqlite3"
    with Ledger.open(path) as old:
        old.begin_edition(ED, "mayors-innovation", "2020-01", HASH, "January")
        old.add_recipients(ED, people(3))
    extra = "ALTER TABLE editions ADD COLUMN note TEXT NOT NULL DEFAULT 'migrated';"
    monkeypatch.setattr(ledger_schema, "MIGRATIONS", [*ledger_schema.MIGRATIONS, extra])
    monkeypatch.setattr(ledger_schema, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    with Ledger.open(path) as new:
        assert new.schema_version == SCHEMA_VERSION + 1
        assert new.counts(ED)["pending"] == 3
        assert new._db.conn.execute("SELECT note FROM editions").fetchone()[0] == "migrated"


def test_failed_migration_leaves_the_ledger_as_it_was(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A migration that fails rolls back whole, version included, and says so."""
    path = tmp_path / "l.sqlite3"
    Ledger.open(path).close()
    broken = "CREATE TABLE extra (x TEXT); ALTER TABLE nowhere ADD COLUMN y TEXT;"
    monkeypatch.setattr(ledger_schema, "MIGRATIONS", [*ledger_schema.MIGRATIONS, broken])
    monkeypatch.setattr(ledger_schema, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    with pytest.raises(LedgerError, match="migrating the ledger to schema version"):
        Ledger.open(path)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'extra'").fetchone()[0] == 0


def test_not_a_database_is_a_ledger_error(tmp_path: Path) -> None:
    """A file that is not SQLite gives a LedgerError naming the file, not a traceback."""
    path = tmp_path / "l.sqlite3"
    path.write_bytes(b"this is not a database, just text " * 100)
    with pytest.raises(LedgerError, match="not a digest ledger"):
        Ledger.open(path)


def test_add_is_idempotent_and_keeps_states(ledger: Ledger) -> None:
    """Re-adding a list keeps everyone's state and adds only the new members as pending."""
    assert ledger.add_recipients(ED, people(5)).added == 5
    sent = send_all(ledger, "b1", size=2)
    result = ledger.add_recipients(ED, people(7))
    assert (result.listed, result.added) == (7, 2)
    counts = ledger.counts(ED)
    assert counts["sent"] == 2 and counts["pending"] == 5
    assert set(ledger.states_of(ED, sent).values()) == {"sent"}


def test_case_and_spaces_make_one_recipient(ledger: Ledger) -> None:
    """Two spellings of one address are one recipient of the edition."""
    ledger.add_recipients(ED, [Recipient("Ann@Example.org"), Recipient(" ann@example.ORG ")])
    assert ledger.counts(ED)["pending"] == 1
    assert normalize_email(" Ann@Example.ORG") == "ann@example.org"


def test_state_transitions_of_a_batch(ledger: Ledger) -> None:
    """pending -> in_flight -> sent/failed, with provider id, attempts and error recorded."""
    ledger.add_recipients(ED, people(4))
    rows = ledger.next_batch(ED, 10)
    assert [r.email for r in rows] == [f"user{i}@example.org" for i in range(4)]  # list order
    ledger.mark_in_flight(ED, [r.email_norm for r in rows], "b1", "smtp", HASH)
    assert ledger.counts(ED)["in_flight"] == 4 and ledger.next_batch(ED, 10) == []
    result = BatchResult(
        sent=["user0@example.org", "USER1@example.org"],
        failed=[("user2@example.org", "550 no such user"), ("user3@example.org", "552 full")],
        provider_id="q-1",
    )
    assert ledger.record(ED, "b1", result) == {"sent": 2, "failed": 2}
    failures = ledger.failures(ED, limit=10)
    assert [(f.email, f.error) for f in failures] == [
        ("user2@example.org", "550 no such user"),
        ("user3@example.org", "552 full"),
    ]
    row = ledger._db.conn.execute(
        "SELECT attempts, batch_id, state FROM recipient_rows WHERE email_norm = 'user1@example.org'"
    ).fetchone()
    assert row == (1, "b1", "sent")
    assert (ledger.batches(ED)[0].state, ledger.batches(ED)[0].provider_id) == ("done", "q-1")


def test_an_all_sent_answer_is_recorded_by_batch(ledger: Ledger) -> None:
    """record(all_sent=True) marks the batch's rows still in flight sent and the batch done, and no other row."""
    ledger.add_recipients(ED, people(5))
    rows = ledger.claim_batch(ED, 3, "b1", "sendgrid", HASH)
    other = ledger.claim_batch(ED, 1, "b2", "sendgrid", HASH)
    result = BatchResult(sent=[r.email for r in rows], provider_id="X-1")
    assert ledger.record(ED, "b1", result, all_sent=True) == {"sent": 3}
    assert ledger.counts(ED) == {"pending": 1, "in_flight": 1, "sent": 3, "failed": 0, "unknown": 0}
    assert [(b.id, b.state, b.provider_id) for b in ledger.batches(ED)] == [
        ("b1", "done", "X-1"),
        ("b2", "in_flight", ""),
    ]
    assert ledger.record(ED, "b2", BatchResult(sent=[other[0].email]), all_sent=True) == {"sent": 1}
    assert ledger.record(ED, "b1", result, all_sent=True) == {}  # nothing of b1 is in flight any more


def test_recipients_missing_from_a_result_become_unknown(ledger: Ledger) -> None:
    """A backend answer that leaves someone out marks them unknown, never sent."""
    ledger.add_recipients(ED, people(3))
    rows = ledger.next_batch(ED, 10)
    ledger.mark_in_flight(ED, [r.email_norm for r in rows], "b1", "smtp", HASH)
    counts = ledger.record(ED, "b1", BatchResult(sent=["user0@example.org"]))
    assert counts == {"sent": 1, "unknown": 2}
    assert ledger.unknown_batches(ED)[0].id == "b1"


def test_release_returns_a_batch_to_pending(ledger: Ledger) -> None:
    """release (backend refused before sending) puts the batch back to pending with the error."""
    ledger.add_recipients(ED, people(3))
    rows = ledger.next_batch(ED, 10)
    ledger.mark_in_flight(ED, [r.email_norm for r in rows], "b1", "sendgrid", HASH)
    assert ledger.release("b1", "401 bad key") == 3
    assert ledger.counts(ED)["pending"] == 3
    assert ledger.batches(ED)[0].state == "released"


def test_recover_then_resolve_unknown(ledger: Ledger) -> None:
    """Crash leftovers become unknown; resolve by batch or all, as resend (pending) or mark-sent (sent)."""
    ledger.add_recipients(ED, people(6))
    for batch in ("b1", "b2", "b3"):
        rows = ledger.next_batch(ED, 2)
        ledger.mark_in_flight(ED, [r.email_norm for r in rows], batch, "sendgrid", HASH)
    assert ledger.recover_in_flight(ED) == 6
    assert [b.id for b in ledger.unknown_batches(ED)] == ["b1", "b2", "b3"]
    assert ledger.resolve_unknown(ED, "mark-sent", batch_ids=["b2"]) == 2
    assert ledger.resolve_unknown(ED, "resend", batch_ids=["b3"]) == 2
    assert ledger.counts(ED) == {"pending": 2, "in_flight": 0, "sent": 2, "failed": 0, "unknown": 2}
    assert ledger.resolve_unknown(ED, "resend") == 2
    assert ledger.counts(ED)["pending"] == 4 and ledger.unknown_batches(ED) == []
    with pytest.raises(LedgerError, match="action must be"):
        ledger.resolve_unknown(ED, "maybe")  # type: ignore[arg-type]


def test_mark_batch_unknown_and_retry_failed(ledger: Ledger) -> None:
    """A batch without an answer is unknown as a whole; retry_failed moves failed back to pending."""
    ledger.add_recipients(ED, people(4))
    rows = ledger.next_batch(ED, 2)
    ledger.mark_in_flight(ED, [r.email_norm for r in rows], "b1", "sendgrid", HASH)
    assert ledger.mark_batch_unknown("b1", "read timed out") == 2
    rows = ledger.next_batch(ED, 2)
    ledger.mark_in_flight(ED, [r.email_norm for r in rows], "b2", "sendgrid", HASH)
    ledger.record(ED, "b2", BatchResult(failed=[(r.email, "500") for r in rows]))
    assert ledger.counts(ED)["failed"] == 2 and ledger.counts(ED)["unknown"] == 2
    assert ledger.retry_failed(ED) == 2
    assert ledger.counts(ED)["pending"] == 2


def test_run_scope_sends_only_to_the_current_list(ledger: Ledger) -> None:
    """Pending rows from an earlier list that the current list no longer names are not picked."""
    ledger.add_recipients(ED, people(4), run_id=1)
    ledger.add_recipients(ED, people(2), run_id=2)  # two people left the list (or unsubscribed)
    assert len(ledger.next_batch(ED, 10, run_id=2)) == 2
    assert len(ledger.next_batch(ED, 10)) == 4
    assert ledger.counts(ED, run_id=2)["pending"] == 2


def test_content_change_after_sending_is_refused(ledger: Ledger) -> None:
    """New content for an edition someone already got is refused, naming counts, hashes and the way out."""
    ledger.add_recipients(ED, people(3))
    send_all(ledger, "b1", size=2)
    with pytest.raises(LedgerError) as info:
        ledger.begin_edition(ED, "mayors-innovation", "2020-01", OTHER, "January (fixed)")
    text = str(info.value)
    assert f"edition {ED} was already sent to 2 recipients with different content" in text
    assert "aaaaaaaaaaaa… vs bbbbbbbbbbbb…" in text and "--allow-changed" in text and "new period" in text
    assert ledger.edition(ED) is not None and ledger.edition(ED).content_hash == HASH  # type: ignore[union-attr]


def test_allow_changed_takes_new_content_and_keeps_sent(ledger: Ledger) -> None:
    """--allow-changed: the edition takes the new hash; sent rows stay sent, the rest stay pending."""
    ledger.add_recipients(ED, people(3))
    send_all(ledger, "b1", size=2)
    ledger.begin_edition(ED, "mayors-innovation", "2020-01", OTHER, "January (fixed)", allow_changed=True)
    summary = ledger.edition(ED)
    assert summary is not None and summary.content_hash == OTHER and summary.subject == "January (fixed)"
    assert ledger.counts(ED)["sent"] == 2 and ledger.counts(ED)["pending"] == 1
    assert ledger.batches(ED)[0].content_hash == HASH  # who got which version stays answerable


def test_content_change_before_anyone_got_it_is_accepted(ledger: Ledger) -> None:
    """If nobody can have received the edition, new content simply replaces the old."""
    ledger.add_recipients(ED, people(3))
    ledger.begin_edition(ED, "mayors-innovation", "2020-01", OTHER, "January v2")
    assert ledger.edition(ED).content_hash == OTHER  # type: ignore[union-attr]


def test_history_latest_and_finished(ledger: Ledger) -> None:
    """history lists editions newest first with counts; finished_at is set once nothing is left."""
    ledger.add_recipients(ED, people(2))
    assert not ledger.finish_edition_if_done(ED)
    send_all(ledger, "b1")
    assert ledger.finish_edition_if_done(ED)
    ledger.begin_edition("mayors-innovation-2020-02", "mayors-innovation", "2020-02", OTHER, "February")
    ledger.begin_edition("other-2020-02", "other", "2020-02", OTHER, "Other")
    history = ledger.history("mayors-innovation")
    assert [h.edition for h in history] == ["mayors-innovation-2020-02", ED]
    assert history[1].counts["sent"] == 2 and history[1].total == 2 and history[1].finished_at
    assert history[1].to_dict()["counts"] == history[1].counts
    assert ledger.latest_edition("mayors-innovation") == "mayors-innovation-2020-02"
    assert ledger.latest_edition("nobody") is None
    assert len(ledger.history()) == 3


def test_streaming_100k_keeps_memory_bounded(ledger: Ledger) -> None:
    """Adding 100,000 recipients from a generator stays within a few MB of Python memory."""

    def generate(n: int) -> Iterator[Recipient]:
        for i in range(n):
            yield Recipient(f"member{i:06d}@example.org", f"Member {i}")

    tracemalloc.start()
    try:
        result = ledger.add_recipients(ED, generate(100_000))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.added == 100_000
    # one chunk of 5,000 rows is ~2 MB in Python; the whole list would be ~40 MB
    assert peak < 8_000_000, f"peak {peak:,} bytes"


def test_no_secrets_columns(ledger: Ledger) -> None:
    """The schema has no column that could hold a key or password."""
    tables = ("domains", "addresses", "editions", "recipients", "batches", "runs")
    columns = {col[0] for table in tables for col in ledger._db.read(f"SELECT * FROM {table} LIMIT 0").description}
    assert {"local", "state", "attempts"} <= columns
    assert not {c for c in columns if any(w in c for w in ("key", "password", "secret", "token"))}


def test_status_is_json_ready(ledger: Ledger) -> None:
    """status() gathers counts, unknown batches, failures and runs, typed, and to_dict() is `digest status --json`."""
    import json

    assert ledger.status("no-such-edition") is None
    ledger.add_recipients(ED, people(4))
    run = ledger.start_run(ED, "sendgrid")
    rows = ledger.next_batch(ED, 2)
    ledger.mark_in_flight(ED, [r.email_norm for r in rows], "b1", "sendgrid", HASH)
    ledger.record(ED, "b1", BatchResult(failed=[(rows[0].email, "550 no")], provider_id="X-1"))
    ledger.finish_run(run, "partial")
    found = ledger.status(ED)
    assert found is not None and found.runs[0].outcome == "partial"
    status = json.loads(json.dumps(found.to_dict()))
    assert status["counts"]["failed"] == 1 and status["counts"]["unknown"] == 1 and status["total"] == 4
    assert status["failed"] == 1  # the counts under their own names too
    assert status["unknown_batches"] == [
        {"id": "b1", "backend": "sendgrid", "size": 2, "provider_id": "X-1", "error": ""}
    ]
    assert status["failures"][0]["error"] == "550 no" and status["runs"][0]["outcome"] == "partial"


def test_build_folder_and_sent_items_for_retry_and_if_new(ledger: Ledger) -> None:
    """record_build keeps the folder and item ids; sent_item_ids counts only editions that reached someone."""
    assert ledger.sent_item_ids("mayors-innovation") is None
    assert ledger.record_build(ED, ["a", "b"], "/builds/2020-01")
    assert not ledger.record_build(ED, ["x"], "/builds/other", content_hash=OTHER)  # not this content
    assert not ledger.record_build("nope", ["x"], "/x")
    assert ledger.build_folder(ED) == "/builds/2020-01" and ledger.build_folder("nope") is None
    ledger.add_recipients(ED, people(2))
    assert ledger.sent_item_ids("mayors-innovation") is None  # pending only: nobody reached
    send_all(ledger, "b1", size=1)
    assert ledger.sent_item_ids("mayors-innovation") == {"a", "b"}
    assert ledger.sent_item_ids("other") is None


def test_version_1_ledger_migrates_to_current(tmp_path: Path) -> None:
    """A ledger written at schema version 1 opens at the current version with its rows and the new columns."""
    path = tmp_path / "l.sqlite3"
    conn = sqlite3.connect(path)
    for statement in ledger_schema.statements(str(ledger_schema.MIGRATIONS[0])):
        conn.execute(statement)
    conn.execute(
        "INSERT INTO editions (id, newsletter, period, content_hash, subject, created_at) "
        "VALUES (?, 'mayors-innovation', '2020-01', ?, 'January', '2020-02-01T00:00:00Z')",
        (ED, HASH),
    )
    conn.executemany(
        "INSERT INTO recipients (edition, email_norm, email, name, updated_at) VALUES (?, ?, ?, ?, 'now')",
        [(ED, "user0@example.org", "User0@example.org", "User 0"), (ED, "user1@example.org", "user1@example.org", "")],
    )
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    with Ledger.open(path) as new:
        assert new.schema_version == SCHEMA_VERSION >= 3
        assert new.counts(ED)["pending"] == 2 and new.build_folder(ED) is None
        assert [(r.email, r.name) for r in new.next_batch(ED, 5)] == [
            ("User0@example.org", "User 0"),
            ("user1@example.org", ""),
        ]
        assert new.record_build(ED, ["a"], "/b")


# --- reserve_batch / promote: the send loop's read-ahead ----------------------------------------


def _batch_ids(ledger: Ledger) -> list[str]:
    """The batches handed over, as another connection (another process) sees them."""
    with Ledger.open_store(ledger._db.url if hasattr(ledger._db, "url") else ledger.path) as other:
        return [b.id for b in other.batches(ED)]


def test_reserve_then_promote_takes_the_next_rows_in_list_order(ledger: Ledger) -> None:
    """Reserved rows are in flight under a batch not yet handed over; promote hands it over; nothing else moves."""
    ledger.add_recipients(ED, people(5))
    ledger.claim_batch(ED, 1, "b0", "sendgrid", HASH)
    reserved = ledger.reserve_batch(ED, 3, "b1")
    assert [r.email for r in reserved] == ["user1@example.org", "user2@example.org", "user3@example.org"]
    assert ledger.counts(ED)["in_flight"] == 4 and ledger.counts(ED)["pending"] == 1
    assert _batch_ids(ledger) == ["b0"]
    assert [r.email for r in ledger.next_batch(ED, 10)] == ["user4@example.org"]
    ledger.promote(ED, "b1", 3, "sendgrid", HASH)
    assert _batch_ids(ledger) == ["b0", "b1"]
    ledger.record(ED, "b1", BatchResult(sent=[r.email for r in reserved]))
    assert ledger.counts(ED)["sent"] == 3
    assert ledger.reserve_batch(ED, 3, "b2", run_id=99) == []  # nothing pending on run 99's list


def test_promote_refuses_a_batch_that_is_not_reserved_as_expected(ledger: Ledger) -> None:
    """promote checks the reservation is whole: a mismatch is an internal error, not a silent send."""
    ledger.add_recipients(ED, people(2))
    assert len(ledger.reserve_batch(ED, 2, "b1")) == 2
    with pytest.raises(LedgerError, match="2 rows reserved, expected 3"):
        ledger.promote(ED, "b1", 3, "smtp", HASH)


def test_drop_reservation_makes_rows_pending_and_leaves_handed_over_batches(ledger: Ledger) -> None:
    """A dropped reservation is as if never made (attempt not counted); a claimed batch is not touched."""
    ledger.add_recipients(ED, people(4))
    ledger.claim_batch(ED, 2, "b1", "sendgrid", HASH)
    assert len(ledger.reserve_batch(ED, 2, "b2")) == 2
    assert ledger.drop_reservation("b1") == 0
    assert ledger.drop_reservation("b2") == 2
    assert ledger.counts(ED)["in_flight"] == 2 and ledger.counts(ED)["pending"] == 2
    attempts = ledger._db.conn.execute("SELECT max(attempts) FROM recipient_rows WHERE state = 'pending'").fetchone()[0]
    assert attempts == 0


def test_a_crash_with_a_reservation_leaves_it_pending_and_the_promoted_batch_unknown(ledger: Ledger) -> None:
    """After a crash: the batch handed over (promoted) is unknown, the reserved one was never sent and is
    pending again, with its attempt not counted."""
    ledger.add_recipients(ED, people(4))
    ledger.claim_batch(ED, 2, "b1", "sendgrid", HASH)
    assert len(ledger.reserve_batch(ED, 2, "b2")) == 2
    assert ledger.recover_in_flight(ED) == 2
    counts = ledger.counts(ED)
    assert counts["unknown"] == 2 and counts["pending"] == 2 and counts["in_flight"] == 0
    assert {b.id for b in ledger.unknown_batches(ED)} == {"b1"}
    assert [r.email for r in ledger.next_batch(ED, 10)] == ["user2@example.org", "user3@example.org"]
    attempts = ledger._db.conn.execute("SELECT max(attempts) FROM recipient_rows WHERE state = 'pending'").fetchone()[0]
    assert attempts == 0


def test_reserved_rows_do_not_count_as_reached_for_a_content_change(ledger: Ledger) -> None:
    """Only batches handed over make the edition 'reached': a reservation alone does not block new content."""
    ledger.add_recipients(ED, people(2))
    assert len(ledger.reserve_batch(ED, 2, "b1")) == 2
    ledger.check_content(ED, OTHER)  # no error
    ledger.promote(ED, "b1", 2, "smtp", HASH)
    with pytest.raises(LedgerError, match="already sent to 2 recipients"):
        ledger.check_content(ED, OTHER)


def test_promote_settles_the_previous_all_sent_batch_and_a_crash_keeps_it_sent(ledger: Ledger) -> None:
    """promote(done=...) marks the previous batch done in its own commit; if a crash then cuts off that
    batch's row update, recovery marks its rows sent (they were accepted), never unknown or pending."""
    ledger.add_recipients(ED, people(4))
    first = ledger.claim_batch(ED, 2, "b1", "sendgrid", HASH)
    assert len(ledger.reserve_batch(ED, 2, "b2")) == 2
    ledger.promote(ED, "b2", 2, "sendgrid", HASH, done=("b1", "msg-1"))
    assert {b.id: (b.state, b.provider_id) for b in ledger.batches(ED)} == {
        "b1": ("done", "msg-1"),
        "b2": ("in_flight", ""),
    }
    # crash here: b1's rows still in flight under a done batch, b2 handed over without an answer
    ledger.recover_in_flight(ED)
    states = ledger.states_of(ED, [r.email for r in first] + ["user2@example.org", "user3@example.org"])
    assert states == {
        "user0@example.org": "sent",
        "user1@example.org": "sent",
        "user2@example.org": "unknown",
        "user3@example.org": "unknown",
    }
