r"""SMTP against a relay 20 ms away (issue 15): 2,000 personalised messages of the full digest to the counting
aiosmtpd sink answering every command 20 ms late (benchmarks/smtp_sink.py --delay 0.02 --pipelining), side by
side in one run:

    python benchmarks/smtp_latency.py                          # 2,000 messages, 1 round
    python benchmarks/smtp_latency.py --count 500 --rounds 3 --delay 0.02

  digest        digest send --from-build B --recipients CSV --backend smtp --yes, its defaults ([smtp]
                connections = 2, PIPELINING used since the sink offers it) and the default checks of a build
                `digest check` recorded before the rounds.
  digest-1conn  the same with DIGEST_SMTP_CONNECTIONS=1: pipelining alone.
  floor         a bare loop over one smtplib connection sending the build's pre-built, pre-dot-stuffed bytes:
                mail(), rcpt(), docmd("DATA"), send(bytes), getreply() per message (smtplib does not pipeline;
                today's digest without pipelining is near this loop).

Rates are messages / wall time of the whole client process (spawn to exit). The latency bound is what the
sink's delay allows at best: one round trip per message per connection once pipelined, count x delay /
connections. A run counts only if the sink got exactly `count` messages and recipients.
Goal: digest at its defaults >= 3x the floor's msg/s. digest's modules are byte-compiled first, as
`pip install` does.
"""

from __future__ import annotations

import argparse
import compileall
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from smtp_5000 import (  # noqa: E402  (the older benchmark's inputs, sink client and process timing)
    REPO,
    SECRET,
    Sink,
    config_text,
    free_port,
    people,
    spawn_and_wait,
    tool,
)

WINDOW = ["--since", "2012-01-01", "--until", "2020-03-31"]

FLOOR = r"""
import smtplib, sys
host, port, eml, rcpts = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
data = open(eml, "rb").read()
if data.startswith(b"."):
    data = b"." + data
data = data.replace(b"\r\n.", b"\r\n..") + b".\r\n"  # dot-stuffed once, not per message
people = open(rcpts, encoding="utf-8").read().split()
conn = smtplib.SMTP(host, port, local_hostname="floor.localhost")
conn.ehlo()
for rcpt in people:
    assert conn.mail("news@example.org")[0] == 250
    assert conn.rcpt(rcpt)[0] == 250
    assert conn.docmd("DATA")[0] == 354
    conn.send(data)
    assert conn.getreply()[0] == 250
conn.quit()
"""


class SlowSink(Sink):
    """benchmarks/smtp_sink.py with --delay and --pipelining."""

    def __init__(self, port: int, control: int, delay: float):
        self.port, self.control = port, control
        cmd = [sys.executable, str(HERE / "smtp_sink.py"), "--port", str(port), "--control", str(control),
               "--delay", str(delay), "--pipelining"]  # fmt: skip
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if "listening" not in line:
            raise SystemExit(f"sink did not start: {line!r}")


def prepare(root: Path, count: int) -> dict[str, Path]:
    compileall.compile_dir(str(REPO / "src" / "digest"), quiet=1)
    build = root / "build"
    subprocess.run([tool("digest"), "build", *WINDOW, "--out", str(build)], cwd=REPO, check=True,
                   stdout=subprocess.DEVNULL)  # fmt: skip
    who = people(count)
    members = root / "members.csv"
    members.write_text("email,name\n" + "".join(f'{email},"{name}"\n' for name, email in who), encoding="utf-8")
    rcpts = root / "rcpts.txt"
    rcpts.write_text("\n".join(email for _, email in who) + "\n", encoding="utf-8")
    eml = root / "email.crlf.eml"
    eml.write_bytes((build / "email.eml").read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))
    config = root / "digest.toml"
    config.write_text(config_text(root), encoding="utf-8")
    env = digest_env(config, 9)
    checked = subprocess.run([tool("digest"), "check", "--from-build", str(build)], env=env, capture_output=True)
    if checked.returncode != 0:
        raise SystemExit(f"digest check failed:\n{checked.stdout.decode()}{checked.stderr.decode()}")
    return {"build": build, "members": members, "rcpts": rcpts, "eml": eml, "config": config}


def digest_env(config: Path, port: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    env.update(DIGEST_CONFIG=str(config), DIGEST_SMTP_HOST="127.0.0.1", DIGEST_SMTP_PORT=str(port),
               DIGEST_SMTP_SECURITY="none", DIGEST_UNSUBSCRIBE_SECRET=SECRET, **extra)  # fmt: skip
    return env


def run(who: str, files: dict[str, Path], sink: SlowSink, root: Path, count: int, rnd: int) -> dict[str, Any]:
    folder = root / f"round-{rnd}-{who}"
    folder.mkdir()
    if who == "floor":
        cmd = [sys.executable, "-c", FLOOR, "127.0.0.1", str(sink.port), str(files["eml"]), str(files["rcpts"])]
        env = dict(os.environ)
    else:
        config = folder / "digest.toml"
        config.write_text(config_text(folder), encoding="utf-8")  # a fresh ledger every run
        extra = {"DIGEST_SMTP_CONNECTIONS": "1"} if who == "digest-1conn" else {}
        env = digest_env(config, sink.port, **extra)
        cmd = [tool("digest"), "send", "--from-build", str(files["build"]), "--recipients", str(files["members"]),
               "--backend", "smtp", "--yes"]  # fmt: skip
    sink.ask("reset")
    wall, user, system, code = spawn_and_wait(cmd, env, folder, folder / "stderr.txt")
    after = sink.ask("stats")
    if code != 0 or after["messages"] != count or after["recipients"] != count:
        raise SystemExit(f"{who}: exit {code}, sink {after}; see {folder / 'stderr.txt'}")
    print(f"round {rnd} {who:<13} {count / wall:7.1f} msg/s ({wall:.1f} s, {after['connections']} connections, "
          f"client CPU {user + system:.1f} s)", flush=True)  # fmt: skip
    return {"who": who, "round": rnd, "wall_s": wall, "msg_s": count / wall, "connections": after["connections"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--delay", type=float, default=0.02)
    ap.add_argument("--only", default="digest,digest-1conn,floor")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="smtp_latency-"))
    sink = SlowSink(free_port(), free_port(), args.delay)
    rows: list[dict[str, Any]] = []
    try:
        files = prepare(root, args.count)
        names = args.only.split(",")
        for rnd in range(1, args.rounds + 1):
            for who in names[rnd % len(names) :] + names[: rnd % len(names)]:
                rows.append(run(who, files, sink, root, args.count, rnd))
    finally:
        sink.stop()
        shutil.rmtree(root, ignore_errors=True)
    floor = statistics.median(r["msg_s"] for r in rows if r["who"] == "floor") if "floor" in names else None
    print(f"\n{args.count:,} messages, every reply {args.delay * 1000:.0f} ms late, median msg/s of {args.rounds} "
          "round(s):")  # fmt: skip
    for who in names:
        rate = statistics.median(r["msg_s"] for r in rows if r["who"] == who)
        width = 1 if who in ("digest-1conn", "floor") else 2
        bound = width / args.delay
        versus = f", {rate / floor:.1f}x the floor" if floor and who != "floor" else ""
        print(f"  {who:<13} {rate:7.1f} msg/s{versus}; latency bound {bound:.0f} msg/s "
              f"({rate / bound:.0%} of it)")  # fmt: skip


if __name__ == "__main__":
    main()
