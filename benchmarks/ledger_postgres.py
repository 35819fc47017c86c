"""The ledger on PostgreSQL vs SQLite: one edition to 100,000 members through the real send loop.

    python benchmarks/ledger_postgres.py                    # 100,000 members, 2 rounds each, interleaved
    python benchmarks/ledger_postgres.py --rows 20000 --rounds 1

A throwaway local cluster (tests/_postgres.py: Debian's initdb, fsync on as a real server has it)
holds the PostgreSQL ledger; the SQLite one is a file in a temp folder. Each round is a child process
running `send.send_edition` (CSV streamed in, batches of 1,000 claimed, reserved, promoted, recorded,
the newsletter lock held) to a backend that accepts every batch at once, so what is timed is the
ledger. The stores alternate, a fresh ledger each round.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "benchmarks"))


def child(location: str, csv_path: str) -> None:
    from prepare_1m import ledger_child_send  # the same send as the 1M ledger benchmark

    started = time.perf_counter()
    sent = ledger_child_send(location, csv_path, month=1)
    status = {ln.split(":")[0]: int(ln.split()[1]) / 1024 for ln in Path("/proc/self/status").read_text().splitlines()
              if ln.startswith("VmHWM:")}  # fmt: skip
    print(json.dumps({"sent": sent, "seconds": time.perf_counter() - started, "hwm_mb": status["VmHWM"]}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    from _postgres import running_cluster
    from prepare_1m import machine, write_csv

    root = Path(tempfile.mkdtemp(prefix="ledger_pg-"))
    csv_path = root / "members.csv"
    write_csv(csv_path, args.rows)
    print(f"machine: {machine()}; {args.rows:,} members, {args.rounds} rounds per store", flush=True)
    results: dict[str, list[dict[str, float]]] = {"sqlite": [], "postgresql": []}
    with running_cluster(fsync=True) as cluster:
        for n in range(args.rounds):
            for store in results:
                location = str(root / f"l{n}.sqlite3") if store == "sqlite" else cluster.create_database(f"b{n}")
                proc = subprocess.run([sys.executable, __file__, "--child", location, str(csv_path)],
                                      capture_output=True, text=True, env=os.environ)  # fmt: skip
                if proc.returncode:
                    raise SystemExit(f"{store} round {n} failed:\n{proc.stderr}")
                point = json.loads(proc.stdout.strip().splitlines()[-1])
                results[store].append(point)
                print(f"round {n + 1} {store:<10} {point['seconds']:6.1f} s  peak RSS {point['hwm_mb']:.0f} MB",
                      flush=True)  # fmt: skip
    sqlite = statistics.median(p["seconds"] for p in results["sqlite"])
    pg = statistics.median(p["seconds"] for p in results["postgresql"])
    print(f"median: SQLite {sqlite:.1f} s, PostgreSQL {pg:.1f} s ({pg / sqlite:.2f}x)")


if __name__ == "__main__":
    main()
