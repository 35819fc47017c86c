"""100,000 recipients through digest's whole `digest send --backend sendgrid` process, against the floor of
POSTing the same 100 request bodies to the same SendGrid emulator with the same client, side by side.

    python benchmarks/sendgrid_100k.py                      # 5 interleaved rounds
    python benchmarks/sendgrid_100k.py --rounds 7 --json benchmarks/out/sendgrid_100k.json
    python benchmarks/sendgrid_100k.py --rounds 0 --breakdown     # where digest's time goes, in one process
    python benchmarks/sendgrid_100k.py --rounds 0 --profile benchmarks/out/send.prof
    python benchmarks/sendgrid_100k.py --variant base=/tmp/base/src   # + an unchanged copy, interleaved
    python benchmarks/sendgrid_100k.py --rounds 0 --tokens            # unsubscribe URLs per second

Goal (issue): digest's whole process within 1.5x of the floor (median of the per-round ratios) and its
peak RSS <= 200 MB.

- The emulator (`python -m digest.testing.sendgrid_emulator`) runs as its own process on 127.0.0.1, so the
  client and the server share no GIL. It is reset (DELETE /_emulator/messages) before every run, because it
  keeps every accepted body in memory.
- digest: `digest send --from-build DIR --recipients CSV --backend sendgrid --yes --no-spamassassin` as a
  subprocess, a fresh ledger per run (DIGEST_LEDGER_PATH), a temp digest.toml (a copy of the repository's,
  with the paths moved into the work folder). Timed from spawn to exit: interpreter start, quality checks,
  reading and validating the CSV, the ledger, personalisation, payloads, HTTP. Peak RSS is the child's
  ru_maxrss from os.wait4.
- floor: a bare subprocess that POSTs the 100 bodies a warm-up digest run sent (captured from the emulator's
  /_emulator/requests, so content, substitutions, headers and custom_args are byte for byte digest's), as
  dicts through SendGridAPIClient (json.dumps inside the client, as for digest). The bodies are loaded before
  its clock starts; the figure is its POST loop. Its whole-process wall time is reported too.
- every run must leave the emulator with 100 accepted requests and each of the N addresses exactly once
  (GET /_emulator/messages?include_content=false), or the benchmark stops.
- rounds alternate which of the two goes first, so drifts of this noisy 2-vCPU machine hit both alike.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
WINDOW = ["--since", "2012-01-01", "--until", "2020-03-31"]
API_KEY = "SG.test-key"
SECRET = "benchmark-unsubscribe-secret-0123456789"
NO_PROXY = "127.0.0.1,localhost"


# --- setup -------------------------------------------------------------------------------------------------


def digest_command() -> list[str]:
    """The installed console script, as a user runs it (falls back to python -m digest)."""
    script = Path(sys.executable).with_name("digest")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "digest"]


def write_csv(path: Path, count: int) -> list[str]:
    emails = [f"member{i:06d}@example.org" for i in range(count)]
    with path.open("w", encoding="utf-8") as fh:
        fh.write("email,name\n")
        for i, email in enumerate(emails):
            fh.write(f"{email},Member Number {i}\n")
    return emails


def write_config(root: Path) -> Path:
    """The repository's digest.toml (same sender, URLs, unsubscribe settings as the build), paths moved here."""
    text = (REPO / "digest.toml").read_text(encoding="utf-8")
    moved = {
        "content_dir": REPO / "content",
        "templates_dir": REPO / "templates",
        "build_dir": root / "builds",
        "outbox_dir": root / "outbox",
        "ledger_path": root / "ledger.sqlite3",
        "suppression_file": root / "suppressions.csv",
        "backend": "sendgrid",
    }
    for key, value in moved.items():
        text, n = re.subn(rf'(?m)^{key}\s*=\s*"[^"]*"', f'{key} = "{value}"', text)
        if n != 1:
            text = f'{key} = "{value}"\n' + text
    config = root / "digest.toml"
    config.write_text(text, encoding="utf-8")
    return config


def build_once(out: Path) -> None:
    """`digest build` of the whole window in the repository root (a newsletter folder), as a user would."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    subprocess.run([*digest_command(), "build", *WINDOW, "--out", str(out)], cwd=REPO, env=env, check=True,
                   stdout=subprocess.DEVNULL)  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Emulator:
    """The project's emulator as a separate process (started and stopped by its pid)."""

    def __init__(self, log: Path, delay: float = 0.0):
        self.delay = delay
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = log.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "digest.testing.sendgrid_emulator", "--port", str(self.port), "--key", API_KEY],
            stdout=self._log, stderr=subprocess.STDOUT, env=child_env(),
        )  # fmt: skip
        deadline = time.monotonic() + 20
        while True:
            try:
                self.get("/_emulator/stats")
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"the emulator did not start; see {log}") from None
                time.sleep(0.1)

    def _call(self, method: str, path: str) -> Any:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        request = urllib.request.Request(self.url + path, method=method)
        with opener.open(request, timeout=300) as response:
            return json.loads(response.read())

    def get(self, path: str) -> Any:
        return self._call("GET", path)

    def reset(self) -> None:
        """Forget messages and faults; then, with `delay`, answer every request that much later (a remote
        provider's round trip; the emulator stores the request first)."""
        self._call("DELETE", "/_emulator/messages")
        if self.delay:
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
            body = json.dumps({"delay": self.delay, "rate": 1.0}).encode()
            request = urllib.request.Request(self.url + "/_emulator/faults", data=body, method="POST")
            request.add_header("Content-Type", "application/json")
            opener.open(request, timeout=30).read()

    def cpu_s(self) -> float:
        """user + system CPU seconds the emulator process has used so far."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    env.update(NO_PROXY=NO_PROXY, no_proxy=NO_PROXY, **extra)
    return env


# --- one timed child ---------------------------------------------------------------------------------------


# Spawned by a fresh, small interpreter: a child forked straight from this (large) process would count this
# process's pages in its ru_maxrss until its exec (the kernel keeps the old mm's high-water mark).
LAUNCHER = r"""
import json, os, subprocess, sys, time
out, cwd, cmd = sys.argv[1], sys.argv[2], sys.argv[3:]
with open(os.path.join(cwd, out), "w") as fh:
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=cwd)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
print(json.dumps({"wall": wall, "maxrss_kb": usage.ru_maxrss, "cpu": usage.ru_utime + usage.ru_stime,
                  "code": os.waitstatus_to_exitcode(status)}))
"""


def run_child(cmd: list[str], env: dict[str, str], out: Path) -> tuple[float, float, float, int, str]:
    """Spawn (through the launcher), wait with os.wait4: (wall s, peak RSS MB, CPU s, exit code, output)."""
    launched = subprocess.run(
        [sys.executable, "-c", LAUNCHER, out.name, str(out.parent), *cmd], env=env, capture_output=True, text=True
    )
    if launched.returncode != 0:
        raise SystemExit(f"launcher failed: {launched.stderr}")
    figures = json.loads(launched.stdout.strip().splitlines()[-1])
    return figures["wall"], figures["maxrss_kb"] / 1024, figures["cpu"], figures["code"], out.read_text()


def verify(emulator: Emulator, emails: list[str], what: str) -> None:
    """100 accepted requests (for 100k), every address exactly once, nothing else."""
    stats = emulator.get("/_emulator/stats")
    expected_requests = -(-len(emails) // 1000)
    if (
        stats["accepted"] != expected_requests
        or stats["recipients"] != len(emails)
        or stats["requests"] != stats["accepted"]
    ):
        raise SystemExit(f"{what}: emulator stats {stats}, expected {expected_requests} requests / {len(emails)}")
    got = Counter(
        str(m["email"]).lower() for m in emulator.get("/_emulator/messages?include_content=false")["messages"]
    )
    twice = [e for e, n in got.items() if n > 1]
    missing = [e for e in emails if e not in got]
    if twice or missing or len(got) != len(emails):
        raise SystemExit(f"{what}: {len(twice)} addresses twice, {len(missing)} missing, {len(got)} distinct")


class Bench:
    def __init__(self, root: Path, count: int, delay: float = 0.0):
        self.root = root
        self.build = root / "build"
        self.csv = root / "members.csv"
        self.emails = write_csv(self.csv, count)
        self.config = write_config(root)
        build_once(self.build)
        self.emulator = Emulator(root / "emulator.log", delay)
        self.bodies = root / "bodies.json"
        self.runs = 0

    def digest_env(self, ledger: Path) -> dict[str, str]:
        return child_env(
            DIGEST_CONFIG=str(self.config),
            DIGEST_LEDGER_PATH=str(ledger),
            DIGEST_SENDGRID_HOST=self.emulator.url,
            SENDGRID_API_KEY=API_KEY,
            DIGEST_UNSUBSCRIBE_SECRET=SECRET,
        )

    def digest_cmd(self) -> list[str]:
        return [*digest_command(), "send", "--from-build", str(self.build), "--recipients", str(self.csv),
                "--backend", "sendgrid", "--yes", "--no-spamassassin"]  # fmt: skip

    def run_digest(self, check: bool = True, src: str | None = None) -> dict[str, float]:
        """One whole `digest send`; with `src`, the digest package found there (PYTHONPATH) instead."""
        self.runs += 1
        ledger = self.root / f"ledger-{self.runs}.sqlite3"
        self.emulator.reset()
        env = self.digest_env(ledger)
        if src:
            env["PYTHONPATH"] = src
        emulator_cpu = self.emulator.cpu_s()
        wall, rss, cpu, code, output = run_child(self.digest_cmd(), env, self.root / "digest.out")
        if code != 0 or "Sent " not in output:
            raise SystemExit(f"digest send exited {code}:\n{output}")
        emulator_cpu = self.emulator.cpu_s() - emulator_cpu
        emulator_rss = self.emulator.rss_mb()
        if check:
            verify(self.emulator, self.emails, "digest")
        for f in self.root.glob(f"ledger-{self.runs}.sqlite3*"):
            f.unlink()
        said = re.search(r" in ([0-9.]+) s", output)
        return {"s": wall, "rss_mb": rss, "cpu_s": cpu, "emulator_cpu_s": emulator_cpu, "emulator_rss_mb": emulator_rss,
                "said_s": float(said.group(1)) if said else float("nan")}  # fmt: skip

    def capture_bodies(self) -> None:
        """The bodies of the run just made, as the floor will POST them."""
        requests = self.emulator.get("/_emulator/requests?include_body=true")["requests"]
        bodies = [json.loads(r["body"]) for r in requests if r["path"] == "/v3/mail/send" and r["status"] == 202]
        self.bodies.write_text(json.dumps(bodies), encoding="utf-8")
        del requests, bodies

    def run_floor(self, check: bool = True) -> dict[str, float]:
        self.emulator.reset()
        cmd = [sys.executable, str(Path(__file__).resolve()), "--floor-child", str(self.bodies),
               "--url", self.emulator.url]  # fmt: skip
        emulator_cpu = self.emulator.cpu_s()
        wall, rss, cpu, code, output = run_child(cmd, child_env(), self.root / "floor.out")
        if code != 0:
            raise SystemExit(f"floor exited {code}:\n{output}")
        emulator_cpu = self.emulator.cpu_s() - emulator_cpu
        emulator_rss = self.emulator.rss_mb()
        figures = json.loads(output.strip().splitlines()[-1])
        if check:
            verify(self.emulator, self.emails, "floor")
        return {"s": figures["post_s"], "wall_s": wall, "load_s": figures["load_s"], "rss_mb": rss, "cpu_s": cpu,
                "post_cpu_s": figures["post_cpu_s"], "emulator_cpu_s": emulator_cpu,
                "emulator_rss_mb": emulator_rss}  # fmt: skip


# --- the floor child ---------------------------------------------------------------------------------------


def floor_child(bodies_path: str, url: str) -> None:
    """POST the pre-built bodies with the sendgrid client; print {"post_s": ..., "load_s": ...}."""
    started = time.perf_counter()
    from sendgrid import SendGridAPIClient

    bodies = json.loads(Path(bodies_path).read_text(encoding="utf-8"))
    client = SendGridAPIClient(api_key=API_KEY, host=url)
    client.client.timeout = 60
    loaded = time.perf_counter()
    cpu = time.process_time()
    for body in bodies:
        response = client.client.mail.send.post(request_body=body)
        if response.status_code != 202:
            raise SystemExit(f"floor: {response.status_code}")
    done = time.perf_counter()
    figures = {"post_s": done - loaded, "post_cpu_s": time.process_time() - cpu, "load_s": loaded - started}
    print(json.dumps({**figures, "requests": len(bodies)}))


# --- breakdown and profile ----------------------------------------------------------------------------------


def breakdown(bench: Bench) -> dict[str, float]:
    """digest's pieces timed one by one in this process (real code, real ledger, real HTTP), serially."""
    code = r"""
import json, sys, time
from pathlib import Path
t0 = time.perf_counter()
from digest import pipeline
from digest.build import read_build
from digest.config import load_settings
from digest.deliver.sendgrid import SendGridBackend
from digest.ledger import Ledger
from digest.lock import newsletter_lock
from digest.personalize import view_url, with_shared_values
from digest.recipients import read_recipients
from digest.sendplan import Tally, _valid
from digest.unsubscribe_tokens import secret_from_env
out = {"imports": time.perf_counter() - t0}
config, build_dir, csv, ledger_path = map(Path, sys.argv[1:5])
settings = load_settings(config)
build = read_build(build_dir)
build = with_shared_values(build, {"view_url": view_url(settings, build.edition)})  # as pipeline.send_edition does
t = time.perf_counter()
n = sum(1 for _ in read_recipients(csv))
out["csv read + validate (alone)"] = time.perf_counter() - t
with newsletter_lock(ledger_path, build.newsletter), Ledger.open(ledger_path) as ledger:
    ledger.begin_edition(build.edition, build.newsletter, build.period, build.content_hash, build.subject)
    run = ledger.start_run(build.edition, "sendgrid")
    t = time.perf_counter()
    ledger.add_recipients(build.edition, _valid(read_recipients(csv), Tally()), run_id=run)
    out["csv + add_recipients (streamed together)"] = time.perf_counter() - t
    personalize = pipeline._personalizer(settings, secret_from_env(required=True))
    backend = SendGridBackend(settings.sendgrid)
    backend.open()
    keys = ["claim_batch", "personalise", "build_body", "json.dumps (measured apart)", "POST incl. dumps", "record"]
    acc = dict.fromkeys(keys, 0.0)
    seq = 0
    while True:
        seq += 1
        batch_id = f"r{run}-b{seq:05d}"
        a = time.perf_counter()
        rows = ledger.claim_batch(build.edition, 1000, batch_id, "sendgrid", build.content_hash, run_id=run)
        if not rows:
            break
        b = time.perf_counter()
        batch = [personalize(r.recipient()) for r in rows]
        c = time.perf_counter()
        body, included, result = backend.build_body(build, batch, batch_id, False)
        d = time.perf_counter()
        e = time.perf_counter()  # (build_body writes the JSON itself)
        response = backend._client.client.mail.send.post_json(body)
        assert response.status_code == 202
        result.provider_id = response.headers.get("X-Message-Id") or ""
        f = time.perf_counter()
        ledger.record(build.edition, batch_id, result)
        g = time.perf_counter()
        for k, v in zip(keys, (b - a, c - b, d - c, e - d, f - e, g - f)):
            acc[k] += v
    out.update(acc)
print(json.dumps(out))
"""
    bench.emulator.reset()
    ledger = bench.root / "breakdown.sqlite3"
    env = bench.digest_env(ledger)
    proc = subprocess.run([sys.executable, "-c", code, str(bench.config), str(bench.build), str(bench.csv),
                           str(ledger)], env=env, capture_output=True, text=True, check=True)  # fmt: skip
    for f in bench.root.glob("breakdown.sqlite3*"):
        f.unlink()
    verify(bench.emulator, bench.emails, "breakdown")
    result: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def token_rate(count: int, src: str | None = None) -> float:
    """Unsubscribe URLs (token + headers) per second from `Unsubscriber`, best of 3 runs over `count` addresses,
    in a fresh interpreter importing the digest package under `src` (default: this checkout)."""
    code = r"""
import sys, time
from pathlib import Path
from digest.config import load_settings
from digest.unsubscribe import Unsubscriber
settings = load_settings(Path(sys.argv[1]))
emails = [f"member{i:06d}@example.org" for i in range(int(sys.argv[2]))]
best = float("inf")
for _ in range(3):
    unsubscribe = Unsubscriber(settings, b"benchmark-unsubscribe-secret-0123456789")
    t = time.perf_counter()
    for email in emails:
        unsubscribe(email)
    best = min(best, time.perf_counter() - t)
print(len(emails) / best)
"""
    env = {**os.environ, "PYTHONPATH": src or str(REPO / "src")}
    proc = subprocess.run([sys.executable, "-c", code, str(REPO / "digest.toml"), str(count)], env=env,
                          capture_output=True, text=True, check=True)  # fmt: skip
    return float(proc.stdout.strip().splitlines()[-1])


def profile(bench: Bench, out: Path) -> None:
    """One whole `digest send` under cProfile (main thread only), top functions printed."""
    import pstats

    bench.emulator.reset()
    ledger = bench.root / "profile.sqlite3"
    args = bench.digest_cmd()[len(digest_command()) :]
    cmd = [sys.executable, "-m", "cProfile", "-o", str(out), "-m", "digest", *args]
    subprocess.run(cmd, env=bench.digest_env(ledger), check=True, stdout=subprocess.DEVNULL)
    for f in bench.root.glob("profile.sqlite3*"):
        f.unlink()
    stats = pstats.Stats(str(out))
    stats.sort_stats("cumulative").print_stats(40)
    stats.sort_stats("tottime").print_stats(25)


# --- main ----------------------------------------------------------------------------------------------------


def machine() -> str:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()
    return (f"{os.cpu_count()} CPUs ({model or platform.processor()}), Python {platform.python_version()}, "
            f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")  # fmt: skip


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipients", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--delay", type=float, default=0.0, help="emulator answers each request this many seconds late (default 0)"
    )
    parser.add_argument("--workdir", help="keep the work files here (default: a temp folder, removed)")
    parser.add_argument("--json", help="write the figures here")
    parser.add_argument("--breakdown", action="store_true", help="also time digest's pieces in one process")
    parser.add_argument("--profile", help="also profile one digest send into this .prof file")
    parser.add_argument("--tokens", action="store_true", help="also time unsubscribe URLs per second (and variants)")
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=SRC",
        help="also run, interleaved, the digest package under SRC (PYTHONPATH), e.g. an unchanged copy made with "
        "`git archive HEAD src | tar -x -C /tmp/base` -> base=/tmp/base/src (repeatable)",
    )
    parser.add_argument("--floor-child", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.floor_child:
        floor_child(args.floor_child, args.url)
        return

    root = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="sendgrid_100k-"))
    root.mkdir(parents=True, exist_ok=True)
    print(f"machine: {machine()}", flush=True)
    bench = Bench(root, args.recipients, args.delay)
    rows: list[dict[str, Any]] = []
    try:
        print(f"emulator {bench.emulator.url} (pid {bench.emulator.proc.pid}); work folder {root}", flush=True)
        warm = bench.run_digest()
        bench.capture_bodies()
        floor_warm = bench.run_floor()
        print(f"warm-up: digest {warm['s']:.2f} s, floor {floor_warm['s']:.2f} s (not counted)", flush=True)
        variants = dict(v.split("=", 1) for v in args.variant)
        contenders = ["floor", "digest", *variants]
        for r in range(1, args.rounds + 1):
            order = contenders[r % len(contenders) :] + contenders[: r % len(contenders)]
            load = os.getloadavg()[0]
            got: dict[str, dict[str, float]] = {}
            for who in order:
                got[who] = bench.run_floor() if who == "floor" else bench.run_digest(src=variants.get(who))
            f = got["floor"]
            row: dict[str, Any] = {
                "round": r,
                "order": order,
                "load_before": load,
                "floor_s": f["s"],
                "floor_wall_s": f["wall_s"],
                "floor_post_cpu_s": f["post_cpu_s"],
                "floor_rss_mb": f["rss_mb"],
                "emulator_cpu_floor_s": f["emulator_cpu_s"],
                "emulator_rss_mb": max(x["emulator_rss_mb"] for x in got.values()),
            }
            line = (
                f"round {r} ({' > '.join(order)}; load {load:.1f}): floor {f['s']:.2f} s "
                f"(process {f['wall_s']:.2f} s, POST loop CPU {f['post_cpu_s']:.2f} s + emulator "
                f"{f['emulator_cpu_s']:.2f} s)"
            )
            for who in ["digest", *variants]:
                v = got[who]
                prefix = "digest" if who == "digest" else f"variant_{who}"
                row.update({
                    f"{prefix}_s": v["s"],
                    f"{prefix}_ratio": v["s"] / f["s"],
                    f"{prefix}_rss_mb": v["rss_mb"],
                    f"{prefix}_cpu_s": v["cpu_s"],
                    f"{prefix}_said_s": v["said_s"],
                    f"{prefix}_emulator_cpu_s": v["emulator_cpu_s"],
                })  # fmt: skip
                line += (
                    f"; {who} {v['s']:.2f} s, ratio {v['s'] / f['s']:.2f}, peak RSS {v['rss_mb']:.0f} MB, "
                    f"CPU {v['cpu_s']:.2f} s (+ emulator {v['emulator_cpu_s']:.2f} s)"
                )
            rows.append(row)
            print(line + f"; emulator RSS {row['emulator_rss_mb']:.0f} MB", flush=True)
        summary: dict[str, Any] = {"machine": machine(), "recipients": args.recipients, "rounds": rows}
        if rows:
            for key in rows[0]:
                if key not in ("round", "order") and isinstance(rows[0][key], float):
                    values = [row[key] for row in rows]
                    summary[key] = {"median": statistics.median(values), "min": min(values), "max": max(values)}
            print(f"\n{args.recipients:,} recipients, {len(rows)} rounds, median (min-max):")
            print(f"  floor (POST loop)   {spread([r['floor_s'] for r in rows])} s")
            for who in ["digest", *variants]:
                prefix = "digest" if who == "digest" else f"variant_{who}"
                print(
                    f"  {who:<19} {spread([r[prefix + '_s'] for r in rows])} s, "
                    f"ratio {spread([r[prefix + '_ratio'] for r in rows])} (goal <= 1.5), "
                    f"peak RSS {spread([r[prefix + '_rss_mb'] for r in rows])} MB (goal <= 200), "
                    f"CPU {spread([r[prefix + '_cpu_s'] for r in rows])} s"
                )
            print(f"  floor POST-loop CPU {spread([r['floor_post_cpu_s'] for r in rows])} s")
        if args.breakdown:
            parts = breakdown(bench)
            summary["breakdown"] = parts
            print("\nbreakdown (one process, serial, seconds):")
            for k, v in parts.items():
                print(f"  {k:<42} {v:6.3f}")
        if args.tokens:
            rates = {who: token_rate(args.recipients, variants.get(who)) for who in ["digest", *variants]}
            summary["tokens_per_s"] = rates
            print("\nunsubscribe URLs (token + headers) per second, best of 3:")
            for who, rate in rates.items():
                print(f"  {who:<19} {rate:,.0f}/s ({1e6 / rate:.1f} µs each)")
        if args.profile:
            profile(bench, Path(args.profile))
        if args.json:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    finally:
        bench.emulator.stop()
        if not args.workdir:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
