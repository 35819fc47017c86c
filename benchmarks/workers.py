"""Several `digest send --worker` processes on one edition (issue 16): 1 vs 3 workers, ledger on PostgreSQL.

    python benchmarks/workers.py                      # 100,000 recipients, stand-in answering after 300 ms
    python benchmarks/workers.py --count 20000 --rounds 1

A throwaway local cluster (tests/_postgres.py, fsync on as a real server has it) holds a fresh ledger
database per run; benchmarks/sendgrid_standin.py answers each request after `--delay` seconds. A run of W
workers starts W whole `digest send --worker --from-build B --recipients CSV --backend sendgrid --yes`
processes at once (each through the launcher of benchmarks/sendgrid_100k.py, so os.wait4 gives its CPU
time and peak RSS); its wall time is from the first start to the last exit. It counts only if every
worker exited 0, the stand-in got ceil(N/1000) requests naming N recipients between them, and the ledger
says N sent. The bound is `requests x delay / (concurrency x W)`: every request's wait, W x 4 at a time.
Rounds alternate the order of 1 and 3 workers, so the drift of a shared machine hits both alike.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

from sendgrid_100k import digest_command, machine, run_child  # noqa: E402
from sendgrid_inflight import StandIn, Work  # noqa: E402

CONCURRENCY = 4  # [sendgrid] concurrency's default: requests out at once per worker


def run_workers(work: Work, stand_in: StandIn, url: str, workers: int) -> dict[str, Any]:
    """`workers` processes at once on one fresh ledger; their figures, checked against the stand-in and the ledger."""
    from digest.ledger import Ledger

    stand_in.call("DELETE")
    cmd = [*digest_command(), "send", "--from-build", str(work.build), "--recipients", str(work.csv),
           "--backend", "sendgrid", "--yes", "--worker"]  # fmt: skip
    env = work.env(stand_in.url, work.root / "unused.sqlite3", DIGEST_LEDGER_URL=url)
    results: list[tuple[float, float, float, int, str]] = [(0.0, 0.0, 0.0, 0, "")] * workers

    def one(i: int) -> None:
        results[i] = run_child(cmd, env, work.root / f"worker{i}.out")

    threads = [threading.Thread(target=one, args=(i,)) for i in range(workers)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    for _, _, _, code, output in results:
        if code != 0:  # a worker that found every batch taken says "nothing to do" and exits 0 too
            raise SystemExit(f"a worker exited {code}:\n{output}")
    stats = stand_in.call("GET")
    requests = math.ceil(work.count / 1000)
    if stats["requests"] != requests or stats["recipients"] != work.count:
        raise SystemExit(f"stand-in got {stats}, expected {requests} requests naming {work.count} recipients")
    with Ledger.open_store(url) as ledger:
        edition = ledger._db.read("SELECT name FROM editions").fetchone()[0]
        sent = ledger.counts(edition)["sent"]
    if sent != work.count:
        raise SystemExit(f"the ledger says {sent} sent, expected {work.count}")
    return {
        "s": wall,
        "cpu_s": sum(r[2] for r in results),
        "rss_mb": max(r[1] for r in results),
        "per_worker_s": [round(r[0], 2) for r in results],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--delay", type=float, default=0.3)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    from _postgres import running_cluster

    root = Path(tempfile.mkdtemp(prefix="workers-"))
    work = Work(root, args.count)
    work.check()
    requests = math.ceil(args.count / 1000)
    print(f"machine: {machine()}; {args.count:,} recipients, {requests} requests, stand-in answering after "
          f"{args.delay * 1000:.0f} ms", flush=True)  # fmt: skip
    stand_in = StandIn(root / "standin.log", args.delay)
    rows: dict[int, list[dict[str, Any]]] = {1: [], 3: []}
    try:
        with running_cluster(fsync=True) as cluster:
            run_workers(work, stand_in, cluster.create_database("warmup"), 1)
            for r in range(args.rounds):
                for workers in (1, 3) if r % 2 == 0 else (3, 1):
                    got = run_workers(work, stand_in, cluster.create_database(f"r{r}w{workers}"), workers)
                    bound = requests * args.delay / (CONCURRENCY * workers)
                    rows[workers].append({**got, "bound_s": bound})
                    print(f"round {r + 1}, {workers} worker(s): {got['s']:.2f} s wall (each {got['per_worker_s']}), "
                          f"CPU {got['cpu_s']:.2f} s, peak RSS {got['rss_mb']:.0f} MB, bound {bound:.2f} s, "
                          f"ratio {got['s'] / bound:.2f}", flush=True)  # fmt: skip
    finally:
        stand_in.stop()
    print(f"\nmedians ({machine()}):")
    for workers, mine in rows.items():
        wall = statistics.median(m["s"] for m in mine)
        cpu = statistics.median(m["cpu_s"] for m in mine)
        print(f"  {workers} worker(s): wall {wall:.2f} s, CPU {cpu:.2f} s, bound {mine[0]['bound_s']:.2f} s, "
              f"ratio {wall / mine[0]['bound_s']:.2f}")  # fmt: skip
    one, three = (statistics.median(m["s"] for m in rows[w]) for w in (1, 3))
    print(f"  3 workers take {three / one:.2f}x the wall time of 1")


if __name__ == "__main__":
    main()
