"""Kill real `digest send` runs with SIGKILL at random points, re-run as cron would, deliver SendGrid's events, count.

    python benchmarks/kill_and_rerun.py                    # 5,000 recipients, batches of 100, 10 kills
    python benchmarks/kill_and_rerun.py --kills 25 --seed 7

A SendGrid emulator runs in this process with a fault mix: 10% 500s, 5% 429s with a reset, 3% answers
dropped after the request was stored, and every other request held a moment *before* it is stored (a
kill then leaves it cut off on the wire: never received) and answered a moment *after* (a kill then
leaves it received, unanswered). The harness only drives the CLI, as cron and SendGrid would:

1. `digest send ... --yes` runs, each SIGKILLed at a random moment, until the edition has had its kills;
   then runs until one exits 0 or 4 (a run holds unknown batches and sends everyone else);
2. `digest unsubscribe-server` runs with DIGEST_SENDGRID_WEBHOOK_KEY, and the emulator posts its signed
   events (for every request it stored, answered or not) to /webhooks/sendgrid;
3. one more `digest send`: the events settled every unknown batch, so it sends exactly those the
   emulator never received (faults go on: should that run leave new unknowns, 2 and 3 repeat).

It checks: 0 duplicates, 0 never attempted, 0 unknown left, every recipient the emulator received is
marked sent, and every one it had not received got it from the last run. Prints the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

EDITION = "mayors-innovation-2020-01"
NEWSLETTER = "mayors-innovation"
SECRET = "kill-and-rerun-secret-0123456789abcdef"


@dataclass
class Workdir:
    root: Path
    config: Path
    build: Path
    recipients: Path
    ledger: Path
    emails: list[str]
    env: dict[str, str]


@dataclass
class Figures:
    recipients: int = 0
    rounds: int = 0
    kills: int = 0
    runs: int = 0
    exit_codes: dict[str, int] = field(default_factory=dict)
    cut_off_on_the_wire: int = 0  # requests a kill cut off before the emulator stored them
    dropped_answers: int = 0  # requests stored whose answer the emulator dropped
    held_runs: int = 0  # runs that held unknown batches and sent the rest (exit 4)
    event_posts: int = 0  # signed posts of events to the webhook
    runs_after_events: int = 0  # runs until one exited 0 (more than one when a fault left new unknowns)
    settled_sent: int = 0  # unknown recipients the events showed received
    settled_resend: int = 0  # unknown recipients the events showed never accepted (sent by the last run)
    duplicates: int = 0  # addresses received more than once
    never_attempted: int = 0  # addresses never received when the edition was done
    unknown_left: int = 0
    received_not_sent: int = 0  # received by the emulator, not marked sent (must stay 0)
    sent_but_missing: int = 0  # marked sent, never received (must stay 0)
    missing_after_last_run: int = 0  # not received before the last run and still not after it (must stay 0)
    seconds: float = 0.0
    violations: list[str] = field(default_factory=list)


REPO = Path(__file__).resolve().parent.parent


def prepare(root: Path, emulator_url: str, count: int, batch_size: int) -> Workdir:
    """A newsletter folder: digest.toml (the repository's content and templates, the ledger in `root`),
    the January 2020 edition built by `digest build`, and a recipients CSV of `count` people."""
    root.mkdir(parents=True, exist_ok=True)
    config = root / "digest.toml"
    config.write_text(
        'name = "Mayors Innovation Project"\n'
        'slug = "mayors-innovation"\n'
        'sender = "Mayors Innovation Project <news@example.org>"\n'
        'postal_address = "1180 Observatory Drive, Madison, WI 53706"\n'
        'base_url = "https://example.org"\n'
        f'content_dir = "{REPO / "content"}"\n'
        f'templates_dir = "{REPO / "templates"}"\n'
        'ledger_path = "ledger.sqlite3"\n'
        'backend = "sendgrid"\n'
        # Short waits: 5xx retried at once, a 429 waits for its reset; events settle without a wait.
        f"[sendgrid]\nbatch_size = {batch_size}\ntimeout = 10.0\nmax_retries = 8\nevents_wait_hours = 0\n",
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
        "DIGEST_UNSUBSCRIBE_SECRET": SECRET,
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
        "PYTHONUNBUFFERED": "1",
    }
    build = root / "build"
    subprocess.run(
        [sys.executable, "-m", "digest", "build", "--month", "2020-01", "--out", str(build)],
        env=env, check=True, capture_output=True,
    )  # fmt: skip
    return Workdir(root, config, build, root / "members.csv", root / "ledger.sqlite3", emails, env)


def command(work: Workdir, *flags: str) -> list[str]:
    """`digest send` of the built edition to the list, unattended (SpamAssassin is not what is tested here)."""
    return [
        sys.executable, "-m", "digest", "send", "--from-build", str(work.build), "--recipients", str(work.recipients),
        "--backend", "sendgrid", "--yes", "--no-spamassassin", *flags,
    ]  # fmt: skip


def faults(emulator: Any, seed: int, step: float) -> None:
    """The fault mix, drawn per request in this order (the first that hits answers)."""
    emulator.reset()
    emulator.add_fault(500, rate=0.10, seed=seed)
    emulator.add_fault(429, reset_in=0.5, rate=0.05, seed=seed + 1)
    emulator.add_fault(drop=True, rate=0.03, seed=seed + 2)
    emulator.add_fault(hold=2 * step, delay=step, rate=1.0, seed=seed + 3)


def received(emulator: Any) -> Counter[str]:
    """How many times each address arrived at the provider."""
    return Counter(str(m["email"]).lower() for m in emulator.messages(include_content=False))


def states(work: Workdir) -> dict[str, str]:
    """Each recipient's state, read straight from the ledger file (read-only: the harness decides nothing)."""
    with sqlite3.connect(f"file:{work.ledger}?mode=ro", uri=True) as conn:
        rows = conn.execute("SELECT email_norm, state FROM recipient_rows WHERE edition = ?", (EDITION,))
        return dict(rows.fetchall())


def run(work: Workdir, figures: Figures) -> tuple[int, str]:
    proc = subprocess.run(command(work), env=work.env, capture_output=True, text=True, timeout=600)
    figures.runs += 1
    figures.exit_codes[str(proc.returncode)] = figures.exit_codes.get(str(proc.returncode), 0) + 1
    return proc.returncode, proc.stdout + proc.stderr


def deliver_events(work: Workdir, emulator: Any) -> list[int]:
    """`digest unsubscribe-server` with the emulator's verification key; the emulator posts its events to it."""
    env = {**work.env, "DIGEST_SENDGRID_WEBHOOK_KEY": emulator.webhook_signer.public_key}
    server = subprocess.Popen(
        [sys.executable, "-m", "digest", "unsubscribe-server", "--port", "0"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        url = ""
        assert server.stdout is not None
        for line in server.stdout:
            if line.startswith("SendGrid events: http"):
                url = line.split(": ", 1)[1].split(" -> ", 1)[0].strip()
                break
        if not url:
            raise RuntimeError(f"the webhook did not start: {server.stderr.read() if server.stderr else ''}")
        return list(emulator.deliver_events(url))
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()


def run_round(
    work: Workdir,
    emulator: Any,
    figures: Figures,
    rng: random.Random,
    kills: int,
    window: tuple[float, float],
) -> None:
    """Kill runs while the edition has work and kills are left; then run to an end (0 or 4), deliver the events,
    run once more, and check."""
    for _ in range(kills * 4 + 40):
        if figures.kills >= kills:
            break
        proc = subprocess.Popen(command(work), env=work.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        figures.runs += 1
        try:
            code = proc.wait(timeout=rng.uniform(*window))
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            figures.kills += 1
            figures.exit_codes["killed"] = figures.exit_codes.get("killed", 0) + 1
            time.sleep(0.3)  # the emulator finishes with the request the dead run left (held, then dropped)
            continue
        figures.exit_codes[str(code)] = figures.exit_codes.get(str(code), 0) + 1
        if code in (0, 4) and "pending" not in states(work).values():
            break  # the edition ran to its end before the kills did; the next round has more to kill
    for _ in range(40):
        code, out = run(work, figures)
        if code in (0, 4) and "stopped early" not in out:
            figures.held_runs += "held with an unknown outcome" in out
            break
        if code not in (1, 4):
            figures.violations.append(f"{work.root}: a run exited {code}: {out[-400:]}")
            return
    else:
        figures.violations.append(f"{work.root}: no run reached the end")
        return
    before = states(work)
    got = received(emulator)
    figures.received_not_sent += sum(1 for e, n in got.items() if n and before.get(e) not in ("sent", "unknown"))
    not_received = {e for e in work.emails if not got[e]}
    for _ in range(5):  # the faults go on: a run after the events may leave new unknowns for the next events
        statuses = deliver_events(work, emulator)
        figures.event_posts += len(statuses)
        if any(s != 200 for s in statuses):
            figures.violations.append(f"{work.root}: webhook answered {statuses}")
        code, out = run(work, figures)
        figures.runs_after_events += 1
        if code == 0:
            break
    else:
        figures.violations.append(f"{work.root}: the runs after the events did not end with exit 0: {out[-400:]}")
    settled = Counter(s for e, s in before.items() if s == "unknown" and e in got)
    figures.settled_sent += settled["unknown"]
    figures.settled_resend += sum(1 for e, s in before.items() if s == "unknown" and not got[e])
    after, got = states(work), received(emulator)
    figures.duplicates += sum(1 for n in got.values() if n > 1)
    figures.never_attempted += sum(1 for e in work.emails if not got[e])
    figures.unknown_left += sum(1 for s in after.values() if s == "unknown")
    figures.received_not_sent += sum(1 for e in got if after.get(e) != "sent")
    figures.sent_but_missing += sum(1 for e, s in after.items() if s == "sent" and not got[e])
    figures.missing_after_last_run += sum(1 for e in not_received if not got[e])
    stats = emulator.stats()
    figures.cut_off_on_the_wire += int(stats["cut_off"])
    figures.dropped_answers += int(stats["dropped"])


def campaign(
    root: Path,
    emulator: Any,
    *,
    recipients: int,
    batch_size: int,
    kills: int,
    seed: int,
    step: float = 0.05,
    window: tuple[float, float] = (0.6, 1.8),
) -> Figures:
    """Rounds of one fresh edition each (usually one) until `kills` runs were killed mid-send."""
    rng = random.Random(seed)
    figures = Figures()
    started = time.monotonic()
    while figures.kills < kills and figures.rounds < 5:
        figures.rounds += 1
        faults(emulator, seed + figures.rounds * 10, step)
        work = prepare(root / f"round{figures.rounds}", emulator.url, recipients, batch_size)
        figures.recipients += recipients
        run_round(work, emulator, figures, rng, kills, window)
    figures.seconds = round(time.monotonic() - started, 1)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipients", type=int, default=5000)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--step", type=float, default=0.05, help="emulator delay per request (its hold: twice), s")
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
            step=args.step,
        )
    print(json.dumps(asdict(figures), indent=2))
    print(
        f"seed {args.seed}: {figures.kills} kills ({figures.cut_off_on_the_wire} cut off on the wire), {figures.runs} "
        f"runs, {figures.dropped_answers} dropped answers; events settled {figures.settled_sent} sent and "
        f"{figures.settled_resend} never received (sent by the last run); {figures.duplicates} duplicates, "
        f"{figures.never_attempted} never attempted, {figures.unknown_left} unknown left, in {figures.seconds} s"
    )
    bad = figures.duplicates or figures.never_attempted or figures.unknown_left or figures.received_not_sent
    return 1 if figures.violations or bad or figures.sent_but_missing or figures.missing_after_last_run else 0


if __name__ == "__main__":
    sys.exit(main())
