r"""5,000 personalised messages of the full 47-item digest over SMTP to a counting aiosmtpd sink on 127.0.0.1:
digest's whole `digest send` vs the `mailmerge` CLI vs a bare smtplib loop (the floor), side by side.

    python benchmarks/smtp_5000.py                     # 5 interleaved rounds of 5,000 messages each
    python benchmarks/smtp_5000.py --rounds 3 --count 1000 --only digest,floor
    python benchmarks/smtp_5000.py --profile           # one digest send under cProfile, top functions
    python benchmarks/smtp_5000.py --breakdown         # where digest's client CPU goes, without a profiler
    python benchmarks/smtp_5000.py --check-same        # digest and mailmerge deliver the same message (1 recipient)

Contenders (each a separate client process; its CPU is user+sys from os.wait4, its rate 5,000 / wall time
from spawn to exit, process start included):

  digest     digest send --from-build DIR --recipients members.csv --backend smtp --yes --no-spamassassin
             with DIGEST_CONFIG (a fresh temp dir, hence a fresh ledger, every round), DIGEST_SMTP_HOST/PORT,
             DIGEST_SMTP_SECURITY=none, DIGEST_UNSUBSCRIBE_SECRET.
  mailmerge  mailmerge --no-dry-run --no-limit --template T --database D --config C --output-format text
             (stdout to /dev/null). T is a multipart/alternative template (text part + HTML part of the same
             build, per-recipient {{unsubscribe_url}} / {{view_url}} in both, List-Unsubscribe headers); D has
             the same 5,000 people with their own unsubscribe URLs, made by digest's own unsubscribe_url().
  floor      python -c <smtplib loop>: one connection, sendmail(sender, [rcpt], email.eml bytes) 5,000 times.
  digest-before  the digest command with its dot-stuffing as it was before benchmarks/RESULTS-smtp.md's fix
             (smtplib's regex (?m)^\. put back into digest.deliver.smtp at start-up): the before/after, same run.

The sink (benchmarks/smtp_sink.py) is a separate process; it is reset before and read after every run, and a
run only counts if the sink got exactly `count` messages and `count` recipients. Rounds rotate the order of
the contenders so machine noise hits all alike; figures are medians with [min-max].
Writes benchmarks/out/smtp_5000/results.json.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import hashlib
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "benchmarks" / "out" / "smtp_5000"
BIN = Path(sys.executable).parent
WINDOW = ["--since", "2012-01-01", "--until", "2020-03-31"]
SECRET = "benchmark-unsubscribe-secret-0123456789abcdef"  # any 32+ characters
CONTENDERS = ("digest", "mailmerge", "floor", "digest-before")

FIRST = ["alexandra", "benjamin", "catalina", "dmitri", "eleanor", "francisco", "gwendolyn", "hiroshi", "isabella",
         "jonathan", "katarzyna", "leonardo", "margaret", "nathaniel", "octavia", "priyanka", "quentin", "rosalind",
         "sebastian", "theodora"]  # fmt: skip
LAST = ["montgomery-whitfield", "okonkwo", "vanderberg", "castellanos", "fitzgerald", "nakamura",
        "abernathy", "schwartzman", "delacroix", "rasmussen", "lindqvist", "oyelaran", "haverford", "kowalczyk",
        "pemberton"]  # fmt: skip
DOMAINS = ["communications.example-municipality.org", "cityhall.example.gov", "mayor.example-town.us",
           "planning.example-county.org", "example.org"]  # fmt: skip

# `digest` with smtp.py's dot-stuffing as it was before the fix (the same regex smtplib's data() uses).
DIGEST_BEFORE = r"""
import re, sys
import digest.deliver.smtp as smtp
_old = re.compile(rb"^\.", re.MULTILINE)
smtp._dot_stuffed = lambda data: _old.sub(b"..", data)
from digest.cli import main
sys.exit(main())
"""

FLOOR = r"""
import smtplib, sys
host, port, eml, rcpts = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
data = open(eml, "rb").read()
people = open(rcpts, encoding="utf-8").read().split()
conn = smtplib.SMTP(host, port)
for rcpt in people:
    conn.sendmail("news@example.org", [rcpt], data)
conn.quit()
"""


# --- setup ------------------------------------------------------------------------------------------


def tool(name: str) -> str:
    """The installed console script itself (not a pyenv shim, which adds a bash process per call)."""
    path = BIN / name
    return str(path) if path.is_file() else shutil.which(name) or name


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def people(count: int) -> list[tuple[str, str]]:
    """`count` distinct, realistic-length names and addresses."""
    out = []
    for i in range(count):
        first, last = FIRST[i % len(FIRST)], LAST[(i // len(FIRST)) % len(LAST)]
        domain = DOMAINS[i % len(DOMAINS)]
        name = f"{first.title()} {last.title()}"
        out.append((name, f"{first}.{last}.{i}@{domain}"))
    return out


def config_text(ledger_dir: Path) -> str:
    """The repository's digest.toml with absolute content/templates paths; everything written lands in ledger_dir."""
    text = (REPO / "digest.toml").read_text(encoding="utf-8")
    text = re.sub(r"(?m)^content_dir = .*$", f'content_dir = "{REPO / "content"}"', text)
    text = re.sub(r"(?m)^templates_dir = .*$", f'templates_dir = "{REPO / "templates"}"', text)
    text = re.sub(r"(?m)^ledger_path = .*$", f'ledger_path = "{ledger_dir / "ledger.sqlite3"}"', text)
    return text


@dataclass
class Inputs:
    root: Path
    build: Path
    members: Path
    rcpt_list: Path
    eml: Path
    mm_template: Path
    mm_database: Path
    mm_config: Path
    count: int


def jinja_static(text: str) -> str:
    """Static template text, protected from Jinja only if it looks like Jinja (the shipped build does not)."""
    if "{{" in text or "{%" in text or "{#" in text:
        return "{% raw %}" + text + "{% endraw %}"
    return text


def prepare(root: Path, count: int, port: int) -> Inputs:
    from digest.build import read_build
    from digest.config import load_settings
    from digest.personalize import HTML_TOKENS, TEXT_TOKENS, view_url
    from digest.unsubscribe_links import list_unsubscribe_headers, unsubscribe_url

    root.mkdir(parents=True, exist_ok=True)
    build_dir = root / "build"
    if build_dir.exists():
        shutil.rmtree(build_dir)
    # As the issue says: built once, in the repository root (the newsletter folder), with the shipped content.
    subprocess.run([tool("digest"), "build", *WINDOW, "--out", str(build_dir)], cwd=REPO, check=True,
                   stdout=subprocess.DEVNULL)  # fmt: skip
    build = read_build(build_dir)

    who = people(count)
    members = root / "members.csv"
    with members.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["email", "name"])
        w.writerows((email, name) for name, email in who)
    rcpt_list = root / "rcpts.txt"
    rcpt_list.write_text("\n".join(email for _, email in who) + "\n", encoding="utf-8")

    # The floor's message: the build's .eml, CRLF line endings (it already has them; made sure).
    raw = (build_dir / "email.eml").read_bytes()
    eml = root / "email.crlf.eml"
    eml.write_bytes(raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))

    # mailmerge's inputs: same people, same per-recipient unsubscribe URLs as digest computes (same settings,
    # same secret), same view URL, same HTML and text with the placeholders turned into Jinja variables.
    cfg_dir = root / "mm-settings"
    cfg_dir.mkdir(exist_ok=True)
    (cfg_dir / "digest.toml").write_text(config_text(cfg_dir), encoding="utf-8")
    settings = load_settings(cfg_dir / "digest.toml", env={})
    secret = SECRET.encode("utf-8")
    view = view_url(settings, build.edition)
    mm_database = root / "mailmerge_database.csv"
    with mm_database.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["email", "name", "unsubscribe_url", "view_url"])
        for name, email in who:
            w.writerow([email, name, unsubscribe_url(settings, email, secret), view])

    def to_jinja(text: str, tokens: dict[str, str]) -> str:
        pattern = re.compile("|".join(re.escape(t) for t in tokens.values()))
        field_of = {t: f for f, t in tokens.items()}
        out, pos = [], 0
        for m in pattern.finditer(text):
            out.append(jinja_static(text[pos : m.start()]))
            out.append("{{" + field_of[m.group()] + "}}")
            pos = m.end()
        out.append(jinja_static(text[pos:]))
        return "".join(out)

    headers = list_unsubscribe_headers("https://x.invalid/URL", settings.unsubscribe_mailto)
    list_unsub = headers["List-Unsubscribe"].replace("https://x.invalid/URL", "{{unsubscribe_url}}")
    boundary = "digest-benchmark-boundary-7f3a9c"
    mm_template = root / "mailmerge_template.txt"
    mm_template.write_text(
        "TO: {{name}} <{{email}}>\n"
        f"FROM: {build.sender}\n"
        f"SUBJECT: {build.subject}\n"
        f"REPLY-TO: {build.reply_to}\n"
        f"List-Unsubscribe: {list_unsub}\n"
        f"List-Unsubscribe-Post: {headers['List-Unsubscribe-Post']}\n"
        "MIME-Version: 1.0\n"
        f'Content-Type: multipart/alternative; boundary="{boundary}"\n'
        "\n"
        f"--{boundary}\n"
        'Content-Type: text/plain; charset="utf-8"\n'
        "\n"
        f"{to_jinja(build.text, TEXT_TOKENS)}\n"
        f"--{boundary}\n"
        'Content-Type: text/html; charset="utf-8"\n'
        "\n"
        f"{to_jinja(build.html, HTML_TOKENS)}\n"
        f"--{boundary}--\n",
        encoding="utf-8",
    )
    mm_config = root / "mailmerge_server.conf"
    mm_config.write_text(f"[smtp_server]\nhost = 127.0.0.1\nport = {port}\n", encoding="utf-8")  # no security
    return Inputs(root, build_dir, members, rcpt_list, eml, mm_template, mm_database, mm_config, count)


# --- the sink ---------------------------------------------------------------------------------------


class Sink:
    def __init__(self, port: int, control: int):
        self.port, self.control = port, control
        self.proc = subprocess.Popen(
            [sys.executable, str(REPO / "benchmarks" / "smtp_sink.py"), "--port", str(port), "--control", str(control)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if "listening" not in line:
            raise SystemExit(f"sink did not start: {line!r}")

    def ask(self, command: str) -> dict[str, Any]:
        with socket.create_connection(("127.0.0.1", self.control), timeout=30) as s:
            s.sendall(command.encode("ascii") + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        result: dict[str, Any] = json.loads(data)
        return result

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.ask("quit")
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            self.proc.wait()


# --- runs -------------------------------------------------------------------------------------------


def source_fingerprint() -> str:
    """sha256 (12 hex) of src/digest/**/*.py: which code a digest run imported (others may edit the tree)."""
    h = hashlib.sha256()
    for path in sorted((REPO / "src" / "digest").rglob("*.py")):
        h.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:12]


@dataclass
class Run:
    contender: str
    round: int
    wall_s: float
    cpu_user_s: float
    cpu_sys_s: float
    exit_code: int
    server_messages: int
    server_recipients: int
    server_bytes: int
    server_connections: int
    server_cpu_s: float
    ok: bool
    source: str = ""

    @property
    def cpu_s(self) -> float:
        return self.cpu_user_s + self.cpu_sys_s


def spawn_and_wait(cmd: list[str], env: dict[str, str], cwd: Path, log: Path) -> tuple[float, float, float, int]:
    """(wall s, user s, sys s, exit code) of one client process, its CPU from os.wait4 (its own rusage)."""
    with log.open("wb") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)  # so Popen does not wait for it again
    return wall, usage.ru_utime, usage.ru_stime, proc.returncode


def command(contender: str, inp: Inputs, port: int, round_dir: Path) -> tuple[list[str], dict[str, str], Path]:
    env = dict(os.environ)
    for key in list(env):
        if key.startswith("DIGEST_"):
            del env[key]
    if contender in ("digest", "digest-before"):
        round_dir.mkdir(parents=True)
        config = round_dir / "digest.toml"
        config.write_text(config_text(round_dir), encoding="utf-8")
        env.update(
            DIGEST_CONFIG=str(config),
            DIGEST_SMTP_HOST="127.0.0.1",
            DIGEST_SMTP_PORT=str(port),
            DIGEST_SMTP_SECURITY="none",
            DIGEST_UNSUBSCRIBE_SECRET=SECRET,
        )
        cmd = [tool("digest"), "send", "--from-build", str(inp.build), "--recipients", str(inp.members),
               "--backend", "smtp", "--yes", "--no-spamassassin"]  # fmt: skip
        if contender == "digest-before":
            cmd[:1] = [sys.executable, "-c", DIGEST_BEFORE]
        return cmd, env, REPO
    if contender == "mailmerge":
        cmd = [tool("mailmerge"), "--no-dry-run", "--no-limit", "--template", str(inp.mm_template),
               "--database", str(inp.mm_database), "--config", str(inp.mm_config),
               "--output-format", "text"]  # fmt: skip
        return cmd, env, inp.root
    if contender == "floor":
        cmd = [sys.executable, "-c", FLOOR, "127.0.0.1", str(port), str(inp.eml), str(inp.rcpt_list)]
        return cmd, env, inp.root
    raise ValueError(contender)


def run_one(contender: str, rnd: int, inp: Inputs, sink: Sink) -> Run:
    round_dir = inp.root / f"round-{rnd}-{contender}"
    if round_dir.exists():
        shutil.rmtree(round_dir)
    cmd, env, cwd = command(contender, inp, sink.port, round_dir)
    round_dir.mkdir(parents=True, exist_ok=True)
    source = source_fingerprint()
    before = sink.ask("reset")
    wall, user, system, code = spawn_and_wait(cmd, env, cwd, round_dir / "stderr.txt")
    after = sink.ask("stats")
    ok = code == 0 and after["messages"] == inp.count and after["recipients"] == inp.count
    if source_fingerprint() != source:
        source += "+changed-during-run"
    run = Run(contender, rnd, wall, user, system, code, after["messages"], after["recipients"], after["bytes"],
              after["connections"], after["cpu_s"] - before["cpu_s"], ok, source)  # fmt: skip
    tail = "" if ok else f"  FAILED: see {round_dir / 'stderr.txt'}"
    print(
        f"round {rnd} {contender:13s} {inp.count / wall:7.1f} msg/s  {run.cpu_s / inp.count * 1000:7.3f} ms CPU/msg  "
        f"server {after['messages']} msgs {after['bytes'] / max(1, after['messages']):,.0f} B/msg "
        f"{after['connections']} conns src {source}{tail}",
        flush=True,
    )
    return run


def med(values: list[float]) -> str:
    return f"{statistics.median(values):.3g} [{min(values):.3g}-{max(values):.3g}]"


def summarise(runs: list[Run], count: int) -> dict[str, Any]:
    table: dict[str, Any] = {}
    for c in CONTENDERS:
        mine = [r for r in runs if r.contender == c and r.ok]
        if not mine:
            continue
        rates = [count / r.wall_s for r in mine]
        cpu = [r.cpu_s / count * 1000 for r in mine]
        table[c] = {
            "runs": len(mine),
            "msgs_per_s": {"median": statistics.median(rates), "min": min(rates), "max": max(rates)},
            "cpu_ms_per_msg": {"median": statistics.median(cpu), "min": min(cpu), "max": max(cpu)},
            "user_ms_per_msg": statistics.median(r.cpu_user_s / count * 1000 for r in mine),
            "sys_ms_per_msg": statistics.median(r.cpu_sys_s / count * 1000 for r in mine),
            "server_cpu_ms_per_msg": statistics.median(r.server_cpu_s / count * 1000 for r in mine),
            "bytes_per_msg": statistics.median(r.server_bytes / count for r in mine),
            "connections": statistics.median(r.server_connections for r in mine),
        }
    heads = f"{'msg/s median [min-max]':>28s} {'client CPU ms/msg':>28s} {'server CPU ms/msg':>18s} {'B/msg':>8s}"
    print(f"\n{'':13s} {heads}")
    for c, row in table.items():
        mine = [r for r in runs if r.contender == c and r.ok]
        print(
            f"{c:13s} {med([count / r.wall_s for r in mine]):>28s} {med([r.cpu_s / count * 1000 for r in mine]):>28s} "
            f"{row['server_cpu_ms_per_msg']:18.3f} {row['bytes_per_msg']:8,.0f}"
        )
    sources = sorted({r.source for r in runs if r.contender.startswith("digest")})
    table["digest_sources"] = sources
    if len(sources) > 1:
        print(
            f"WARNING: src/digest changed during the benchmark ({', '.join(sources)}); digest runs are not comparable"
        )
    if "digest" in table and "mailmerge" in table:
        ratio = table["mailmerge"]["cpu_ms_per_msg"]["median"] / table["digest"]["cpu_ms_per_msg"]["median"]
        table["goal_cpu"] = {"mailmerge_over_digest": ratio, "met": ratio >= 20}
        verdict = "met" if ratio >= 20 else "MISSED"
        print(f"goal: digest CPU/msg <= 1/20 of mailmerge's: mailmerge/digest = {ratio:.1f}x -> {verdict}")
    if "digest" in table and "digest-before" in table:
        d, b = table["digest"], table["digest-before"]
        table["fix"] = {
            "cpu_ms_per_msg_before": b["cpu_ms_per_msg"]["median"],
            "cpu_ms_per_msg_after": d["cpu_ms_per_msg"]["median"],
            "msgs_per_s_before": b["msgs_per_s"]["median"],
            "msgs_per_s_after": d["msgs_per_s"]["median"],
        }
        print(
            f"dot-stuffing fix: client CPU {b['cpu_ms_per_msg']['median']:.3f} -> {d['cpu_ms_per_msg']['median']:.3f} "
            f"ms/msg, rate {b['msgs_per_s']['median']:.0f} -> {d['msgs_per_s']['median']:.0f} msg/s"
        )
    if "digest" in table and "floor" in table:
        ratio = table["digest"]["msgs_per_s"]["median"] / table["floor"]["msgs_per_s"]["median"]
        table["goal_rate"] = {"digest_over_floor": ratio, "met": ratio >= 0.8}
        # per round too: the noise of the machine hits both alike within a round
        rounds = sorted({r.round for r in runs})
        per_round = []
        for rnd in rounds:
            d = [r for r in runs if r.round == rnd and r.contender == "digest" and r.ok]
            f = [r for r in runs if r.round == rnd and r.contender == "floor" and r.ok]
            if d and f:
                per_round.append(f[0].wall_s / d[0].wall_s)
        table["goal_rate"]["per_round"] = per_round
        rounds_text = ", ".join(f"{x:.2f}" for x in per_round)
        verdict = "met" if ratio >= 0.8 else "MISSED"
        print(f"goal: digest msg/s >= 0.8x the floor's: {ratio:.2f}x (per round {rounds_text}) -> {verdict}")
    return table


def profile(inp: Inputs, sink: Sink, out: Path) -> None:
    """One digest send under cProfile (same command and environment); prints the top of the profile."""
    import pstats

    round_dir = inp.root / "profile"
    if round_dir.exists():
        shutil.rmtree(round_dir)
    cmd, env, cwd = command("digest", inp, sink.port, round_dir)
    stats_file = out / "digest_send.prof"
    cmd = [sys.executable, "-m", "cProfile", "-o", str(stats_file), "-m", "digest", *cmd[1:]]
    sink.ask("reset")
    wall, user, system, code = spawn_and_wait(cmd, env, cwd, round_dir / "stderr.txt")
    after = sink.ask("stats")
    print(
        f"profiled digest send: exit {code}, {after['messages']} messages, wall {wall:.2f} s, "
        f"CPU {user + system:.2f} s (cProfile overhead included)"
    )
    p = pstats.Stats(str(stats_file))
    p.sort_stats("tottime").print_stats(25)
    p.sort_stats("cumulative").print_stats(45)


class _NullBackend:
    """The send loop's backend contract with no SMTP: every recipient of the batch 'sent' at once."""

    name = "smtp"
    batch_size = 20  # SmtpBackend's default

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def send_batch(self, build: Any, batch: list[Any], batch_id: str, test: bool = False) -> Any:
        from digest.deliver.base import BatchResult

        return BatchResult(sent=[p.recipient.email for p in batch])


def _cpu_per_item(fn: Any, items: list[Any], repeats: int) -> float:
    """Median over `repeats` of the process CPU time per item of fn(item), in µs."""
    samples = []
    for _ in range(repeats):
        started = time.process_time()
        for item in items:
            fn(item)
        samples.append((time.process_time() - started) / len(items) * 1e6)
    return statistics.median(samples)


def breakdown(inp: Inputs, sink: Sink, rounds: int) -> dict[str, Any]:
    """Where digest's client CPU goes, measured without a profiler:

    1. whole processes: `digest send` to a 1-row list and to the full list, interleaved: the fixed cost
       (start, imports, reading the build, the quality checks, the ledger) and the marginal CPU per message;
    2. in this process, per message: the send loop with a backend that sends nothing (recipients CSV ->
       ledger pending -> claim_batch (fsynced) -> personalise -> record), personalisation alone, the MIME
       render, dot-stuffing (digest's and smtplib's), smtplib's quoteaddr of MAIL/RCPT. The marginal CPU
       not explained by these is smtplib's commands and replies and the socket system calls.
    """
    import smtplib

    from digest.build import read_build
    from digest.config import load_settings
    from digest.deliver.base import Personal
    from digest.deliver.smtp import _dot_stuffed
    from digest.ledger import Ledger
    from digest.lock import newsletter_lock
    from digest.message import MessageTemplate
    from digest.personalize import view_url, with_shared_values
    from digest.pipeline import _personalizer
    from digest.recipients import read_recipients
    from digest.send import execute_send, prepare_send

    source = source_fingerprint()
    one = inp.root / "one.csv"
    one.write_text("\n".join(inp.members.read_text(encoding="utf-8").splitlines()[:2]) + "\n", encoding="utf-8")
    whole: dict[str, list[float]] = {"1": [], str(inp.count): []}
    for rnd in range(1, rounds + 1):
        for members, n in ((one, 1), (inp.members, inp.count)) if rnd % 2 else ((inp.members, inp.count), (one, 1)):
            round_dir = inp.root / f"breakdown-{rnd}-{n}"
            cmd, env, cwd = command("digest", inp, sink.port, round_dir)
            cmd[cmd.index("--recipients") + 1] = str(members)
            sink.ask("reset")
            wall, user, system, code = spawn_and_wait(cmd, env, cwd, round_dir / "stderr.txt")
            got = sink.ask("stats")["messages"]
            if code != 0 or got != n:
                raise SystemExit(f"digest send to {n}: exit {code}, sink got {got}; see {round_dir}")
            whole[str(n)].append(user + system)
            print(f"round {rnd} digest send to {n:>5}: CPU {user + system:.3f} s, wall {wall:.2f} s", flush=True)
    fixed = statistics.median(whole["1"])
    full = statistics.median(whole[str(inp.count)])
    marginal_us = (full - fixed) / (inp.count - 1) * 1e6

    build = read_build(inp.build)
    secret = SECRET.encode("utf-8")
    cfg = inp.root / "breakdown-inproc"
    cfg.mkdir(exist_ok=True)
    (cfg / "digest.toml").write_text(config_text(cfg), encoding="utf-8")
    settings = load_settings(cfg / "digest.toml", env={})
    build = with_shared_values(build, {"view_url": view_url(settings, build.edition)})  # as pipeline.send_edition does
    personalize = _personalizer(settings, secret)
    recipients = [r for r in read_recipients(inp.members) if not hasattr(r, "reason")]
    personals: list[Personal] = [personalize(r) for r in recipients]
    template = MessageTemplate.from_build(build)
    rendered = [template.render(p.recipient, p.values, p.headers, template.new_message_id()) for p in personals[:200]]
    sample = rendered * (inp.count // len(rendered))

    loop = []
    for rep in range(rounds):
        ledger_path = cfg / f"ledger-{rep}.sqlite3"
        started = time.process_time()
        with newsletter_lock(ledger_path, build.newsletter), Ledger.open(ledger_path) as ledger:
            plan = prepare_send(build, _NullBackend(), read_recipients(inp.members), ledger=ledger)
            report = execute_send(plan, personalize=personalize)
        loop.append((time.process_time() - started) / inp.count * 1e6)
        assert report.sent == inp.count, report.message
    parts = {
        "send loop with a null backend (CSV, ledger, personalise)": statistics.median(loop),
        "  of which personalise (unsubscribe token, URL, headers)": _cpu_per_item(personalize, recipients, rounds),
        "MIME render (MessageTemplate.render)": _cpu_per_item(
            lambda p: template.render(p.recipient, p.values, p.headers, template.new_message_id()), personals, rounds
        ),
        "dot-stuffing, digest now (regex \\n\\.)": _cpu_per_item(_dot_stuffed, sample, rounds),
        "dot-stuffing, smtplib's / digest before ((?m)^\\.)": _cpu_per_item(smtplib._quote_periods, sample, rounds),
        "smtplib quoteaddr of MAIL FROM and RCPT TO": _cpu_per_item(
            lambda p: (smtplib.quoteaddr(template.envelope_from), smtplib.quoteaddr(p.recipient.email)),
            personals,
            rounds,
        ),
    }
    explained = (
        parts["send loop with a null backend (CSV, ledger, personalise)"]
        + parts["MIME render (MessageTemplate.render)"]
        + parts["dot-stuffing, digest now (regex \\n\\.)"]
        + parts["smtplib quoteaddr of MAIL FROM and RCPT TO"]
    )
    print(f"\nwhole process: fixed {fixed:.3f} s (send to 1), to {inp.count:,}: {full:.3f} s; "
          f"marginal {marginal_us:.0f} µs/message")  # fmt: skip
    for name, us in parts.items():
        print(f"  {name:62s} {us:8.1f} µs/message")
    print(f"  {'rest: smtplib commands/replies, socket system calls':62s} {marginal_us - explained:8.1f} µs/message")
    end_source = source_fingerprint()
    print(
        f"src/digest fingerprint {source}"
        + ("" if end_source == source else f" -> {end_source} (CHANGED during the run)")
    )
    return {
        "count": inp.count,
        "source": source if end_source == source else f"{source}->{end_source}",
        "fixed_cpu_s": fixed,
        "full_cpu_s": full,
        "marginal_us_per_msg": marginal_us,
        "whole_runs_cpu_s": whole,
        "parts_us_per_msg": parts,
        "rest_us_per_msg": marginal_us - explained,
    }


def check_same(root: Path) -> bool:
    """One recipient through digest and through mailmerge into a storing sink: decoded text and HTML parts,
    subject, To and List-Unsubscribe must be the same (the transfer encodings differ: QP vs base64)."""
    import email
    import email.policy

    from aiosmtpd.controller import Controller

    got: list[bytes] = []

    class Store:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
            got.append(envelope.original_content or envelope.content)
            return "250 OK"

    port = free_port()
    controller = Controller(Store(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        inp = prepare(root, 1, port)
        for who in ("digest", "mailmerge"):
            cmd, env, cwd = command(who, inp, port, root / f"same-{who}")
            (root / f"same-{who}").mkdir(parents=True, exist_ok=True)
            done = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True)
            if done.returncode != 0:
                raise SystemExit(f"{who} failed: {done.stderr.decode(errors='replace')[-2000:]}")
    finally:
        controller.stop()
    msgs = [email.message_from_bytes(m, policy=email.policy.default) for m in got]
    parts = [
        {
            q.get_content_type(): q.get_content().replace("\r\n", "\n").rstrip("\n")
            for q in m.walk()
            if not q.is_multipart()
        }
        for m in msgs
    ]
    checks = {
        "messages": len(msgs) == 2,
        "text/plain": parts[0].get("text/plain") == parts[1].get("text/plain") is not None,
        "text/html": parts[0].get("text/html") == parts[1].get("text/html") is not None,
        **{
            h: str(msgs[0][h]) == str(msgs[1][h])
            for h in ("To", "Subject", "List-Unsubscribe", "List-Unsubscribe-Post")
        },
    }
    for name, same in checks.items():
        print(f"{name:24s} {'same' if same else 'DIFFERENT'}")
    for m, raw in zip(msgs, got, strict=True):
        cte = sorted({str(q["Content-Transfer-Encoding"]) for q in m.walk() if not q.is_multipart()})
        print(f"  {len(raw):,} bytes, parts {', '.join(cte)}")
    return all(checks.values())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--count", type=int, default=5000)
    ap.add_argument("--only", default=",".join(CONTENDERS), help=f"comma-separated subset of {','.join(CONTENDERS)}")
    ap.add_argument("--profile", action="store_true", help="profile one digest send instead of the comparison")
    ap.add_argument("--breakdown", action="store_true", help="where digest's client CPU goes (no profiler)")
    ap.add_argument("--check-same", action="store_true", help="digest and mailmerge send the same message?")
    ap.add_argument("--keep", action="store_true", help="keep the temp folder")
    args = ap.parse_args(argv)
    chosen = [c for c in args.only.split(",") if c]
    for c in chosen:
        if c not in CONTENDERS:
            ap.error(f"unknown contender {c!r}")

    OUT.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="smtp5000-"))
    if args.check_same:
        try:
            return 0 if check_same(root) else 1
        finally:
            shutil.rmtree(root, ignore_errors=True)
    port, control = free_port(), free_port()
    sink = Sink(port, control)
    try:
        inp = prepare(root, args.count, port)
        print(f"build {inp.build}: {json.loads((inp.build / 'manifest.json').read_text())['sizes']}; "
              f"{args.count:,} recipients; sink on 127.0.0.1:{port}", flush=True)  # fmt: skip
        if args.profile:
            profile(inp, sink, OUT)
            return 0
        if args.breakdown:
            result = breakdown(inp, sink, args.rounds)
            (OUT / "breakdown.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
            return 0
        runs: list[Run] = []
        for rnd in range(1, args.rounds + 1):
            shift = (rnd - 1) % len(chosen)
            for contender in chosen[shift:] + chosen[:shift]:
                runs.append(run_one(contender, rnd, inp, sink))
        table = summarise(runs, args.count)
        result = {
            "count": args.count,
            "rounds": args.rounds,
            "python": sys.version.split()[0],
            "runs": [asdict(r) | {"cpu_s": r.cpu_s} for r in runs],
            "summary": table,
        }
        (OUT / "results.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        return 0 if all(r.ok for r in runs) else 1
    finally:
        sink.stop()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
