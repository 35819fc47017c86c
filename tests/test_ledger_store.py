"""Ledger package: the send loop's Protocol, opening an existing ledger, lookups by path, runs that end badly."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import _factories as factories
import pytest

from digest.deliver.base import BatchResult
from digest.deliver.outbox import OutboxBackend
from digest.errors import DeliveryError, LedgerError, NoLedger, RecipientsError
from digest.ledger import BatchStore, Ledger, lookup
from digest.lock import newsletter_lock
from digest.models import Recipient
from digest.send import execute_send, prepare_send

REPO = Path(__file__).resolve().parent.parent
ED = "mayors-innovation-2020-01"
HASH = "sha256:" + "a" * 64


def people(n: int) -> list[Recipient]:
    return [Recipient(f"user{i}@example.org", f"User {i}") for i in range(n)]


def test_the_sqlite_ledger_is_a_batch_store(tmp_path: Path) -> None:
    """Ledger implements the BatchStore Protocol the send loop is typed against (mypy checks the assignment)."""
    with Ledger.open(tmp_path / "l.sqlite3") as ledger:
        store: BatchStore = ledger
        assert store.path == tmp_path / "l.sqlite3"


def test_open_existing_says_there_is_none_and_creates_nothing(tmp_path: Path) -> None:
    """Reading a ledger that was never created is NoLedger naming the file, and leaves no file behind."""
    path = tmp_path / "ledger.sqlite3"
    with pytest.raises(NoLedger, match=r"ledger\.sqlite3: no ledger yet; nothing has been sent"):
        Ledger.open_existing(path)
    assert not path.exists()
    assert lookup.history(path, "mayors-innovation") == []
    assert lookup.sent_item_ids(path, "mayors-innovation") is None
    with pytest.raises(NoLedger, match="nothing to retry"):
        lookup.build_folder(path, ED)
    assert not path.exists()


def test_lookups_answer_by_path(tmp_path: Path) -> None:
    """status/latest_edition find the newest edition; an unknown one is refused naming the recent ones."""
    path = tmp_path / "ledger.sqlite3"
    with Ledger.open(path) as ledger:
        ledger.begin_edition(ED, "mayors-innovation", "2020-01", HASH, "January")
        ledger.add_recipients(ED, people(2))
    assert lookup.latest_edition(path, "mayors-innovation") == ED
    status = lookup.status(path, "mayors-innovation")
    assert status.summary.edition == ED and status.summary.counts["pending"] == 2 and status.batches == 0
    with pytest.raises(LedgerError, match=f"no edition 'nope' in .*recent editions: {ED}"):
        lookup.status(path, "mayors-innovation", "nope")
    with pytest.raises(LedgerError, match="no edition of other has been sent yet"):
        lookup.latest_edition(path, "other")
    with pytest.raises(LedgerError, match=f"no build folder recorded for {ED}"):
        lookup.build_folder(path, ED)


def test_a_run_the_backend_refuses_to_start_records_its_end(tmp_path: Path) -> None:
    """A backend that fails on open (here: the outbox folder cannot be made) ends the run as 'error', not open."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    path = tmp_path / "ledger.sqlite3"
    backend = OutboxBackend(blocker / "outbox")
    with newsletter_lock(path, "mayors-innovation"), Ledger.open(path) as ledger:
        plan = prepare_send(factories.make_build(), backend, people(3), ledger=ledger)
        with pytest.raises(DeliveryError, match="cannot create the outbox folder"):
            execute_send(plan, personalize=lambda r: factories.personal(r.email, r.name))
        runs = ledger.runs(ED)
        assert [(r.outcome, r.finished_at is not None) for r in runs] == [("error", True)]
        assert ledger.counts(ED)["pending"] == 3


def test_an_unreadable_list_records_the_end_of_its_run(tmp_path: Path) -> None:
    """A list that fails half-way through being read ends its run as 'error' (not left open until 'died')."""

    def rows() -> Iterator[Recipient]:
        yield from people(2)
        raise RecipientsError("list.csv:4: cannot be decoded as UTF-8; save it as UTF-8")

    path = tmp_path / "ledger.sqlite3"
    with newsletter_lock(path, "mayors-innovation"), Ledger.open(path) as ledger:
        with pytest.raises(RecipientsError, match="list.csv:4"):
            prepare_send(factories.make_build(), OutboxBackend(tmp_path / "out"), rows(), ledger=ledger)
        assert [r.outcome for r in ledger.runs(ED)] == ["error"]


def test_batches_claimed_from_several_threads_never_overlap(tmp_path: Path) -> None:
    """Several batches in flight at once: concurrent claims from threads take disjoint rows, all of them."""
    with Ledger.open(tmp_path / "l.sqlite3") as ledger:
        ledger.begin_edition(ED, "mayors-innovation", "2020-01", HASH, "January")
        ledger.add_recipients(ED, people(400))
        taken: list[list[str]] = []

        def claim(worker: int) -> None:
            for seq in range(20):
                rows = ledger.claim_batch(ED, 7, f"w{worker}-b{seq}", "outbox", HASH)
                taken.append([r.email_norm for r in rows])

        threads = [threading.Thread(target=claim, args=(w,)) for w in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        emails = [e for batch in taken for e in batch]
        assert len(emails) == len(set(emails)) == 400
        assert ledger.counts(ED)["in_flight"] == 400
        assert sum(b.size for b in ledger.batches(ED)) == 400


def test_digest_ledger_vacuum_prints_sizes(tmp_path: Path) -> None:
    """`digest ledger vacuum` reports the size before and after; without a ledger it says there is none."""
    from click.testing import CliRunner

    from digest.cli import main

    config = tmp_path / "digest.toml"
    config.write_text(
        'name = "N"\nslug = "n"\nsender = "N <n@x.org>"\nledger_path = "ledger.sqlite3"\n', encoding="utf-8"
    )
    runner = CliRunner()
    result = runner.invoke(main, ["--config", str(config), "ledger", "vacuum"])
    assert result.exit_code == 1 and "no ledger yet" in result.stderr and "Traceback" not in result.output
    with Ledger.open(tmp_path / "ledger.sqlite3") as ledger:
        ledger.begin_edition(ED, "mayors-innovation", "2020-01", HASH, "January")
        ledger.add_recipients(ED, people(3000))
    result = runner.invoke(main, ["--config", str(config), "ledger", "vacuum"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"Vacuumed {tmp_path / 'ledger.sqlite3'}: ") and " MB -> " in result.stdout


def test_the_end_of_a_run_gives_freed_pages_back(tmp_path: Path) -> None:
    """finish_run returns the pages a send freed (its pending index) to the file system: no free list left."""
    path = tmp_path / "l.sqlite3"
    with Ledger.open(path) as ledger:
        ledger.begin_edition(ED, "mayors-innovation", "2020-01", HASH, "January")
        run = ledger.start_run(ED, "outbox")
        ledger.add_recipients(ED, people(20_000), run_id=run)
        for seq in range(20):
            ledger.claim_batch(ED, 1000, f"b{seq}", "outbox", HASH, run_id=run)
            ledger.record(ED, f"b{seq}", BatchResult(sent=[f"user{i}@example.org" for i in range(20_000)]))
        conn = sqlite3.connect(path)
        assert conn.execute("PRAGMA freelist_count").fetchone()[0] > 10  # the pending index, emptied
        ledger.finish_run(run, "done")
        assert conn.execute("PRAGMA freelist_count").fetchone()[0] == 0
        conn.close()


@pytest.mark.slow
def test_sigkilled_runs_on_postgresql_never_double_or_lose_anyone(tmp_path: Path, pg_cluster: Any) -> None:
    """The kill-and-rerun harness with the ledger in PostgreSQL: 6 SIGKILLs, every address arrives once."""
    import importlib.util
    import os
    import random
    import sys

    from digest.testing.sendgrid_emulator import SendGridEmulator

    spec = importlib.util.spec_from_file_location("kill_and_rerun", REPO / "benchmarks" / "kill_and_rerun.py")
    assert spec is not None and spec.loader is not None
    kr: Any = importlib.util.module_from_spec(spec)
    sys.modules["kill_and_rerun"] = kr  # dataclasses resolve their module by name
    spec.loader.exec_module(kr)
    seed = int(os.environ.get("DIGEST_KILL_SEED", random.randrange(1 << 30)))
    with SendGridEmulator() as emulator:
        figures = kr.campaign(tmp_path, emulator, recipients=2000, batch_size=100, kills=6, seed=seed, step=0.1,
                              ledger_url=lambda n: pg_cluster.create_database(f"kill_{n}"))  # fmt: skip
    context = f"seed {seed} (DIGEST_KILL_SEED={seed} to repeat): {figures}"
    assert figures.kills >= 6 and figures.violations == [], context
    assert (figures.duplicates, figures.never_attempted, figures.unknown_left) == (0, 0, 0), context
    assert (figures.received_not_sent, figures.sent_but_missing, figures.missing_after_last_run) == (0, 0, 0), context
