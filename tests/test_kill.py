"""Kill: real `digest send` processes killed with SIGKILL at random points, re-run until done; and two at once.

The harness is benchmarks/kill_and_rerun.py (also runnable by hand for figures). It drives only the CLI:
killed runs, re-runs that hold unknown batches and send everyone else, SendGrid's signed events posted to
`digest unsubscribe-server`, and one more run that sends exactly what the emulator never received.
Over SMTP, where a batch of 20 messages is not one request, kills are checked against the server's log.
"""

from __future__ import annotations

import importlib.util
import os
import random
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from digest.ledger import Ledger
from digest.testing.sendgrid_emulator import SendGridEmulator

REPO = Path(__file__).resolve().parent.parent


def harness() -> ModuleType:
    spec = importlib.util.spec_from_file_location("kill_and_rerun", REPO / "benchmarks" / "kill_and_rerun.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["kill_and_rerun"] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_sigkilled_runs_never_double_or_lose_anyone(tmp_path: Path) -> None:
    """10+ SIGKILLs over a 5,000-recipient send with faults; after the events, everyone has it exactly once."""
    kr: Any = harness()
    seed = int(os.environ.get("DIGEST_KILL_SEED", random.randrange(1 << 30)))
    with SendGridEmulator() as emulator:
        figures = kr.campaign(tmp_path, emulator, recipients=5000, batch_size=100, kills=10, seed=seed)
    context = f"seed {seed} (DIGEST_KILL_SEED={seed} to repeat): {figures}"
    assert figures.kills >= 10, context
    assert figures.violations == [], context
    assert (figures.duplicates, figures.never_attempted, figures.unknown_left) == (0, 0, 0), context
    assert (figures.received_not_sent, figures.sent_but_missing, figures.missing_after_last_run) == (0, 0, 0), context
    assert figures.settled_sent + figures.settled_resend >= 1, context  # some kills did leave batches unknown


@pytest.mark.slow
def test_two_runs_started_together_one_is_locked_out(tmp_path: Path) -> None:
    """Two sends of one newsletter at once: one sends, the other exits 5 (locked) at once; nobody gets two."""
    kr: Any = harness()
    with SendGridEmulator() as emulator:
        emulator.add_fault(delay=0.1, rate=1.0)
        work = kr.prepare(tmp_path, emulator.url, 2000, 100)
        started = time.monotonic()
        procs = [
            subprocess.Popen(kr.command(work), env=work.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)
        ]
        outcomes = [(p.wait(timeout=120), p.communicate()) for p in procs]
        codes = sorted(code for code, _ in outcomes)
        locked_err = next(err for code, (_, err) in outcomes if code == 5) if 5 in codes else ""
        got = Counter(str(m["email"]) for m in emulator.messages(include_content=False))
    assert codes == [0, 5], outcomes
    assert "another digest run for newsletter mayors-innovation is in progress" in locked_err
    assert time.monotonic() - started < 60
    assert len(got) == 2000 and set(got.values()) == {1}
    with Ledger.open(work.ledger) as ledger:
        assert ledger.counts(kr.EDITION)["sent"] == 2000


class _SlowSink:
    """An aiosmtpd Sink (tests/_smtp_server.py) offering PIPELINING that stores each message, then answers
    `delay` seconds later, seen through the harness's provider interface (messages, reset, add_fault)."""

    url = "http://127.0.0.1:9"  # the harness passes it to SendGrid's setting; SMTP does not use it

    def __init__(self) -> None:
        import asyncio

        from _smtp_server import Sink

        outer = self
        self.delay = 0.0

        class Slow(Sink):
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                reply = await super().handle_DATA(server, session, envelope)
                await asyncio.sleep(outer.delay)  # stored ("queued"), the answer not yet sent: a kill makes it unknown
                return reply

        self.sink = Slow(pipelining=True)

    def messages(self, include_content: bool = False) -> list[dict[str, str]]:
        return [{"email": email} for email in self.sink.recipients()]

    def reset(self) -> None:
        with self.sink._lock:
            self.sink.messages.clear()

    def add_fault(self, delay: float = 0.0, rate: float = 1.0) -> None:
        self.delay = delay


@pytest.mark.slow
def test_sigkilled_smtp_runs_over_two_connections_leave_at_most_two_batches_unknown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGKILLs of SMTP sends at the default 2 connections (pipelining on): nobody arrives twice, everyone the
    ledger calls sent arrived, nobody it still calls pending did, and at most 2 batches of 20 are unknown."""
    import signal

    from _smtp_server import running

    from digest.ledger import Ledger

    kr: Any = harness()
    rng = random.Random(int(os.environ.get("DIGEST_KILL_SEED", random.randrange(1 << 30))))
    provider = _SlowSink()
    provider.add_fault(delay=0.02)
    with running(provider.sink) as controller:
        monkeypatch.setenv("DIGEST_SMTP_HOST", "127.0.0.1")
        monkeypatch.setenv("DIGEST_SMTP_PORT", str(controller.port))
        monkeypatch.setenv("DIGEST_SMTP_SECURITY", "none")
        unknown = 0
        for round_no in range(4):
            provider.reset()
            work = kr.prepare(tmp_path / f"round{round_no}", provider.url, 400, 20)
            cmd = ["smtp" if part == "sendgrid" else part for part in kr.command(work)]
            proc = subprocess.Popen(cmd, env=work.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            deadline = time.monotonic() + 60
            while not provider.messages() and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.01)  # killed once sending has begun (start-up time varies with the host's load)
            time.sleep(rng.uniform(0.0, 1.0))
            proc.send_signal(signal.SIGKILL)
            proc.communicate()
            time.sleep(0.3)  # a message whose data the server was reading is stored by now
            got = Counter(m["email"].lower() for m in provider.messages())
            with Ledger.open(work.ledger) as ledger:
                ledger.recover_in_flight(kr.EDITION)
                states = {state: {e.lower() for e, _ in ledger.recipients_in(kr.EDITION, state)}
                          for state in ("sent", "unknown", "pending")}  # fmt: skip
            context = f"round {round_no}: {len(got)} arrived, " + ", ".join(f"{k} {len(v)}" for k, v in states.items())
            assert all(n == 1 for n in got.values()), context
            assert states["sent"] <= set(got), context
            assert not (set(got) & states["pending"]), context
            assert len(states["unknown"]) <= 2 * 20, context
            unknown += len(states["unknown"])
    assert unknown > 0  # some kills did land while messages were out
