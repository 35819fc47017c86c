"""How long `POST /webhooks/sendgrid` takes to verify, store and apply 10,000 events, against SendGrid's timeout.

    python benchmarks/webhook_10k.py                 # 10,000 events in one post, 5 rounds
    python benchmarks/webhook_10k.py --events 20000 --rounds 3

SendGrid does not document its webhook timeout (a third party says 10 s) and posts at most ~768 KB per
request; this posts 10,000 events (~2 MB, processed + delivered for 5,000 recipients of 5 unknown
batches) in ONE request, to the WSGI app `digest unsubscribe-server` runs, served by wsgiref on 127.0.0.1,
each round against a fresh ledger. Timed from the request's first byte to the answer: signature check,
parsing, the fsynced store, applying (5,000 recipients settled sent). Also timed: the same post again
(all duplicates), and SendGrid-sized posts (<= 768 KB) of the same events.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

ED = "mayors-innovation-2020-01"


def post(port: int, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any], float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    started = time.perf_counter()
    conn.request("POST", "/webhooks/sendgrid", body=body, headers={"Content-Type": "application/json", **headers})
    answer = conn.getresponse()
    data = answer.read()
    seconds = time.perf_counter() - started
    conn.close()
    return answer.status, json.loads(data) if answer.status == 200 else {}, seconds


def one_round(root: Path, events: int) -> dict[str, float]:
    from _factories import make_settings
    from test_events_webhook import body_of, delivered, with_unknown_batches

    from digest.testing.sendgrid_events import Signer, batches
    from digest.unsubscribe import make_app, make_wsgi_server
    from digest.webhook import load_key

    people = events // 2
    size = 1000
    settings = make_settings(root, ledger_path=root / "ledger.sqlite3")
    with_unknown_batches(settings.ledger_path, people, size)
    signer = Signer()
    server = make_wsgi_server(
        make_app(
            settings, b"benchmark-secret-0123456789abcdef", root / "s.csv", webhook_key=load_key(signer.public_key)
        ),
        "127.0.0.1",
        0,
    )
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        items = delivered(range(people), size)
        body = body_of(items)
        status, counts, first = post(server.server_port, body, signer.headers(body))
        assert status == 200 and counts["stored"] == events and counts["settled_sent"] == people, counts
        status, counts, again = post(server.server_port, body, signer.headers(body))
        assert status == 200 and counts["duplicates"] == events, counts
        sized = 0.0
        posts = 0
        for part in batches(items):
            status, counts, seconds = post(server.server_port, part, signer.headers(part))
            assert status == 200, status
            sized = max(sized, seconds)
            posts += 1
    finally:
        server.shutdown()
        server.server_close()
    return {"one_post_s": first, "same_post_again_s": again, "mb": len(body) / 1e6, "sized_posts": posts,
            "slowest_sized_post_s": sized}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    rows = []
    for n in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="webhook_10k-") as folder:
            row = one_round(Path(folder), args.events)
        rows.append(row)
        print(
            f"round {n + 1}: {args.events:,} events ({row['mb']:.1f} MB) in one post {row['one_post_s']:.2f} s; "
            f"the same post again {row['same_post_again_s']:.2f} s; {row['sized_posts']:.0f} posts of <= 768 KB "
            f"(all duplicates by then), slowest {row['slowest_sized_post_s']:.2f} s",
            flush=True,
        )
    for key in ("one_post_s", "same_post_again_s", "slowest_sized_post_s"):
        values = [r[key] for r in rows]
        print(f"{key}: median {statistics.median(values):.2f} s (min {min(values):.2f}, max {max(values):.2f})")


if __name__ == "__main__":
    main()
