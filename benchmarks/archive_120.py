"""`digest archive` of 120 editions (ten years of monthly digests): a full regeneration against a no-change one.

    .venv/bin/python benchmarks/archive_120.py [--editions 120] [--rounds 7] [--keep DIR]

Setup (not timed): a newsletter folder with 10 items a month (every third one an event), each month sent
through the real pipeline (`digest send --month ... --backend outbox`, three members), so the ledger
holds 120 editions' web versions as a real send stores them; then build/ is deleted.

Timed, in-process, rounds interleaved: **full** (the archive folder deleted first: every page, the
index, the feed and the .ics files rendered and written, then swapped in) and **no change** (the same
ledger again: everything rendered and compared, nothing written). Medians with min/max; also the bytes
the ledger keeps per edition and the size of the site.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WORDS = [
    "mayors", "cities", "housing", "transit", "water", "budgets", "climate", "equity", "data", "workforce",
    "parks", "safety", "energy", "libraries", "broadband", "health", "food", "zoning", "resilience", "youth",
]  # fmt: skip


def write_content(folder: Path, months: list[tuple[int, int]]) -> None:
    """10 items per month: news and reports, every third item an event a month or two ahead."""
    folder.mkdir(parents=True, exist_ok=True)
    for year, month in months:
        for n in range(10):
            day = 1 + n * 2
            posted = dt.date(year, month, day)
            words = [WORDS[(year * 7 + month * 3 + n + k) % len(WORDS)] for k in range(60)]
            title = f"{words[0].title()} and {words[1]} in {posted:%B %Y}, part {n + 1}"
            front = [f"title: {title}", f"date: {posted.isoformat()}"]
            if n % 3 == 0:
                start = posted + dt.timedelta(days=40)
                end = start + dt.timedelta(days=2)
                front += ["kind: meeting", "event:", f"  start: {start}", f"  end: {end}", "  place: Madison, WI"]
            else:
                front.append("kind: news")
            body = " ".join(words).capitalize() + "."
            path = folder / f"{posted.isoformat()}-item-{year}-{month:02d}-{n + 1}.md"
            path.write_text("---\n" + "\n".join(front) + "\n---\n\n" + body + "\n", encoding="utf-8")


def months_back(count: int) -> list[tuple[int, int]]:
    out, year, month = [], 2020, 12
    for _ in range(count):
        out.append((year, month))
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    return sorted(out)


def prepare(folder: Path, editions: int) -> None:
    from digest import pipeline
    from digest.config import load_settings
    from digest.selection import SelectionOptions

    shutil.copy(REPO / "digest.toml", folder / "digest.toml")
    months = months_back(editions)
    write_content(folder / "content", months)
    (folder / "members.csv").write_text("email,name\na@example.org,A\nb@example.org,B\nc@example.org,C\n")
    settings = load_settings(folder / "digest.toml", env={})

    @contextlib.contextmanager
    def silent(total: int) -> Iterator[object]:
        class Bar:
            def update(self, n: int) -> None:
                pass

        yield Bar()

    hooks = pipeline.SendHooks(notice=lambda message: None, confirm=lambda plan: True, progress=silent)
    for year, month in months:
        request = pipeline.SendRequest(
            opts=SelectionOptions(month=f"{year}-{month:02d}"),
            recipients=folder / "members.csv",
            skip_checks=True,
        )
        report = pipeline.send_edition(settings, request, hooks)
        assert report is not None and report.exit_code == 0, report
    shutil.rmtree(folder / "build")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--editions", type=int, default=120)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--keep", type=Path, help="Set up (or reuse) the newsletter in this folder.")
    args = parser.parse_args()
    os.environ.setdefault("DIGEST_UNSUBSCRIBE_SECRET", "benchmark-secret-0123456789abcdef")
    os.environ.setdefault("XDG_CACHE_HOME", tempfile.mkdtemp(prefix="digest-bench-cache-"))

    from digest.archive import write_archive
    from digest.config import load_settings

    folder = args.keep or Path(tempfile.mkdtemp(prefix="digest-archive-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / "ledger.sqlite3").exists():
        started = time.perf_counter()
        prepare(folder, args.editions)
        print(f"setup: {args.editions} editions sent in {time.perf_counter() - started:.1f} s -> {folder}")
    settings = load_settings(folder / "digest.toml", env={})
    archive = folder / "archive"

    def full() -> float:
        shutil.rmtree(archive, ignore_errors=True)
        started = time.perf_counter()
        outcome = write_archive(settings)
        assert outcome.editions == args.editions and not outcome.unchanged
        return time.perf_counter() - started

    def no_change() -> float:
        started = time.perf_counter()
        outcome = write_archive(settings)
        assert outcome.unchanged
        return time.perf_counter() - started

    full()  # warm-up: imports, compiled templates
    runs: dict[str, list[float]] = {"full regeneration": [], "no-change regeneration": []}
    for _ in range(args.rounds):
        runs["full regeneration"].append(full())
        runs["no-change regeneration"].append(no_change())
    print(f"{args.editions} editions, {args.rounds} rounds (median, min-max):")
    for name, times in runs.items():
        low, high = min(times) * 1000, max(times) * 1000
        print(f"  {name:<24} {statistics.median(times) * 1000:8.0f} ms  ({low:.0f}-{high:.0f})")
    ratio = statistics.median(runs["no-change regeneration"]) / statistics.median(runs["full regeneration"])
    print(f"  no change / full         {ratio:8.2f}")

    import sqlite3

    conn = sqlite3.connect(folder / "ledger.sqlite3")
    count, stored = conn.execute("SELECT count(*), sum(length(page)) FROM edition_pages").fetchone()
    conn.close()
    files = [p for p in archive.rglob("*") if p.is_file()]
    site = sum(p.stat().st_size for p in files)
    pages = sum(p.stat().st_size for p in files if p.name == "index.html" and p.parent != archive)
    print(f"  ledger: {stored / count / 1024:.1f} KiB per edition's web version ({count} stored)")
    print(f"  site: {len(files)} files, {site / 1024 / 1024:.1f} MiB ({pages / count / 1024:.1f} KiB per edition page)")
    print(f"  python {sys.version.split()[0]}")


if __name__ == "__main__":
    main()
