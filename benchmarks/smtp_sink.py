"""A counting SMTP sink (aiosmtpd) for benchmarks/smtp_5000.py, run as its own process.

    python benchmarks/smtp_sink.py --port 8025 --control 8026
    python benchmarks/smtp_sink.py --port 8025 --control 8026 --delay 0.02 --pipelining

The SMTP handler only counts: messages, recipients, bytes of DATA and connections; it answers 250 and
keeps nothing. The control port is a tiny side channel on 127.0.0.1: connect, send one line, read one
JSON line back.

    stats   -> {"messages": N, "recipients": N, "bytes": N, "connections": N, "cpu_s": server CPU so far}
    reset   -> the same, then every counter (not cpu_s) back to 0
    quit    -> the same, then the server exits

`--delay S` answers every command S seconds after reading it, like a relay S seconds away (one round trip):
the reply is scheduled and the next command read at once, so commands sent together (pipelined) wait S
once, not once each. `--pipelining` offers PIPELINING in the EHLO answer (aiosmtpd reads pipelined
commands in order but does not say so), as Postfix and the big providers do.

Running apart from the client keeps the client's CPU accounting (os.wait4 of the client process) and
GIL free of the server's work. The server's host name is fixed so aiosmtpd never calls
socket.getfqdn() per connection (it would for every connection of a client that reconnects per message).
SIGTERM also prints the final stats to stdout and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import signal
import sys
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session


class Counter:
    """aiosmtpd handler: counts, answers 250."""

    def __init__(self, pipelining: bool = False) -> None:
        self.pipelining = pipelining
        self.messages = 0
        self.recipients = 0
        self.bytes = 0
        self.connections = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        self.messages += 1
        self.recipients += len(envelope.rcpt_tos)
        content = envelope.original_content if envelope.original_content is not None else envelope.content
        self.bytes += len(content or b"")
        return "250 OK"

    async def handle_EHLO(  # noqa: N802
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        if self.pipelining:
            return [*responses[:-1], "250-PIPELINING", responses[-1]]
        return responses

    def stats(self) -> dict[str, Any]:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return {
            "messages": self.messages,
            "recipients": self.recipients,
            "bytes": self.bytes,
            "connections": self.connections,
            "cpu_s": round(usage.ru_utime + usage.ru_stime, 4),
        }

    def reset(self) -> None:
        self.messages = self.recipients = self.bytes = self.connections = 0


class _Distant(SMTP):
    """aiosmtpd's SMTP with every reply written `delay` seconds after it was made (in order)."""

    delay = 0.0

    async def push(self, status: str | bytes) -> None:
        response = status.encode("utf-8") if isinstance(status, str) else status
        if response.startswith(b"221"):  # the goodbye: written before the connection closes
            self._late(response + b"\r\n")
            return
        asyncio.get_running_loop().call_later(self.delay, self._late, response + b"\r\n")

    def _late(self, data: bytes) -> None:
        if self._writer is not None and not self._writer.is_closing():
            self._writer.write(data)


async def serve(host: str, port: int, control: int, delay: float = 0.0, pipelining: bool = False) -> None:
    counter = Counter(pipelining)
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    _Distant.delay = delay

    def factory() -> SMTP:
        counter.connections += 1
        kind = _Distant if delay else SMTP
        return kind(counter, hostname="sink.localhost", ident="counting sink")

    smtp_server = await loop.create_server(factory, host, port)

    async def on_control(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        command = (await reader.readline()).decode("ascii", "replace").strip().lower()
        writer.write((json.dumps(counter.stats()) + "\n").encode("ascii"))
        await writer.drain()
        writer.close()
        if command == "reset":
            counter.reset()
        elif command == "quit" and not done.done():
            done.set_result(None)

    control_server = await asyncio.start_server(on_control, host, control)
    loop.add_signal_handler(signal.SIGTERM, lambda: done.done() or done.set_result(None))
    print(f"sink listening on {host}:{port}, control {host}:{control}", flush=True)
    await done
    smtp_server.close()
    control_server.close()
    print(json.dumps(counter.stats()), flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8025)
    ap.add_argument("--control", type=int, default=8026)
    ap.add_argument("--delay", type=float, default=0.0, help="seconds before each reply (default 0)")
    ap.add_argument("--pipelining", action="store_true", help="offer PIPELINING (RFC 2920)")
    args = ap.parse_args(argv)
    asyncio.run(serve(args.host, args.port, args.control, args.delay, args.pipelining))
    return 0


if __name__ == "__main__":
    sys.exit(main())
