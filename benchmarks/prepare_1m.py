"""1,000,000 recipients prepared for SendGrid, not posted: does memory stay flat as the list grows?
And with --ledger: how big is the ledger after one and two editions to 1,000,000 members?

    python benchmarks/prepare_1m.py                       # 1,000,000 rows
    python benchmarks/prepare_1m.py --tracemalloc         # and again under tracemalloc (~6x slower)
    python benchmarks/prepare_1m.py --rows 200000 --json benchmarks/out/prepare.json
    python benchmarks/prepare_1m.py --ledger --baseline e7f24bf   # ledger sizes, this tree vs schema 2 (e7f24bf)

--ledger sends two editions to the same list through the real send loop (send.prepare_send + execute_send: the CSV
streamed in, batches of 1,000 claimed, reserved, promoted and recorded, the newsletter lock held) to a
backend that accepts every batch at once, so only the ledger's work is left; after each edition it
reports the ledger's size on disk (the file, once the last connection has closed it), the time and the
child's peak RSS. --baseline REV does the same, in the same run, with the `src/` of another commit
(`git archive`), e.g. the last one with the version-2 schema.

"Prepared" is everything `digest send --backend sendgrid` does to a recipient before the HTTP request,
through the real code paths, in batches of 1,000 as the send loop makes them:

- recipients.read_recipients: the CSV streamed, every address validated and de-duplicated;
- pipeline._personalizer (what `digest send` uses): unsubscribe URL with its HMAC token, List-Unsubscribe
  headers, view URL;
- SendGridBackend.build_body: the request body of 1,000 personalizations, written as JSON bytes (no request
  is made).

No ledger here (its memory is SQLite's bounded page cache; the 100k send benchmark covers it).

A child process does the work and samples, at 100k, 250k, 500k and 1M rows (and a few more): VmRSS and
VmHWM from /proc/self/status, and the bytes of the one structure that must grow with the list: the
de-duplication index in recipients.py (`_Seen`: two flat arrays of 8-byte digests and 4-byte line numbers,
doubling at half load), read from the generator's frame. With --tracemalloc a second child does the same
under tracemalloc (current and peak traced bytes per interval; ~6x slower, so its times are not the figures).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
WINDOW = ["--since", "2012-01-01", "--until", "2020-03-31"]
SECRET = "benchmark-unsubscribe-secret-0123456789"
CHECKPOINTS = (10_000, 100_000, 250_000, 500_000, 750_000, 1_000_000)


def digest_command() -> list[str]:
    script = Path(sys.executable).with_name("digest")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "digest"]


def write_csv(path: Path, count: int) -> None:
    with path.open("w", encoding="utf-8") as fh:
        fh.write("email,name\n")
        for start in range(0, count, 100_000):
            fh.write(
                "".join(
                    f"member{i:07d}@example.org,Member Number {i}\n" for i in range(start, min(count, start + 100_000))
                )
            )


def write_config(root: Path) -> Path:
    """The same config as the 100k benchmark: the repository's digest.toml with the paths moved into `root`."""
    from sendgrid_100k import write_config as shared  # a sibling script: benchmarks/ is sys.path[0]

    return shared(root)


# --- the child ---------------------------------------------------------------------------------------------


def _status() -> dict[str, float]:
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            out[line.split(":")[0]] = int(line.split()[1]) / 1024
    return out


def child(config: str, build_dir: str, csv_path: str, rows: int, traced: bool) -> None:
    """Prepare every row; print one JSON line per checkpoint, then a summary line."""
    import tracemalloc

    if traced:
        tracemalloc.start()
    started = time.perf_counter()
    from digest import pipeline
    from digest.build import read_build
    from digest.config import load_settings
    from digest.deliver.sendgrid import SendGridBackend
    from digest.models import Recipient
    from digest.personalize import view_url, with_shared_values
    from digest.recipients import read_recipients

    settings = load_settings(config)
    build = read_build(Path(build_dir))
    build = with_shared_values(build, {"view_url": view_url(settings, build.edition)})  # as pipeline.send_edition does
    personalize = pipeline._personalizer(settings, SECRET.encode())
    backend = SendGridBackend(settings.sendgrid)
    stream = read_recipients(Path(csv_path))
    checkpoints = [c for c in CHECKPOINTS if c <= rows] + ([rows] if rows not in CHECKPOINTS else [])
    times = {"csv read + validate": 0.0, "personalise": 0.0, "build_body": 0.0, "json.dumps + encode": 0.0}
    prepared = skipped = body_bytes = batches = 0
    batch: list[Any] = []
    loop_started = last = time.perf_counter()

    def sample() -> None:
        seen = stream.gi_frame.f_locals.get("seen") if stream.gi_frame is not None else None  # type: ignore[attr-defined]
        seen_bytes = 0
        if seen is not None:  # what the two arrays have allocated (an array may hold spare room)
            seen_bytes = sys.getsizeof(seen._keys) + sys.getsizeof(seen._lines)
        status = _status()
        point: dict[str, Any] = {
            "rows": prepared,
            "rss_mb": status["VmRSS"],
            "hwm_mb": status["VmHWM"],
            "seen_mb": seen_bytes / 2**20,
            "seen_entries": len(seen) if seen is not None else 0,
            "seen_slots": len(seen._keys) if seen is not None else 0,
            "rss_minus_seen_mb": status["VmRSS"] - seen_bytes / 2**20,
            "seconds": time.perf_counter() - loop_started,
        }
        if traced:
            current, peak = tracemalloc.get_traced_memory()
            point.update(traced_mb=current / 2**20, traced_peak_mb=peak / 2**20)
            tracemalloc.reset_peak()  # the next sample's peak is that interval's
        print(json.dumps(point), flush=True)

    def flush() -> None:
        nonlocal body_bytes, batches
        a = time.perf_counter()
        body, _, _ = backend.build_body(build, batch, f"r1-b{batches + 1:05d}", False)
        b = time.perf_counter()
        data = body  # build_body writes the JSON itself: nothing is left to serialise
        c = time.perf_counter()
        times["build_body"] += b - a
        times["json.dumps + encode"] += c - b
        body_bytes += len(data)
        batches += 1
        batch.clear()

    for row in stream:
        now = time.perf_counter()
        times["csv read + validate"] += now - last
        if not isinstance(row, Recipient):
            skipped += 1
            last = time.perf_counter()
            continue
        batch.append(personalize(row))
        prepared += 1
        last = time.perf_counter()
        times["personalise"] += last - now
        if len(batch) == backend.batch_size:
            flush()
            if prepared in checkpoints:
                sample()
            last = time.perf_counter()
    if batch:
        flush()
        sample()
    total = time.perf_counter() - loop_started
    print(json.dumps({"done": True, "rows": prepared, "skipped": skipped, "batches": batches,
                      "body_bytes": body_bytes, "seconds": total, "startup_s": loop_started - started,
                      "times": times}), flush=True)  # fmt: skip


# --- the ledger child ---------------------------------------------------------------------------------------


def ledger_child_send(location: str, csv_path: str, month: int) -> int:
    """One edition to the list through the ledger at `location` (a path or a URL) and a provider that
    takes every batch at once; returns how many were sent."""
    from digest.deliver.base import BatchResult, Personal
    from digest.ledger import Ledger
    from digest.models import Build
    from digest.recipients import read_recipients
    from digest.send import execute_send, prepare_send

    class AcceptAll:
        """A provider that takes every batch at once: what is left to measure is the ledger."""

        name = "accept-all"
        batch_size = 1000
        concurrency = 4  # SendGrid's default: the send loop keeps as many batches out as it would there

        def open(self) -> None: ...

        def close(self) -> None: ...

        def send_batch(self, build: Build, batch: list[Personal], batch_id: str, test: bool = False) -> BatchResult:
            return BatchResult(sent=[p.recipient.email for p in batch], provider_id=batch_id)

    build = Build(folder=Path("build"), edition=f"bench-2020-{month:02d}", newsletter="bench",
                  period=f"2020-{month:02d}", content_hash=f"sha256:{month:064d}", subject="Bench", preheader="",
                  html="<p>Hi</p>", text="Hi", sender="Bench <bench@example.org>", reply_to="",
                  manifest={})  # fmt: skip
    open_store = getattr(Ledger, "open_store", Ledger.open)  # (the version-2 tree has only a path)
    with open_store(location) as ledger, _lock(ledger, location):
        plan = prepare_send(build, AcceptAll(), read_recipients(Path(csv_path)), ledger=ledger)
        report = execute_send(plan, personalize=lambda r: Personal(r, {}, {}))
    return report.sent


def _lock(ledger: Any, location: str) -> Any:
    if hasattr(ledger, "newsletter_lock"):
        return ledger.newsletter_lock("bench")
    from digest.lock import newsletter_lock

    return newsletter_lock(Path(location), "bench")


def ledger_child(csv_path: str, ledger_path: str, editions: int) -> None:
    """Send `editions` editions to the list through the ledger; print one JSON line per edition."""
    path = Path(ledger_path)
    for month in range(1, editions + 1):
        started = time.perf_counter()
        sent = ledger_child_send(ledger_path, csv_path, month)
        seconds = time.perf_counter() - started
        print(json.dumps({"edition": month, "sent": sent, "seconds": seconds, "bytes": path.stat().st_size,
                          "hwm_mb": _status()["VmHWM"]}), flush=True)  # fmt: skip


def run_ledger(root: Path, csv_path: Path, rows: int, editions: int, baseline: str | None) -> dict[str, Any]:
    """Both trees (this one, and `baseline`'s src if given) side by side; returns the figures."""
    contenders: list[tuple[str, dict[str, str]]] = [("this tree", {})]
    if baseline:
        src = root / f"src-{baseline}"
        src.mkdir(exist_ok=True)
        archive = subprocess.run(["git", "-C", str(REPO), "archive", baseline, "src"], check=True, capture_output=True)
        subprocess.run(["tar", "-x", "-C", str(src)], input=archive.stdout, check=True)
        contenders.append((baseline, {"PYTHONPATH": str(src / "src")}))
    figures: dict[str, Any] = {}
    print(f"\n{rows:,} members, {editions} editions to the same list (ledger file after each, MB = 10^6 bytes)")
    print(f"{'tree':<12} {'edition':>7} {'ledger MB':>10} {'added MB':>9} {'B/member':>9} {'s':>7} {'peak RSS MB':>12}")
    for name, env in contenders:
        ledger_path = root / f"ledger-{name.replace(' ', '-')}.sqlite3"
        proc = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "--ledger-child", str(csv_path), str(ledger_path),
             str(editions)],
            capture_output=True, text=True, env={**os.environ, **env},
        )  # fmt: skip
        if proc.returncode != 0:
            raise SystemExit(f"ledger child ({name}) failed ({proc.returncode}):\n{proc.stderr}")
        points = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
        figures[name] = points
        previous = 0
        for p in points:
            added = p["bytes"] - previous
            previous = p["bytes"]
            print(f"{name:<12} {p['edition']:>7} {p['bytes'] / 1e6:>10.1f} {added / 1e6:>9.1f} "
                  f"{added / rows:>9.0f} {p['seconds']:>7.1f} {p['hwm_mb']:>12.0f}")  # fmt: skip
    return figures


# --- the parent --------------------------------------------------------------------------------------------


def run_child(args: list[str]) -> tuple[list[dict[str, Any]], dict[str, Any], float]:
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", *args], capture_output=True, text=True
    )
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"child failed ({proc.returncode}):\n{proc.stderr}")
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return [x for x in lines if "done" not in x], next(x for x in lines if "done" in x), wall


def machine() -> str:
    model = next(
        (ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines() if "model name" in ln),
        platform.processor(),
    )
    load = os.getloadavg()
    return f"{os.cpu_count()} CPUs ({model}), Python {platform.python_version()}, load {load[0]:.2f} {load[1]:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--tracemalloc", action="store_true", help="also a second run under tracemalloc (~6x slower)")
    parser.add_argument("--workdir", help="keep the work files here (default: a temp folder, removed)")
    parser.add_argument("--json", help="write the figures here")
    parser.add_argument("--ledger", action="store_true", help="measure the ledger's size over editions instead")
    parser.add_argument("--editions", type=int, default=2, help="with --ledger: editions sent to the list")
    parser.add_argument("--baseline", help="with --ledger: also measure this git revision's src (side by side)")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    parser.add_argument("--ledger-child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        config, build_dir, csv_path, rows, traced = args.child
        child(config, build_dir, csv_path, int(rows), traced == "1")
        return
    if args.ledger_child:
        csv_arg, ledger_arg, editions = args.ledger_child
        ledger_child(csv_arg, ledger_arg, int(editions))
        return

    root = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="prepare_1m-"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        print(f"machine: {machine()}", flush=True)
        csv_path = root / "members.csv"
        write_csv(csv_path, args.rows)
        if args.ledger:
            figures = run_ledger(root, csv_path, args.rows, args.editions, args.baseline)
            if args.json:
                Path(args.json).parent.mkdir(parents=True, exist_ok=True)
                Path(args.json).write_text(json.dumps({"machine": machine(), "rows": args.rows, "ledger": figures},
                                                      indent=2) + "\n", encoding="utf-8")  # fmt: skip
            return
        config = write_config(root)
        build_dir = root / "build"
        env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
        subprocess.run([*digest_command(), "build", *WINDOW, "--out", str(build_dir)], cwd=REPO, env=env,
                       check=True, stdout=subprocess.DEVNULL)  # fmt: skip
        print(f"{args.rows:,} rows, CSV {csv_path.stat().st_size / 2**20:.1f} MB", flush=True)
        summary: dict[str, Any] = {"machine": machine(), "rows": args.rows}
        passes = [("plain", "0")] + ([("tracemalloc", "1")] if args.tracemalloc else [])
        for name, traced in passes:
            points, done, wall = run_child([str(config), str(build_dir), str(csv_path), str(args.rows), traced])
            summary[name] = {"points": points, "done": done, "process_s": wall}
            print(f"\n{name}: {done['rows']:,} prepared in {done['seconds']:.1f} s "
                  f"({done['rows'] / done['seconds']:,.0f} rows/s; process {wall:.1f} s), {done['batches']} bodies, "
                  f"{done['body_bytes'] / 2**30:.2f} GiB of JSON", flush=True)  # fmt: skip
            header = f"{'rows':>9} {'RSS MB':>7} {'HWM MB':>7} {'dedupe MB':>9} {'slots':>9} {'RSS-dedupe':>10}"
            header += f" {'traced MB':>9} {'peak MB':>8}" if traced == "1" else f" {'s':>6}"
            print(header)
            for p in points:
                line = (f"{p['rows']:>9,} {p['rss_mb']:>7.1f} {p['hwm_mb']:>7.1f} {p['seen_mb']:>9.1f} "
                        f"{p['seen_slots']:>9,} {p['rss_minus_seen_mb']:>10.1f}")  # fmt: skip
                line += (
                    f" {p['traced_mb']:>9.1f} {p['traced_peak_mb']:>8.1f}"
                    if traced == "1"
                    else f" {p['seconds']:>6.1f}"
                )
                print(line)
            if traced == "0":
                print("time by stage (s): " + ", ".join(f"{k} {v:.2f}" for k, v in done["times"].items()))
        if args.json:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    finally:
        if not args.workdir:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
