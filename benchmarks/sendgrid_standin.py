"""A bare stand-in for SendGrid's mail/send, run as its own process by benchmarks/sendgrid_inflight.py.

    python benchmarks/sendgrid_standin.py --port 8090 [--delay 0.3] [--save DIR]

It reads each request's body and answers 202 with an X-Message-Id, `--delay` seconds later (a remote
provider's round trip; requests on other connections are answered meanwhile). It does not parse or validate
anything: that is what makes it the honest floor (the project's emulator spends ~27 ms validating each
request). Counting costs a bytes.count per body: `GET /_stats` -> {"requests", "recipients", "bytes"}
(recipients: occurrences of '"email": "member' in the bodies), `DELETE /_stats` resets them. `--save DIR`
also writes every body to DIR/NNNNN.json (to capture the bodies a floor replays; not for timed runs).
HTTP/1.1 with keep-alive, one thread per connection.
"""

from __future__ import annotations

import argparse
import http.server
import json
import threading
import time
from pathlib import Path

MARK = b'"email": "member'


class Counts:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests = self.recipients = self.bytes = 0

    def as_json(self) -> bytes:
        with self.lock:
            return json.dumps({"requests": self.requests, "recipients": self.recipients, "bytes": self.bytes}).encode()


def serve(port: int, delay: float, save: Path | None) -> None:
    counts = Counts()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self, status: int, body: bytes = b"") -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            if status == 202:
                self.send_header("X-Message-Id", f"standin-{counts.requests}")
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with counts.lock:
                counts.requests += 1
                counts.recipients += body.count(MARK)
                counts.bytes += len(body)
                number = counts.requests
            if save is not None:
                (save / f"{number:05d}.json").write_bytes(body)
            if delay:
                time.sleep(delay)
            self._answer(202)

        def do_GET(self) -> None:  # noqa: N802
            self._answer(200, counts.as_json())

        def do_DELETE(self) -> None:  # noqa: N802
            reply = counts.as_json()
            with counts.lock:
                counts.requests = counts.recipients = counts.bytes = 0
            self._answer(200, reply)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--save", type=Path)
    args = parser.parse_args()
    if args.save:
        args.save.mkdir(parents=True, exist_ok=True)
    serve(args.port, args.delay, args.save)


if __name__ == "__main__":
    main()
