"""Several `--worker` runs on one edition (PostgreSQL): the shared lock, leases, claims that never overlap."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from digest.deliver.base import BatchResult
from digest.errors import LockedError, UsageError
from digest.ledger import Ledger
from digest.models import Recipient

ED = "mayors-innovation-2020-01"
NEWS = "mayors-innovation"
HASH = "sha256:" + "a" * 64


def people(n: int) -> list[Recipient]:
    return [Recipient(f"user{i}@example.org", f"User {i}") for i in range(n)]


@pytest.fixture
def url(pg_cluster: Any) -> str:
    """A fresh PostgreSQL ledger database."""
    return str(pg_cluster.create_database(f"w_{uuid.uuid4().hex[:16]}"))


def _worker(ledger: Ledger, n: int = 0) -> int:
    """What prepare_send does for a worker: the edition, a run with its lease, the list."""
    ledger.begin_edition(ED, NEWS, "2020-01", HASH, "January")
    run = ledger.start_run(ED, "sendgrid")
    if n:
        ledger.add_recipients(ED, people(n), run_id=run)
    return run


@contextmanager
def _two_workers(url: str, lease_a: float = 30, lease_b: float = 30) -> Iterator[tuple[Ledger, Ledger]]:
    """Two worker sessions on one ledger, each holding the shared lock with its own lease."""
    with (
        Ledger.open_store(url) as a,
        Ledger.open_store(url) as b,
        a.newsletter_lock(NEWS, worker_lease=lease_a),
        b.newsletter_lock(NEWS, worker_lease=lease_b),
    ):
        yield a, b


def _run_row(ledger: Ledger, run: int) -> tuple[str | None, str | None]:
    row = ledger._db.read("SELECT outcome, lease_until FROM runs WHERE id = ?", (run,)).fetchone()
    return row[0], row[1]


def test_workers_share_the_lock_and_exclude_a_plain_run(url: str) -> None:
    """Two worker runs hold the lock together; a plain run meanwhile is refused (exit 5), and the other way round."""
    with Ledger.open_store(url) as a, Ledger.open_store(url) as b, Ledger.open_store(url) as plain:
        with a.newsletter_lock(NEWS, worker_lease=30), b.newsletter_lock(NEWS, worker_lease=30):
            with pytest.raises(LockedError) as info, plain.newsletter_lock(NEWS):
                pass
            assert info.value.exit_code == 5 and f"another digest run for newsletter {NEWS}" in str(info.value)
            a.require_lock(NEWS)  # a worker holds it (shared) as far as the send loop is concerned
        with plain.newsletter_lock(NEWS):
            with (
                pytest.raises(LockedError, match="a digest run without --worker") as info,
                a.newsletter_lock(NEWS, worker_lease=30),
            ):
                pass
            assert info.value.exit_code == 5
        with a.newsletter_lock(NEWS, worker_lease=30):  # released by both kinds: taken again at once
            pass


def test_a_sqlite_ledger_refuses_worker_runs(tmp_path: Path) -> None:
    """A SQLite file cannot be shared by workers: a usage error naming the file and DIGEST_LEDGER_URL."""
    with (
        Ledger.open(tmp_path / "l.sqlite3") as ledger,
        pytest.raises(UsageError, match="DIGEST_LEDGER_URL") as info,
        ledger.newsletter_lock(NEWS, worker_lease=30),
    ):
        pass
    assert str(tmp_path / "l.sqlite3") in str(info.value)


def test_a_worker_run_renews_its_lease_by_the_servers_clock(url: str) -> None:
    """start_run under a worker lock writes a lease ahead of the server's clock, renewed until the run finishes."""
    with Ledger.open_store(url) as ledger, ledger.newsletter_lock(NEWS, worker_lease=1.5):
        run = _worker(ledger)
        first = _run_row(ledger, run)[1]
        assert first is not None and first > ledger._db.read(f"SELECT {ledger._db.clock}", (0.0,)).fetchone()[0]
        time.sleep(1.2)  # past two renewals (every third of the lease)
        renewed = _run_row(ledger, run)[1]
        assert renewed is not None and renewed > first
        ledger.finish_run(run, "done")
        time.sleep(0.6)
        assert _run_row(ledger, run) == ("done", renewed)  # the heartbeat stopped with the run


def test_claims_of_concurrent_workers_never_overlap(url: str) -> None:
    """Three workers claim batches of one edition at once from their own sessions: every row exactly once."""
    with Ledger.open_store(url) as first, first.newsletter_lock(NEWS, worker_lease=30):
        _worker(first, 3000)
        taken: list[list[str]] = [[], [], []]

        def claim(i: int) -> None:
            with Ledger.open_store(url) as ledger, ledger.newsletter_lock(NEWS, worker_lease=30):
                run = _worker(ledger)
                seq = 0
                while rows := ledger.claim_batch(ED, 50, f"w{i}-{seq}", "sendgrid", HASH, run_id=run):
                    taken[i] += [r.email_norm for r in rows]
                    seq += 1
                ledger.finish_run(run, "done")

        threads = [threading.Thread(target=claim, args=(i,)) for i in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    claimed = [e for part in taken for e in part]
    assert len(claimed) == len(set(claimed)) == 3000
    assert all(part for part in taken)  # each worker got some: they ran side by side


def test_an_expired_lease_makes_its_batches_unknown_and_its_reserved_rows_pending(url: str) -> None:
    """A worker that stops renewing (killed): once its lease ran out, another worker's recovery makes its
    handed-over batch unknown, its reserved rows pending again, and the run 'died'; nothing is sent twice."""
    with _two_workers(url, 1.0, 30) as (dead, live):
        run = _worker(dead, 300)
        dead.claim_batch(ED, 100, "d-1", "sendgrid", HASH, run_id=run)  # handed over, no answer ever
        dead.reserve_batch(ED, 100, "d-2", run_id=run)  # made ahead, never handed over
        assert dead._lease is not None
        dead._lease.stop()  # killed: no more renewals (its session lives on, holding only a shared lock)
        assert live.recover_in_flight(ED) == 0  # the lease has not run out yet
        time.sleep(1.3)
        assert live.recover_in_flight(ED) == 100
        assert live.counts(ED) == {"pending": 200, "in_flight": 0, "sent": 0, "failed": 0, "unknown": 100}
        assert _run_row(live, run)[0] == "died"
        assert [b.id for b in live.unknown_batches(ED)] == ["d-1"]


def test_recovery_leaves_a_live_workers_batches_alone(url: str) -> None:
    """A worker whose lease is renewed keeps its in-flight and reserved batches through another worker's
    recovery, and records its answer afterwards as usual."""
    with _two_workers(url, 1.0, 1.0) as (a, b):
        run_a = _worker(a, 300)
        rows = a.claim_batch(ED, 100, "a-1", "sendgrid", HASH, run_id=run_a)
        a.reserve_batch(ED, 100, "a-2", run_id=run_a)
        time.sleep(1.5)  # longer than the lease: only renewals keep it alive
        run_b = _worker(b)
        assert b.recover_in_flight(ED) == 0
        assert b.recover_expired(ED, heir=run_b) == 0
        assert b.counts(ED)["in_flight"] == 200 and _run_row(b, run_a)[0] is None
        got = b.claim_batch(ED, 500, "b-1", "sendgrid", HASH, run_id=run_b)  # the rest, not a's
        assert len(got) == 100 and not {r.email_norm for r in got} & {r.email_norm for r in rows}
        assert a.record(ED, "a-1", BatchResult(sent=[r.email for r in rows])) == {"sent": 100}


def test_a_worker_out_of_work_takes_over_what_a_dead_worker_held(url: str) -> None:
    """When its claim finds nothing, a worker recovers runs whose lease ran out and sends their reserved rows
    and the rest of their list; their handed-over batch stays unknown."""
    with _two_workers(url, 1.0, 30) as (dead, live):
        run_live = _worker(live)
        run_dead = _worker(dead, 250)  # its list stamped last: every row is on the dead run's list
        dead.claim_batch(ED, 100, "d-1", "sendgrid", HASH, run_id=run_dead)
        dead.reserve_batch(ED, 100, "d-2", run_id=run_dead)
        assert dead._lease is not None
        dead._lease.stop()
        claimed = live.claim_batch(ED, 1000, "l-1", "sendgrid", HASH, run_id=run_live)
        assert len(claimed) == 50  # the one unclaimed part of the list, on an open worker run's list
        time.sleep(1.3)
        claimed = live.claim_batch(ED, 1000, "l-2", "sendgrid", HASH, run_id=run_live)
        assert len(claimed) == 100  # the dead run's reservation, pending again and now this run's
        assert live.counts(ED) == {"pending": 0, "in_flight": 150, "sent": 0, "failed": 0, "unknown": 100}


KEY = "sha256:" + "b" * 64


def _slow(recipients: list[Recipient], read: list[int]) -> Iterator[Recipient]:
    """The list as a slow reader gives it, counting what was read."""
    for r in recipients:
        read.append(1)
        if len(read) % 1000 == 0:
            time.sleep(0.2)
        yield r


def test_workers_given_the_same_list_add_it_once(url: str) -> None:
    """A second worker given the same list waits while the first adds it, reads none of it, and then sends
    from it: its result names the run that added it and how many that run listed."""
    with _two_workers(url) as (a, b):
        run_a, run_b = _worker(a), _worker(b)
        read_a: list[int] = []
        read_b: list[int] = []
        results: dict[str, Any] = {}
        adding = threading.Thread(
            target=lambda: results.update(a=a.add_recipients(ED, _slow(people(3000), read_a), run_a, list_digest=KEY))
        )
        adding.start()
        while not read_a:
            time.sleep(0.01)
        results["b"] = b.add_recipients(ED, _slow(people(3000), read_b), run_b, list_digest=KEY)
        finished_a = len(read_a)
        adding.join()
    assert results["a"].listed == 3000 and results["a"].listed_by is None
    assert (results["b"].listed, results["b"].added, results["b"].listed_by) == (3000, 0, run_a)
    assert read_b == [] and finished_a == 3000  # b read nothing, and went on only once a had added it all
    with Ledger.open_store(url) as c:
        assert c.counts(ED) == {"pending": 3000, "in_flight": 0, "sent": 0, "failed": 0, "unknown": 0}


def test_a_worker_that_dies_adding_the_list_leaves_it_to_the_next(url: str) -> None:
    """The run adding a list is killed half way: once its lease runs out, the waiting worker recovers it and
    adds the whole list itself; nobody is left out."""
    with _two_workers(url, 1.0, 30) as (dead, live):
        run_dead, run_live = _worker(dead), _worker(live)

        def killed_after(n: int) -> Iterator[Recipient]:
            yield from people(6000)[:n]
            raise KeyboardInterrupt  # stands in for SIGKILL: the first chunk (5,000) is committed, no more

        with pytest.raises(KeyboardInterrupt):
            dead.add_recipients(ED, killed_after(5500), run_dead, list_digest=KEY)
        assert dead._lease is not None
        dead._lease.stop()
        started = time.monotonic()
        result = live.add_recipients(ED, people(6000), run_live, list_digest=KEY)
        assert time.monotonic() - started > 0.5  # it waited for the lease to run out
        assert (result.listed, result.listed_by) == (6000, None)
        assert _run_row(live, run_dead)[0] == "died"
        assert live.counts(ED, run_id=run_live)["pending"] == 6000


def test_workers_given_different_lists_add_each_their_own(url: str) -> None:
    """Another file is another list: a worker given it adds it at once, beside the first worker's."""
    with _two_workers(url) as (a, b):
        run_a, run_b = _worker(a), _worker(b)
        assert a.add_recipients(ED, people(100), run_a, list_digest=KEY).listed_by is None
        other = [Recipient(f"other{i}@example.org", "") for i in range(50)]
        result = b.add_recipients(ED, other, run_b, list_digest="sha256:" + "c" * 64)
        assert (result.listed, result.added, result.listed_by) == (50, 50, None)


def test_send_worker_with_a_sqlite_ledger_is_one_clear_line(tmp_path: Path, repo: Path) -> None:
    """`digest send --worker` with a SQLite ledger: exit 2, one line naming the file and DIGEST_LEDGER_URL."""
    from click.testing import CliRunner

    from digest.cli import main

    (tmp_path / "members.csv").write_text("email\na@example.org\n", encoding="utf-8")
    args = ["--config", str(repo / "digest.toml"), "send", "--month", "2020-01", "--worker", "--yes"]
    result = CliRunner().invoke(
        main, [*args, "--recipients", str(tmp_path / "members.csv")], env={"DIGEST_LEDGER_URL": ""}
    )
    assert result.exit_code == 2 and "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "--worker" in lines[0] and "DIGEST_LEDGER_URL=postgresql://" in lines[0]
    assert "ledger.sqlite3" in lines[0]


def test_a_password_in_the_ledger_url_never_shows(repo: Path) -> None:
    """DIGEST_LEDGER_URL with a password, server down: the error shows the URL with *** (logs too), exit 1."""
    from click.testing import CliRunner

    from digest.cli import main

    pytest.importorskip("psycopg")
    url = "postgresql://digest:s3cret-pw@127.0.0.1:9/news"
    result = CliRunner().invoke(main, ["-v", "--config", str(repo / "digest.toml"), "history"],
                                env={"DIGEST_LEDGER_URL": url})  # fmt: skip
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "postgresql://digest:***@127.0.0.1:9/news" in result.stderr and "s3cret" not in result.output
