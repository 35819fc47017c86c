"""Three `digest send --worker` processes on one 30,000-recipient edition, one SIGKILLed mid-request (PostgreSQL)."""

from __future__ import annotations

import importlib.util
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from digest.ledger import Ledger

REPO = Path(__file__).resolve().parent.parent
LEASE = 4.0  # seconds: short for the test, long enough for a loaded machine to renew in time


def _harness() -> Any:
    spec = importlib.util.spec_from_file_location("kill_and_rerun", REPO / "benchmarks" / "kill_and_rerun.py")
    assert spec is not None and spec.loader is not None
    kr: Any = importlib.util.module_from_spec(spec)
    sys.modules["kill_and_rerun"] = kr  # dataclasses resolve their module by name
    spec.loader.exec_module(kr)
    return kr


def _in_flight(ledger: Ledger, pids: set[int]) -> int | None:
    """The pid of a worker with a request out, once sending is well under way (a few batches answered)."""
    done = ledger._db.read("SELECT count(*) FROM batches WHERE state = 'done'").fetchone()[0]
    rows = ledger._db.read(
        "SELECT r.pid FROM batches b JOIN runs r ON r.id = b.run WHERE b.state = 'in_flight' ORDER BY b.id"
    ).fetchall()
    live = [pid for (pid,) in rows if pid in pids]
    return live[0] if done >= 3 and live else None


@pytest.mark.slow
def test_three_workers_one_killed_mid_request(tmp_path: Path, pg_cluster: Any) -> None:
    """The other two send the rest; once the killed one's lease ran out, a fourth worker makes its handed-over
    batches unknown and sends what it had only reserved; SendGrid's events settle the unknown ones, a final
    `digest send` closes the edition, and every address arrived exactly once."""
    from digest.testing.sendgrid_emulator import SendGridEmulator

    kr = _harness()
    with SendGridEmulator() as emulator:
        # Every request held a moment before it is stored and answered a moment after: a kill cuts one off
        # either before the provider has it or after, and only its events can tell which.
        emulator.add_fault(hold=0.15, delay=0.35, rate=1.0, seed=16)
        work = kr.prepare(tmp_path, emulator.url, 30_000, 500, pg_cluster.create_database("workers_kill"))
        work.env["DIGEST_WORKER_LEASE"] = str(LEASE)
        procs = [
            subprocess.Popen(kr.command(work, "--worker"), env=work.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            for _ in range(3)
        ]
        pids = {p.pid for p in procs}
        victim_pid = None
        deadline = time.monotonic() + 180
        with Ledger.open_store(work.ledger) as ledger:
            while victim_pid is None and time.monotonic() < deadline:
                time.sleep(0.02)
                victim_pid = _in_flight(ledger, pids)
        if victim_pid is None:
            for p in procs:
                p.kill()
            details = [(p.wait(), p.stderr.read().decode()[-400:] if p.stderr else "") for p in procs]
            raise AssertionError(f"no worker had a request out within 180 s: {details}")
        victim = next(p for p in procs if p.pid == victim_pid)
        victim.send_signal(signal.SIGKILL)
        victim.communicate()
        others = [p for p in procs if p is not victim]
        outputs = [p.communicate(timeout=300) for p in others]
        assert [p.returncode for p in others] == [0, 0], [err.decode()[-800:] for _, err in outputs]

        time.sleep(LEASE + 0.5)  # the killed worker's lease runs out
        fourth = subprocess.run(kr.command(work, "--worker"), env=work.env, capture_output=True, timeout=300)
        out = fourth.stdout.decode() + fourth.stderr.decode()
        states = kr.states(work)
        unknown = {e for e, s in states.items() if s == "unknown"}
        with Ledger.open_store(work.ledger) as ledger:
            (victim_run,) = ledger._db.read("SELECT id FROM runs WHERE pid = ?", (victim_pid,)).fetchone()
            held = ledger.unknown_batches(kr.EDITION)
        assert fourth.returncode == 4 and "held with an unknown outcome" in out, out[-800:]
        assert held and {b.id.split("-")[0] for b in held} == {f"r{victim_run}"}  # the killed worker's, only
        assert len(unknown) == sum(b.size for b in held) and set(states.values()) == {"sent", "unknown"}

        got = kr.received(emulator)
        assert max(got.values()) == 1  # no duplicates, before the events either
        assert statuses_ok(kr.deliver_events(work, emulator))
        final = subprocess.run(kr.command(work), env=work.env, capture_output=True, timeout=300)
        assert final.returncode == 0, (final.stdout + final.stderr).decode()[-800:]
        got = kr.received(emulator)
    assert sorted(got) == sorted(work.emails) and set(got.values()) == {1}
    assert set(kr.states(work).values()) == {"sent"}
    with Ledger.open_store(work.ledger) as ledger:
        outcomes = {r.id: r.outcome for r in ledger.runs(kr.EDITION)}
        finished = ledger.edition(kr.EDITION)
        listers = ledger._db.read("SELECT count(*) FROM runs WHERE listed IS NOT NULL").fetchone()[0]
    assert listers == 2  # one of the three started together read the list, the others waited; the fourth, alone
    assert outcomes[victim_run] == "died" and None not in outcomes.values() and len(outcomes) == 5, outcomes
    assert finished is not None and finished.finished_at


def statuses_ok(statuses: list[int]) -> bool:
    return bool(statuses) and all(s == 200 for s in statuses)
