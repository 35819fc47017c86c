"""Command line of the SendGrid emulator: `python -m digest.testing.sendgrid_emulator --port 3030`."""

from __future__ import annotations

import argparse
import logging
import sys

try:
    from .server import DEFAULT_API_KEY, RateLimit, SendGridEmulator
except ModuleNotFoundError as exc:  # jsonschema, without the [emulator] extra: say which, not a traceback
    sys.exit(f"error: {exc}")


def _parse_rate(text: str) -> RateLimit:
    limit, _, window = text.partition("/")
    try:
        return RateLimit(int(limit), float(window or 60))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or N/SECONDS, e.g. 600/60 (got {text!r})") from None


def main(argv: list[str] | None = None) -> int:
    """Run the emulator in the foreground and say how to point digest at it."""
    parser = argparse.ArgumentParser(
        prog="python -m digest.testing.sendgrid_emulator",
        description="A local SendGrid v3 mail/send emulator (inspect at /_emulator/messages).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=3030, help="port (default 3030; 0 picks a free one)")
    parser.add_argument("--key", action="append", help=f"accepted API key, repeatable (default {DEFAULT_API_KEY})")
    parser.add_argument("--scopeless-key", action="append", default=[], help="a key without mail.send -> 403")
    parser.add_argument("--exhausted-key", action="append", default=[], help="a key out of credits -> 401")
    parser.add_argument("--sender", action="append", help="verified sender address or @domain (default: any)")
    parser.add_argument("--asm-group", action="append", type=int, help="known unsubscribe group id (default: any)")
    parser.add_argument("--template", action="append", help="known template id (default: any)")
    parser.add_argument("--ip-pool", action="append", help="known IP pool name (default: any)")
    parser.add_argument("--rate-limit", type=_parse_rate, help="N or N/SECONDS requests per key, e.g. 600/60")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(asctime)s %(message)s")
    keys = args.key or [DEFAULT_API_KEY]
    emulator = SendGridEmulator(
        host=args.host,
        port=args.port,
        keys=keys,
        scopeless_keys=args.scopeless_key,
        exhausted_keys=args.exhausted_key,
        verified_senders=args.sender,
        asm_groups=args.asm_group,
        templates=args.template,
        ip_pools=args.ip_pool,
        rate_limit=args.rate_limit,
    )
    try:
        emulator.start()
    except OSError as exc:
        print(
            f"error: cannot listen on {args.host}:{args.port} ({exc.strerror or exc}); "
            "stop what uses that port or pick another with --port",
            file=sys.stderr,
        )
        return 1
    # Only the built-in test key is echoed: a key given on the command line may be real.
    key_hint = DEFAULT_API_KEY if keys == [DEFAULT_API_KEY] else "<one of your --key values>"
    print(f"SendGrid emulator listening on {emulator.url}", flush=True)
    print("Point digest at it:", flush=True)
    print(f"  DIGEST_SENDGRID_HOST={emulator.url} SENDGRID_API_KEY={key_hint} digest send ...", flush=True)
    print(f"See what was sent: curl {emulator.url}/_emulator/messages   (Ctrl-C stops)", flush=True)
    try:
        emulator.serve_forever()
    except KeyboardInterrupt:
        emulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
