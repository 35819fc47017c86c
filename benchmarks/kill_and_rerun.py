"""Kill real `digest send` runs with SIGKILL at random points, re-run until the edition is done, count what arrived.

    python benchmarks/kill_and_rerun.py                    # 5,000 recipients, batches of 250, 10 kills
    python benchmarks/kill_and_rerun.py --recipients 20000 --kills 25 --seed 7

A SendGrid emulator runs in this process (a small delay per request, so kills land mid-request too);
each run is a separate `python -m digest send --backend sendgrid --yes` process against it. After each kill the
harness does what an operator would: it looks at the batches the dead run left in flight, asks the provider
(the emulator's message log, standing in for SendGrid's Activity feed) whether they arrived, and re-runs with
--mark-unknown-sent or --resend-unknown accordingly. It checks after every run:

- nobody the ledger calls `sent` is missing at the provider (never silently dropped);
- no address arrived twice (nothing doubled by a re-run).

Prints the figures: kills, runs, unknown batches (and how they were decided), duplicates, missed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

EDITION = "mayors-innovation-2020-01"
NEWSLETTER = "mayors-innovation"


@dataclass
class Workdir:
    root: Path
    config: Path
    build: Path
    recipients: Path
    ledger: Path | str
    emails: list[str]
    env: dict[str, str]


@dataclass
class Figures:
    recipients: int = 0
    kills: int = 0
    runs: int = 0
    exit_codes: dict[str, int] = field(default_factory=dict)
    unknown_batches: int = 0
    decided_mark_sent: int = 0
    decided_resend: int = 0
    duplicates: int = 0  # addresses received more than once
    missed: int = 0  # addresses never received when the edition was done
    sent_but_missing: int = 0  # ledger said sent, provider never got it (must stay 0)
    seconds: float = 0.0
    violations: list[str] = field(default_factory=list)


REPO = Path(__file__).resolve().parent.parent


def prepare(root: Path, emulator_url: str, count: int, batch_size: int, ledger_url: str = "") -> Workdir:
    """A newsletter folder: digest.toml (the repository's content and templates, the ledger in `root`, or
    at `ledger_url` in PostgreSQL), the January 2020 edition built by `digest build`, and a recipients CSV
    of `count` people."""
    root.mkdir(parents=True, exist_ok=True)
    config = root / "digest.toml"
    config.write_text(
        'slug = "mayors-innovation"\n'
        'sender = "Mayors Innovation Project <news@example.org>"\n'
        'postal_address = "1180 Observatory Drive, Madison, WI 53706"\n'
        'base_url = "https://example.org"\n'
        f'content_dir = "{REPO / "content"}"\n'
        f'templates_dir = "{REPO / "templates"}"\n'
        'ledger_path = "ledger.sqlite3"\n'
        'backend = "sendgrid"\n'
        # No retries inside the backend: a kill should meet the batch in flight, not a retry loop.
        f"[sendgrid]\nbatch_size = {batch_size}\ntimeout = 10.0\nmax_retries = 0\n",
        encoding="utf-8",
    )
    emails = [f"member{i:06d}@example.org" for i in range(count)]
    with (root / "members.csv").open("w", encoding="utf-8") as fh:
        fh.write("email,name\n")
        for i, email in enumerate(emails):
            fh.write(f"{email},Member {i}\n")
    env = {
        **os.environ,
        "DIGEST_CONFIG": str(config),
        "DIGEST_SENDGRID_HOST": emulator_url,
        "SENDGRID_API_KEY": "SG.test-key",
        "DIGEST_UNSUBSCRIBE_SECRET": "kill-and-rerun-secret-0123456789abcdef",
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
        **({"DIGEST_LEDGER_URL": ledger_url} if ledger_url else {}),
    }
    build = root / "build"
    subprocess.run(
        [sys.executable, "-m", "digest", "build", "--month", "2020-01", "--out", str(build)],
        env=env, check=True, capture_output=True,
    )  # fmt: skip
    return Workdir(root, config, build, root / "members.csv", ledger_url or root / "ledger.sqlite3", emails, env)


def command(work: Workdir, *flags: str) -> list[str]:
    """`digest send` of the built edition to the list, unattended (SpamAssassin is not what is tested here)."""
    return [
        sys.executable, "-m", "digest", "send", "--from-build", str(work.build), "--recipients", str(work.recipients),
        "--backend", "sendgrid", "--yes", "--no-spamassassin", *flags,
    ]  # fmt: skip


def received(emulator: Any) -> Counter[str]:
    """How many times each address arrived at the provider."""
    return Counter(str(m["email"]).lower() for m in emulator.messages(include_content=False))


def decide(work: Workdir, emulator: Any, figures: Figures) -> list[str]:
    """The operator's step after a crash: look each in-flight batch up at the provider; return the flag to use.

    Mixed decisions (one batch arrived, another did not) are applied batch by batch through the ledger.
    """
    from digest.ledger import Ledger

    with Ledger.open_store(work.ledger) as ledger:
        ledger.recover_in_flight(EDITION)  # what the next run would do first; we hold no lock, but no run is live
        batches = ledger.unknown_batches(EDITION)
        if not batches:
            return []
        got = received(emulator)
        decisions: dict[str, str] = {}
        for batch in batches:
            people = [e for e, b in ledger.recipients_in(EDITION, "unknown") if b == batch.id]
            arrived = sum(1 for e in people if got[e.lower()])
            decisions[batch.id] = "mark-sent" if arrived == len(people) else "resend"
            if 0 < arrived < len(people):
                figures.violations.append(f"batch {batch.id}: {arrived} of {len(people)} arrived (a torn request?)")
        figures.unknown_batches += len(batches)
        figures.decided_mark_sent += sum(1 for d in decisions.values() if d == "mark-sent")
        figures.decided_resend += sum(1 for d in decisions.values() if d == "resend")
        if len(set(decisions.values())) == 1:
            return ["--mark-unknown-sent" if "mark-sent" in decisions.values() else "--resend-unknown"]
        for action in ("mark-sent", "resend"):
            ledger.resolve_unknown(EDITION, action, [b for b, d in decisions.items() if d == action])  # type: ignore[arg-type]
        return []


def check(work: Workdir, emulator: Any, figures: Figures, when: str) -> None:
    """The two invariants that hold at every moment between runs."""
    from digest.ledger import Ledger

    got = received(emulator)
    doubled = sorted(e for e, n in got.items() if n > 1)
    if doubled:
        figures.violations.append(f"{when}: {len(doubled)} addresses arrived twice, e.g. {doubled[:3]}")
    with Ledger.open_store(work.ledger) as ledger:
        missing = [e for e, _ in ledger.recipients_in(EDITION, "sent") if not got[e.lower()]]
    if missing:
        figures.violations.append(f"{when}: {len(missing)} marked sent never arrived, e.g. {missing[:3]}")
        figures.sent_but_missing = max(figures.sent_but_missing, len(missing))


def settle(emulator: Any, delay: float) -> None:
    """Let a request the killed client had already written finish being stored by the emulator."""
    time.sleep(delay + 0.2)


def campaign(
    root: Path,
    emulator: Any,
    *,
    recipients: int,
    batch_size: int,
    kills: int,
    seed: int,
    delay: float,
    window: tuple[float, float] = (0.1, 3.0),
    ledger_url: Callable[[int], str] | None = None,
) -> Figures:
    """Rounds of one fresh edition each: kill runs at random moments (uniform in `window` seconds after the
    start) while the edition has work left, then run it to the end and count arrivals; until `kills` kills."""
    rng = random.Random(seed)
    figures = Figures()
    started = time.monotonic()
    rounds = 0
    while figures.kills < kills and rounds < kills + 5:
        rounds += 1
        emulator.reset()  # forgets messages and faults: one round, one edition, one count
        emulator.add_fault(delay=delay, rate=1.0)  # every request slow, so kills land mid-request too
        url = ledger_url(rounds) if ledger_url else ""  # a fresh PostgreSQL database per round
        work = prepare(root / f"round{rounds}", emulator.url, recipients, batch_size, url)
        figures.recipients += recipients
        run_round(work, emulator, figures, rng, kills, delay, window)
        got = received(emulator)
        figures.duplicates += sum(1 for n in got.values() if n > 1)
        figures.missed += sum(1 for e in work.emails if not got[e])
    figures.seconds = round(time.monotonic() - started, 1)
    return figures


def run_round(
    work: Workdir,
    emulator: Any,
    figures: Figures,
    rng: random.Random,
    kills: int,
    delay: float,
    window: tuple[float, float],
) -> None:
    flags: list[str] = []
    for _ in range(kills * 4 + 20):
        proc = subprocess.Popen(command(work, *flags), env=work.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        figures.runs += 1
        if figures.kills < kills:
            try:
                proc.wait(timeout=rng.uniform(*window))
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
                proc.communicate()
                figures.kills += 1
                figures.exit_codes["killed"] = figures.exit_codes.get("killed", 0) + 1
                settle(emulator, delay)
                check(work, emulator, figures, f"after kill {figures.kills}")
                flags = decide(work, emulator, figures)
                continue
        _, err = proc.communicate(timeout=600)
        code = proc.returncode
        figures.exit_codes[str(code)] = figures.exit_codes.get(str(code), 0) + 1
        check(work, emulator, figures, f"after run {figures.runs} (exit {code})")
        flags = decide(work, emulator, figures)
        if code == 0 and not flags:
            return
        if code not in (1, 4):
            figures.violations.append(f"run {figures.runs} exited {code}: {err.decode(errors='replace')[-400:]}")
            return
    figures.violations.append(f"{work.root}: not done after {figures.runs} runs")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipients", type=int, default=5000)
    parser.add_argument("--batch-size", type=int, default=250)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--delay", type=float, default=0.1, help="emulator delay per request, seconds")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/kill_and_rerun"))
    args = parser.parse_args()

    import shutil

    from digest.testing.sendgrid_emulator import SendGridEmulator

    shutil.rmtree(args.out, ignore_errors=True)
    with SendGridEmulator() as emulator:
        figures = campaign(
            args.out,
            emulator,
            recipients=args.recipients,
            batch_size=args.batch_size,
            kills=args.kills,
            seed=args.seed,
            delay=args.delay,
        )
    print(json.dumps(asdict(figures), indent=2))
    print(
        f"{figures.kills} kills, {figures.runs} runs, {figures.unknown_batches} unknown batches "
        f"({figures.decided_mark_sent} marked sent, {figures.decided_resend} resent), "
        f"{figures.duplicates} duplicates, {figures.missed} missed, {figures.sent_but_missing} sent-but-missing, "
        f"in {figures.seconds} s"
    )
    return 1 if figures.violations or figures.duplicates or figures.missed else 0


if __name__ == "__main__":
    sys.exit(main())
