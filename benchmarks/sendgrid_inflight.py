"""SendGrid with requests in flight (issue 15): whole `digest send` processes against a bare stand-in
(benchmarks/sendgrid_standin.py: reads each body, answers 202, optionally after a delay), side by side with
the floors, in one run.

    python benchmarks/sendgrid_inflight.py latency            # 20,000 recipients, answers after 300 ms
    python benchmarks/sendgrid_inflight.py fast               # 100,000 recipients, answers at once, vs floors
    python benchmarks/sendgrid_inflight.py million            # 1,000,000 recipients end to end
    python benchmarks/sendgrid_inflight.py fast --rounds 5 --json benchmarks/out/fast.json

Every digest run is `digest send --from-build B --recipients CSV --backend sendgrid --yes` with the default
checks (SpamAssassin included) of a build that `digest check --from-build B` checked once before the
rounds (its result is recorded with the build), a fresh ledger each time, spawned through a small launcher
so os.wait4 gives its peak RSS. A run counts only if the stand-in got ceil(N/1000) requests naming N
recipients and the ledger says N sent.

- latency: digest at its default concurrency (4) and at concurrency 1, against the bound
  `requests x delay / concurrency` (goal <= 1.3x at the default). Both the whole process and the send
  itself (digest's own "in X s": the list into the ledger, then the batches) are reported.
- fast: against two floors that replay the bodies digest sent (captured once with the stand-in's --save):
  `bytes` POSTs the pre-serialised bodies over one kept-alive http.client connection in a bare loop (the
  fastest honest baseline), `client` POSTs them as dicts through SendGridAPIClient as digest did before
  (json.dumps inside, a connection per request). Goal: <= 2.0x the fastest floor, peak RSS <= 200 MB.
  Each floor is timed from its bodies being loaded to its last answer, and also as a whole process
  (interpreter start and reading the bodies included, as digest's figure is). Two parts of digest's time
  are measured in the same rounds, to show what the goal leaves room for: `digest send` of a one-row list
  (the fixed cost: interpreter, imports, the build, the recorded check, the ledger, one request), and the
  ledger alone (digest's Ledger in one process, clock started after its imports: the edition, the list of
  N rows, then for each batch of 1,000 the fsynced claim and the all-sent record; no list file read, no
  HTTP).
- million: one run (goal <= 25 s wall, <= 200 MB peak RSS); the ledger's size after it is reported.
Rounds alternate the order of the contenders, so the drift of a shared machine hits them alike.
digest's modules are byte-compiled first (`compileall`), as `pip install` does for a regular install
(with PYTHONDONTWRITEBYTECODE set, an editable install would compile ~60 modules in every run).
"""

from __future__ import annotations

import argparse
import compileall
import http.client
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from sendgrid_100k import (  # noqa: E402  (the helpers of the older benchmark: CSV, config, build, launcher)
    API_KEY,
    SECRET,
    build_once,
    child_env,
    digest_command,
    free_port,
    machine,
    run_child,
    write_config,
    write_csv,
)

DEFAULTS = {"latency": (20_000, 0.3, 3), "fast": (100_000, 0.0, 5), "million": (1_000_000, 0.0, 1)}


class StandIn:
    """benchmarks/sendgrid_standin.py as its own process."""

    def __init__(self, log: Path, delay: float, save: Path | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = log.open("w")
        cmd = [sys.executable, str(HERE / "sendgrid_standin.py"), "--port", str(self.port), "--delay", str(delay)]
        if save is not None:
            cmd += ["--save", str(save)]
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=child_env())
        deadline = time.monotonic() + 20
        while True:
            try:
                self.call("GET")
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"the stand-in did not start; see {log}") from None
                time.sleep(0.05)

    def call(self, method: str) -> dict[str, int]:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(urllib.request.Request(self.url + "/_stats", method=method), timeout=30) as response:
            return dict(json.loads(response.read()))

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self._log.close()


class Work:
    def __init__(self, root: Path, count: int):
        compileall.compile_dir(str(HERE.parent / "src" / "digest"), quiet=1)
        self.root = root
        self.count = count
        self.build = root / "build"
        self.csv = root / "members.csv"
        write_csv(self.csv, count)
        self.one = root / "one.csv"
        write_csv(self.one, 1)
        self.config = write_config(root)
        build_once(self.build)
        self.runs = 0

    def env(self, url: str, ledger: Path, **extra: str) -> dict[str, str]:
        return child_env(
            DIGEST_CONFIG=str(self.config),
            DIGEST_LEDGER_PATH=str(ledger),
            DIGEST_SENDGRID_HOST=url,
            SENDGRID_API_KEY=API_KEY,
            DIGEST_UNSUBSCRIBE_SECRET=SECRET,
            **extra,
        )

    def check(self) -> None:
        """`digest check --from-build`: the result is recorded with the build, so sends skip the checks."""
        if not shutil.which("spamassassin"):
            print("note: spamassassin is not installed; the checks run without it", flush=True)
        env = self.env("http://127.0.0.1:9", self.root / "unused.sqlite3")
        proc = subprocess.run([*digest_command(), "check", "--from-build", str(self.build)], env=env,
                              capture_output=True, text=True)  # fmt: skip
        if proc.returncode != 0:
            raise SystemExit(f"digest check exited {proc.returncode}:\n{proc.stdout}{proc.stderr}")

    def send(self, stand_in: StandIn, one: bool = False, **extra: str) -> dict[str, float]:
        """`digest send` of the list (`one`: of the one-row list) to the stand-in, checked and timed."""
        self.runs += 1
        ledger = self.root / f"ledger-{self.runs}.sqlite3"
        csv, count = (self.one, 1) if one else (self.csv, self.count)
        stand_in.call("DELETE")
        cmd = [*digest_command(), "send", "--from-build", str(self.build), "--recipients", str(csv),
               "--backend", "sendgrid", "--yes"]  # fmt: skip
        wall, rss, cpu, code, output = run_child(cmd, self.env(stand_in.url, ledger, **extra), self.root / "send.out")
        if code != 0 or "Sent " not in output:
            raise SystemExit(f"digest send exited {code}:\n{output}")
        stats = stand_in.call("GET")
        requests = math.ceil(count / 1000)
        if stats["requests"] != requests or stats["recipients"] != count:
            raise SystemExit(f"stand-in got {stats}, expected {requests} requests naming {count} recipients")
        sent = output.split("Sent ", 1)[1]
        if f"to {count:,} recipient" not in sent:
            raise SystemExit(f"digest did not report {count:,} sent:\n{output}")
        ledger_mb = sum(f.stat().st_size for f in self.root.glob(f"ledger-{self.runs}.sqlite3*")) / 1e6
        for f in self.root.glob(f"ledger-{self.runs}.sqlite3*"):
            f.unlink()
        said = float(sent.split(" in ", 1)[1].split(" s", 1)[0])
        return {"s": wall, "said_s": said, "rss_mb": rss, "cpu_s": cpu, "ledger_mb": ledger_mb}


# --- floors -------------------------------------------------------------------------------------------------


def floor_child(kind: str, bodies_dir: str, url: str) -> None:
    """POST the captured bodies one after another; print {"post_s", "load_s"}. The clock starts once they are
    loaded (and, for `client`, parsed into dicts)."""
    started = time.perf_counter()
    files = sorted(Path(bodies_dir).glob("*.json"))
    if kind == "bytes":
        raw = [f.read_bytes() for f in files]
        host, port = url.removeprefix("http://").split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=60)
        headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
        loaded = time.perf_counter()
        for body in raw:
            conn.request("POST", "/v3/mail/send", body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            if response.status != 202:
                raise SystemExit(f"floor: {response.status}")
    else:
        from sendgrid import SendGridAPIClient

        dicts = [json.loads(f.read_bytes()) for f in files]
        client = SendGridAPIClient(api_key=API_KEY, host=url)
        client.client.timeout = 60
        loaded = time.perf_counter()
        for body in dicts:
            if client.client.mail.send.post(request_body=body).status_code != 202:
                raise SystemExit("floor: not 202")
    print(json.dumps({"post_s": time.perf_counter() - loaded, "load_s": loaded - started, "requests": len(files)}))


def ledger_child(root: str) -> None:
    """The ledger's own work for the list of the work folder `root` (Work), through digest's Ledger; print {"s"}."""
    from digest.build import read_build
    from digest.deliver.base import BatchResult
    from digest.ledger import Ledger
    from digest.models import Recipient

    with (Path(root) / "members.csv").open(encoding="utf-8") as fh:
        next(fh)
        recipients = [Recipient(*line.rstrip("\n").split(",", 1), line=n) for n, line in enumerate(fh, 2)]
    build = read_build(Path(root) / "build")
    path = Path(root) / "ledger-alone.sqlite3"
    started = time.perf_counter()
    with Ledger.open(path) as ledger, ledger.newsletter_lock(build.newsletter):
        ledger.begin_edition(build.edition, build.newsletter, build.period, build.content_hash, build.subject)
        run = ledger.start_run(build.edition, "sendgrid")
        ledger.add_recipients(build.edition, recipients, run)
        sent = 0
        while rows := ledger.claim_batch(build.edition, 1000, f"b{sent}", "sendgrid", build.content_hash, run):
            ledger.record(build.edition, f"b{sent}", BatchResult(sent=[r.email for r in rows]), all_sent=True)
            sent += len(rows)
    elapsed = time.perf_counter() - started
    if sent != len(recipients):
        raise SystemExit(f"ledger alone: {sent} sent of {len(recipients)}")
    for f in Path(root).glob("ledger-alone.sqlite3*"):
        f.unlink()
    print(json.dumps({"s": elapsed}))


def run_ledger_alone(work: Work) -> float:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--ledger-child", str(work.root)]
    _, _, _, code, output = run_child(cmd, child_env(), work.root / "ledger.out")
    if code != 0:
        raise SystemExit(f"ledger alone exited {code}:\n{output}")
    return float(json.loads(output.strip().splitlines()[-1])["s"])


def run_floor(kind: str, work: Work, stand_in: StandIn, bodies: Path) -> dict[str, float]:
    stand_in.call("DELETE")
    cmd = [sys.executable, str(Path(__file__).resolve()), "--floor-child", kind, "--bodies", str(bodies),
           "--url", stand_in.url]  # fmt: skip
    wall, rss, _, code, output = run_child(cmd, child_env(), work.root / "floor.out")
    if code != 0:
        raise SystemExit(f"floor exited {code}:\n{output}")
    stats = stand_in.call("GET")
    if stats["recipients"] != work.count:
        raise SystemExit(f"floor: stand-in got {stats}")
    figures = json.loads(output.strip().splitlines()[-1])
    return {"s": figures["post_s"], "wall_s": wall, "rss_mb": rss}


# --- the three benchmarks -----------------------------------------------------------------------------------


def spread(values: list[float], digits: int = 2) -> str:
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def latency(work: Work, delay: float, rounds: int) -> dict[str, Any]:
    stand_in = StandIn(work.root / "standin.log", delay)
    requests = math.ceil(work.count / 1000)
    rows: list[dict[str, Any]] = []
    try:
        work.send(stand_in)  # warm-up
        contenders = {"concurrency 4 (default)": {}, "concurrency 1": {"DIGEST_SENDGRID_CONCURRENCY": "1"}}
        names = list(contenders)
        for r in range(rounds):
            for name in names[r % 2 :] + names[: r % 2]:
                width = int(contenders[name].get("DIGEST_SENDGRID_CONCURRENCY", "4"))
                got = work.send(stand_in, **contenders[name])
                bound = requests * delay / width
                rows.append({"who": name, "bound_s": bound, **got, "ratio": got["s"] / bound,
                             "said_ratio": got["said_s"] / bound})  # fmt: skip
                print(f"round {r + 1} {name}: {got['s']:.2f} s whole process (send {got['said_s']:.2f} s), "
                      f"bound {bound:.2f} s, ratio {got['s'] / bound:.2f} (send {got['said_s'] / bound:.2f}), "
                      f"peak RSS {got['rss_mb']:.0f} MB", flush=True)  # fmt: skip
    finally:
        stand_in.stop()
    print(f"\n{work.count:,} recipients, {requests} requests, stand-in answering after {delay * 1000:.0f} ms:")
    for name in ("concurrency 4 (default)", "concurrency 1"):
        mine = [row for row in rows if row["who"] == name]
        print(f"  {name:<24} whole {spread([m['s'] for m in mine])} s, ratio {spread([m['ratio'] for m in mine])}; "
              f"send {spread([m['said_s'] for m in mine])} s, ratio {spread([m['said_ratio'] for m in mine])} "
              f"(bound {mine[0]['bound_s']:.2f} s)")  # fmt: skip
    return {"rows": rows}


def fast(work: Work, rounds: int) -> dict[str, Any]:
    bodies = work.root / "bodies"
    capture = StandIn(work.root / "capture.log", 0.0, save=bodies)
    try:
        work.send(capture)
    finally:
        capture.stop()
    stand_in = StandIn(work.root / "standin.log", 0.0)
    rows: list[dict[str, Any]] = []
    try:
        work.send(stand_in)  # warm-up
        names = ["floor bytes", "floor client", "digest", "digest one", "ledger alone"]
        for r in range(rounds):
            got: dict[str, dict[str, float]] = {}
            for name in names[r % 5 :] + names[: r % 5]:
                if name.startswith("digest"):
                    got[name] = work.send(stand_in, one=name == "digest one")
                elif name == "ledger alone":
                    got[name] = {"s": run_ledger_alone(work)}
                else:
                    got[name] = run_floor(name.split()[1], work, stand_in, bodies)
            fastest = min(got["floor bytes"]["s"], got["floor client"]["s"])
            d = got["digest"]
            rows.append({"bytes_s": got["floor bytes"]["s"], "client_s": got["floor client"]["s"],
                         "bytes_wall_s": got["floor bytes"]["wall_s"], "client_wall_s": got["floor client"]["wall_s"],
                         "one_s": got["digest one"]["s"], "ledger_s": got["ledger alone"]["s"], **d,
                         "ratio": d["s"] / fastest, "said_ratio": d["said_s"] / fastest})  # fmt: skip
            print(f"round {r + 1}: floor bytes {got['floor bytes']['s']:.2f} s, floor client "
                  f"{got['floor client']['s']:.2f} s; digest {d['s']:.2f} s whole process "
                  f"(send {d['said_s']:.2f} s), ratio {d['s'] / fastest:.2f}, peak RSS {d['rss_mb']:.0f} MB, "
                  f"CPU {d['cpu_s']:.2f} s; one row {got['digest one']['s']:.2f} s; ledger alone "
                  f"{got['ledger alone']['s']:.2f} s", flush=True)  # fmt: skip
    finally:
        stand_in.stop()
    print(f"\n{work.count:,} recipients, fast stand-in, {rounds} rounds, median (min-max):")
    print(f"  floor bytes (http.client, kept alive)  {spread([r['bytes_s'] for r in rows])} s; "
          f"whole process {spread([r['bytes_wall_s'] for r in rows])} s")  # fmt: skip
    print(f"  floor client (SendGridAPIClient)       {spread([r['client_s'] for r in rows])} s; "
          f"whole process {spread([r['client_wall_s'] for r in rows])} s")  # fmt: skip
    print(f"  digest send of a one-row list          {spread([r['one_s'] for r in rows])} s whole process")
    alone = f"digest's ledger alone, {work.count:,} rows"
    print(f"  {alone:39}{spread([r['ledger_s'] for r in rows])} s")
    print(f"  digest send, whole process            {spread([r['s'] for r in rows])} s, ratio to the fastest "
          f"floor {spread([r['ratio'] for r in rows])} (goal <= 2.0), "
          f"peak RSS {spread([r['rss_mb'] for r in rows], 0)} MB (goal <= 200)")  # fmt: skip
    print(f"  digest's own 'in X s' (the send)      {spread([r['said_s'] for r in rows])} s, ratio "
          f"{spread([r['said_ratio'] for r in rows])}")  # fmt: skip
    return {"rows": rows}


def million(work: Work) -> dict[str, Any]:
    stand_in = StandIn(work.root / "standin.log", 0.0)
    try:
        got = work.send(stand_in)
    finally:
        stand_in.stop()
    print(f"{work.count:,} recipients end to end: {got['s']:.1f} s wall (goal <= 25), send {got['said_s']:.1f} s, "
          f"peak RSS {got['rss_mb']:.0f} MB (goal <= 200), CPU {got['cpu_s']:.1f} s, "
          f"ledger {got['ledger_mb']:.0f} MB", flush=True)  # fmt: skip
    return got


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("which", nargs="?", choices=sorted(DEFAULTS), default="fast")
    parser.add_argument("--recipients", type=int)
    parser.add_argument("--delay", type=float)
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--workdir", help="keep the work files here (default: a temp folder, removed)")
    parser.add_argument("--json", help="write the figures here")
    parser.add_argument("--floor-child", help=argparse.SUPPRESS)
    parser.add_argument("--ledger-child", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--bodies", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.floor_child:
        floor_child(args.floor_child, args.bodies, args.url)
        return
    if args.ledger_child:
        ledger_child(args.ledger_child)
        return
    count, delay, rounds = DEFAULTS[args.which]
    count = args.recipients or count
    delay = args.delay if args.delay is not None else delay
    rounds = args.rounds or rounds
    root = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="sendgrid_inflight-"))
    root.mkdir(parents=True, exist_ok=True)
    print(f"machine: {machine()}; load {os.getloadavg()[0]:.1f}", flush=True)
    try:
        work = Work(root, count)
        work.check()
        if args.which == "latency":
            summary = latency(work, delay, rounds)
        elif args.which == "fast":
            summary = fast(work, rounds)
        else:
            summary = million(work)
        if args.json:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps({"machine": machine(), **summary}, indent=2) + "\n")
    finally:
        if not args.workdir:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
