"""Kill: real `digest send` processes killed with SIGKILL at random points, re-run until done; and two at once.

The harness is benchmarks/kill_and_rerun.py (also runnable by hand for figures). It drives only the CLI:
killed runs, re-runs that hold unknown batches and send everyone else, SendGrid's signed events posted to
`digest unsubscribe-server`, and one more run that sends exactly what the emulator never received.
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
