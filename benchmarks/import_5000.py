r"""`digest import` of a 5,000-entry WordPress-shaped feed served by http.server on 127.0.0.1: the first
import, then a no-change re-import answered 304, and one read in full (no validators: 0 new after parsing).

    python benchmarks/import_5000.py                 # 3 rounds of the three runs, 5,000 entries
    python benchmarks/import_5000.py --rounds 1 --count 1000

Each run is a separate `digest import URL` process; its wall time runs from spawn to exit (process start
included) and its peak memory is the child's max RSS from os.wait4. Every round starts from an empty
newsletter folder, so the first import writes `count` files and the re-imports write none (checked).
Figures are medians with [min-max]. Writes benchmarks/out/import_5000/results.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import email.utils
import hashlib
import http.server
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "out" / "import_5000"
CONFIG = 'name = "Bench"\nslug = "bench"\nsender = "Bench <news@example.org>"\ntimezone = "America/Chicago"\n'
WORDS = [
    "mayors",
    "cities",
    "budget",
    "transit",
    "housing",
    "water",
    "climate",
    "workers",
    "equity",
    "parks",
    "safety",
    "data",
    "schools",
    "libraries",
    "streets",
    "energy",
    "health",
    "zoning",
    "jobs",
    "small",
    "business",
    "police",
    "fire",
    "neighbourhoods",
]


def make_feed(count: int) -> bytes:
    """A WordPress RSS 2.0 feed: content:encoded of ~120 words with links and an image, categories, guids."""
    start = dt.datetime(2020, 1, 1, 15, 0, tzinfo=dt.UTC)
    items = []
    for n in range(count):
        words = " ".join(WORDS[(n + k) % len(WORDS)] for k in range(120))
        when = email.utils.format_datetime(start - dt.timedelta(hours=7 * n))
        items.append(
            f"<item><title>Post {n}: {WORDS[n % len(WORDS)].title()} &#8211; a report</title>"
            f"<link>https://www.example.org/{2020 - n // 800}/post-{n}/</link>"
            f"<dc:creator><![CDATA[Editor]]></dc:creator><pubDate>{when}</pubDate>"
            f"<category><![CDATA[{'Reports' if n % 3 == 0 else 'News'}]]></category>"
            f"<category><![CDATA[{WORDS[n % 7]}]]></category>"
            f'<guid isPermaLink="false">https://www.example.org/?p={10_000 + n}</guid>'
            f"<description><![CDATA[{words[:200]} [&#8230;]]]></description>"
            f'<content:encoded><![CDATA[<p><img src="https://www.example.org/i/{n}.jpg" alt="Photo {n}" '
            f'width="800" height="450"/>{words}</p><p>Read <a href="/{n}/more/">more</a>.</p>]]></content:encoded>'
            "</item>\n"
        )
    head = (
        '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0" '
        'xmlns:content="http://purl.org/rss/1.0/modules/content/" xmlns:dc="http://purl.org/dc/elements/1.1/">'
        "<channel><title>Bench</title><link>https://www.example.org</link><description>x</description>\n"
    )
    return (head + "".join(items) + "</channel></rss>\n").encode("utf-8")


class Server:
    """Serves the feed at /feed/, with an ETag (304 on a match) while `validators` is on, else plainly."""

    def __init__(self, body: bytes) -> None:
        etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
        self.validators = True
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                validators = server.validators
                if validators and self.headers.get("If-None-Match") == etag:
                    self.send_response(304)
                    self.send_header("ETag", etag)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/rss+xml; charset=UTF-8")
                self.send_header("Content-Length", str(len(body)))
                if validators:
                    self.send_header("ETag", etag)
                self.end_headers()
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()


def run(folder: Path, url: str) -> tuple[float, float, float, str]:
    """One `digest import URL` process: (wall seconds, CPU seconds, peak RSS MiB, its last line)."""
    digest = Path(sys.executable).with_name("digest")
    env = {**os.environ, "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost", "DIGEST_NO_CACHE": "1"}
    started = time.perf_counter()
    child = subprocess.Popen(
        [str(digest), "import", url], cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    assert child.stdout is not None
    output = child.stdout.read().decode()
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise SystemExit(f"digest import failed ({child.returncode}):\n{output[-2000:]}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, output.strip().splitlines()[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    body = make_feed(args.count)
    server = Server(body)
    results: dict[str, list[tuple[float, float, float]]] = {
        "first": [],
        "not_modified_304": [],
        "unchanged_full_read": [],
    }
    for round_ in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="digest-import-bench-") as tmp:
            folder = Path(tmp)
            (folder / "digest.toml").write_text(CONFIG, encoding="utf-8")
            *figures, last = run(folder, server.url + "/feed/")
            assert last.startswith(f"{args.count} new,"), last
            assert len(list((folder / "content").glob("*.md"))) == args.count
            results["first"].append(tuple(figures))  # type: ignore[arg-type]
            *figures, last = run(folder, server.url + "/feed/")
            assert last.startswith("0 new, 0 updated"), last
            results["not_modified_304"].append(tuple(figures))  # type: ignore[arg-type]
            # The same feed from a server without validators: read, parsed and compared entry by entry.
            server.validators = False
            *figures, last = run(folder, server.url + "/feed/")
            server.validators = True
            assert last.startswith("0 new, 0 updated"), last
            results["unchanged_full_read"].append(tuple(figures))  # type: ignore[arg-type]
            print(f"round {round_ + 1}: " + ", ".join(f"{k} {v[-1][0]:.2f} s" for k, v in results.items()), flush=True)
    summary = {}
    for name, runs in results.items():
        line = f"{name:20}"
        summary[name] = {}
        for index, (label, unit) in enumerate((("wall", "s"), ("cpu", "s"), ("peak_rss", "MiB"))):
            values = [run_[index] for run_ in runs]
            middle, low, high = statistics.median(values), min(values), max(values)
            summary[name][f"{label}_{unit.lower()}"] = {"median": middle, "min": low, "max": high}
            line += f"  {label} {middle:6.2f} {unit} [{low:.2f}-{high:.2f}]"
        print(line)
    OUT.mkdir(parents=True, exist_ok=True)
    meta = {"count": args.count, "rounds": args.rounds, "feed_bytes": len(body), "python": sys.version.split()[0]}
    (OUT / "results.json").write_text(json.dumps({**meta, "results": summary}, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
