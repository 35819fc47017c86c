"""Test kit: a local SendGrid v3 mail/send emulator that the real `sendgrid` client talks to over HTTP.

It implements SendGrid's routing, auth, validation (the corrected OpenAPI request schema plus the rules a
schema cannot express), its status codes and error bodies, a rate limiter, scriptable faults, and an
inspection API under `/_emulator` that shows what each recipient got (docs/EMULATOR.md).

    with SendGridEmulator() as emu:
        sg = SendGridAPIClient(api_key=DEFAULT_API_KEY, host=emu.url)
        ...
        emu.messages(to="ann@example.com")

By hand: `python -m digest.testing.sendgrid_emulator --port 3030` (see docs/EMULATOR.md).
The request schema is MIT-licensed Twilio material (LICENSE-sendgrid-oai.txt beside this file).
"""

from __future__ import annotations

import base64
import json
import logging
import random
import secrets
import string
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from email.message import Message
from typing import Any, Final

from . import inspection
from .account import Config, Limits, RateLimit, RateLimiter, changed_config, optional_int
from .body import JSON, enabled, parse_body
from .faults import Fault, FaultScript
from .inspection import INSPECT_PATH
from .replies import STATUS_MESSAGES, Err, Reply, error_reply, json_reply, rate_headers, status_reply
from .rules import RuleContext, dedupe, rule_errors, unverified_sender
from .schema import SchemaCheck, default_check
from .store import Record, Store
from .transport import BATCH_PATH, SEND_PATH, Handler, Server
from .wording import M_UNVERIFIED_SENDER

__all__ = ["DEFAULT_API_KEY", "Limits", "RateLimit", "SendGridEmulator"]

log = logging.getLogger(__name__)

DEFAULT_API_KEY: Final = "SG.test-key"


def new_message_id() -> str:
    # 16 random bytes, base64url without padding: 22 characters, like SendGrid's X-Message-Id.
    return base64.urlsafe_b64encode(secrets.token_bytes(16)).rstrip(b"=").decode()


def new_batch_id() -> str:
    return "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(43))


class SendGridEmulator:
    """SendGrid v3 mail/send on 127.0.0.1, with a Python mirror of its `/_emulator` inspection API.

    `keys` are the accepted API keys; `scopeless_keys` are known but lack mail.send (403); `exhausted_keys` are
    out of credits (401). `verified_senders`, `asm_groups`, `templates`, `ip_pools` of None accept any value;
    otherwise only those (a sender may be "@domain"). `credits` counts recipients left on the plan (None: no
    limit). `clock` and `id_factory` make time and X-Message-Id deterministic in tests.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        keys: Iterable[str] = (DEFAULT_API_KEY,),
        scopeless_keys: Iterable[str] = (),
        exhausted_keys: Iterable[str] = (),
        credits: int | None = None,
        verified_senders: Iterable[str] | None = None,
        asm_groups: Iterable[int] | None = None,
        templates: Iterable[str] | None = None,
        ip_pools: Iterable[str] | None = None,
        rate_limit: RateLimit | None = None,
        rate_limit_headers_on_success: bool = False,
        limits: Limits | None = None,
        clock: Callable[[], float] = time.time,
        id_factory: Callable[[], str] = new_message_id,
        schema: Mapping[str, Any] | None = None,
    ) -> None:
        self._host = host
        self._requested_port = port
        self._clock = clock
        self._new_id = id_factory
        self._lock = threading.Lock()  # guards the configuration and the signer
        self._stopping = threading.Event()
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self._check = SchemaCheck(schema) if schema is not None else default_check()
        self._config = changed_config(
            Config(keys=frozenset()),
            {
                "keys": keys,
                "scopeless_keys": scopeless_keys,
                "exhausted_keys": exhausted_keys,
                "verified_senders": verified_senders,
                "asm_groups": asm_groups,
                "templates": templates,
                "ip_pools": ip_pools,
                "rate_limit": rate_limit,
                "rate_limit_headers_on_success": rate_limit_headers_on_success,
                "limits": limits or Limits(),
            },
        )
        self._store = Store(credits)
        self._faults = FaultScript()
        self._rates = RateLimiter()
        self._signer: Any = None

    # ---- lifecycle ----------------------------------------------------------------------------------------

    def start(self) -> SendGridEmulator:
        """Bind and serve in a background thread. Returns self, so `emu = SendGridEmulator().start()` works."""
        if self._server is not None:
            return self
        self._stopping.clear()
        server = Server((self._host, self._requested_port), Handler)
        server.emulator = self
        self._server = server
        # stop() waits up to one poll interval for the serving loop to notice; tests start and stop a lot.
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.02}, name="sendgrid-emulator", daemon=True
        )
        self._thread.start()
        log.info("SendGrid emulator listening on %s", self.url)
        return self

    def stop(self) -> None:
        """Stop serving and release the port. Delayed answers still pending are cut short."""
        self._stopping.set()
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def serve_forever(self) -> None:
        """Serve in the calling thread until interrupted (the by-hand entry point)."""
        self.start()
        try:
            while self._thread is not None and self._thread.is_alive():
                self._thread.join(timeout=0.5)
        finally:
            self.stop()

    def __enter__(self) -> SendGridEmulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the emulator is not running; call start() first")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """What to pass as `host=` to SendGridAPIClient (no trailing slash, or the client asks for //v3/...)."""
        return f"http://{self._host}:{self.port}"

    # ---- inspection, Python side (mirrors /_emulator) ------------------------------------------------------

    def messages(
        self,
        to: str | None = None,
        *,
        message_id: str | None = None,
        category: str | None = None,
        custom_args: Mapping[str, str] | None = None,
        include_content: bool = True,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[dict[str, JSON]]:
        """One dict per recipient (to, cc and bcc) of every accepted request, oldest first.

        `to` matches any of to/cc/bcc case-insensitively; `custom_args` must all match the merged custom_args.
        Content comes with the personalization's substitutions applied (`text`, `html`, `content`).
        """
        return self._store.messages(
            to,
            message_id=message_id,
            category=category,
            custom_args=custom_args,
            include_content=include_content,
            limit=limit,
            offset=offset,
        )

    def requests(self, *, include_body: bool = True) -> list[dict[str, JSON]]:
        """Every /v3 request: method, path, headers (Authorization redacted), body, status, message id, fault."""
        return self._store.requests(include_body=include_body)

    def stats(self) -> dict[str, JSON]:
        """Counts of /v3 requests, accepted (202), sandbox (200), recipients accepted, drops, faults, by status."""
        return self._store.stats()

    def reset(self) -> None:
        """Forget messages, requests, stats, rate-limit windows, batches and pending faults. Configuration stays."""
        self._store.clear()
        self._rates.clear()
        self._faults.clear()

    def add_fault(
        self,
        status: int | None = None,
        *,
        count: int = 1,
        message: str | None = None,
        delay: float = 0.0,
        drop: bool = False,
        reset_in: float | None = None,
        rate: float | None = None,
        seed: int | None = None,
        hold: float = 0.0,
    ) -> None:
        """Script the next `count` mail/send requests (faults queue up in order).

        `status`: answer with it and SendGrid's JSON error body (`message` overrides the text; a 429 with
        `reset_in` also carries X-RateLimit-* headers). `delay`: handle the request normally, answer after that many
        seconds. `drop`: handle and store it normally, then close the connection without answering (the lost 202).
        `hold`: wait that many seconds before storing; a client that went away meanwhile (killed while its request
        was on the wire) is not stored, as SendGrid never gets a request that is cut off.
        With `rate` (0..1) the fault instead hits that random share of all later requests, reproducibly with `seed`;
        several random faults are drawn in the order added, the first that hits answers.
        """
        spec: dict[str, Any] = {"status": status, "count": count, "message": message, "delay": delay, "drop": drop}
        spec.update(reset_in=reset_in, rate=rate, seed=seed, hold=hold)
        self._faults.add(Fault.parse(spec))

    def add_faults(self, faults: list[Fault]) -> None:
        """Queue faults already parsed (all valid before any is queued)."""
        for fault in faults:
            self._faults.add(fault)

    def clear_faults(self) -> None:
        self._faults.clear()

    def faults(self) -> list[dict[str, JSON]]:
        """Pending scripted faults, then the random faults (in the order they are drawn)."""
        return self._faults.pending()

    def config(self) -> dict[str, JSON]:
        with self._lock:
            return {**self._config.describe(), "credits": self._store.credits}

    def configure(self, **changes: Any) -> dict[str, JSON]:
        """Change keys, scopeless_keys, exhausted_keys, credits, verified_senders, asm_groups, templates, ip_pools,
        rate_limit (RateLimit, {"limit", "window"} or None), rate_limit_headers_on_success, limits (Limits or a
        dict of fields to change). Lists replace; None means "accept any" where allowed. Returns the new config."""
        with self._lock:
            self._config = changed_config(self._config, changes)
            if "credits" in changes:
                self._store.credits = optional_int(changes["credits"], "credits")
            if "rate_limit" in changes:
                self._rates.clear()
        return self.config()

    # ---- Event Webhook (testing/sendgrid_events.py) -------------------------------------------------------

    @property
    def webhook_signer(self) -> Any:
        """The key pair this emulator signs events with (sendgrid_events.Signer); `.public_key` is the text to
        give the receiver as DIGEST_SENDGRID_WEBHOOK_KEY."""
        with self._lock:
            if self._signer is None:
                from ..sendgrid_events import Signer

                self._signer = Signer()
            return self._signer

    def events(self, *, bounce_rate: float = 0.0, spam_rate: float = 0.0, seed: int = 0) -> list[dict[str, JSON]]:
        """The events SendGrid would post about every request accepted so far (answered or not), oldest first:
        processed, then delivered or (a `bounce_rate` share) a hard bounce, and a `spam_rate` share of spam
        reports. The same arguments give the same events."""
        from ..sendgrid_events import request_events

        accepted = self._store.accepted()
        rng = random.Random(seed)
        out: list[dict[str, JSON]] = []
        for request in accepted:
            body = json.loads(request.raw)
            out += request_events(
                body, request.message_id, request.accepted_at, rng, bounce_rate=bounce_rate, spam_rate=spam_rate
            )
        return out

    def deliver_events(self, url: str, *, bounce_rate: float = 0.0, spam_rate: float = 0.0, seed: int = 0) -> list[int]:
        """POST `events(...)` to a webhook URL, signed with `webhook_signer`, in SendGrid-sized batches;
        returns the HTTP status of each post."""
        from ..sendgrid_events import post

        events = self.events(bounce_rate=bounce_rate, spam_rate=spam_rate, seed=seed)
        return post(url, events, self.webhook_signer)

    def write_events(
        self, path: str | Any, *, lines: bool = False, bounce_rate: float = 0.0, spam_rate: float = 0.0, seed: int = 0
    ) -> int:
        """Write `events(...)` to a file (the JSON array, or one per line with `lines`); returns how many."""
        from pathlib import Path

        from ..sendgrid_events import write

        events = self.events(bounce_rate=bounce_rate, spam_rate=spam_rate, seed=seed)
        write(Path(path), events, lines=lines)
        return len(events)

    def create_batch(self) -> str:
        """What POST /v3/mail/batch does: a new batch id. Once one exists, a mail's batch_id must be known."""
        batch_id = new_batch_id()
        self._store.add_batch(batch_id)
        return batch_id

    # ---- request handling (transport.Routes) ---------------------------------------------------------------

    def handle_send(self, handler: Handler) -> None:
        received = self._clock()
        config = self._config
        raw, size = handler.read_body(config.limits.max_body_bytes)
        fault = self._faults.take()
        if fault is not None and fault.hold:
            self._stopping.wait(fault.hold)
            if handler.client_gone():
                self._store.count_cut_off()
                handler.close_connection = True
                return
        if fault is not None and fault.status is not None:
            reply = self._fault_reply(fault, received, config)
        elif raw is None:
            reply = status_reply(413)
        else:
            try:
                reply = self._process_send(handler.headers, raw, received, config)
            except Exception:  # the client must still get SendGrid's JSON shape, never a traceback page
                log.exception("emulator failed on a mail/send request")
                reply = status_reply(500)
        record = self._record(handler, raw or b"", size, reply, fault)
        if fault is not None and fault.delay:
            self._stopping.wait(fault.delay)
        if fault is not None and fault.drop:
            self._store.mark_dropped(record)
            handler.close_connection = True
            return
        handler.send_reply(reply)

    def _fault_reply(self, fault: Fault, now: float, config: Config) -> Reply:
        status = fault.status or 500
        headers: list[tuple[str, str]] = []
        if status == 429 and fault.reset_in is not None:
            limit = config.rate_limit.limit if config.rate_limit else 1
            headers = rate_headers(limit, 0, now + fault.reset_in)
        return error_reply(status, [Err(fault.message or STATUS_MESSAGES.get(status, "error"))], headers)

    def _process_send(self, headers: Message, raw: bytes, now: float, config: Config) -> Reply:
        key, refusal = self._authorize(headers.get("Authorization"), config)
        if refusal is not None:
            return refusal
        limited, limit_headers = self._rate_check(key, now, config)
        if limited is not None:
            return limited
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            return status_reply(415)
        try:
            body = parse_body(text)
        except (ValueError, RecursionError):
            return error_reply(400, [Err("Bad Request")])
        if not isinstance(body, dict):
            return error_reply(400, [Err("Bad Request")])
        batches = self._store.batches()
        context = RuleContext(config.limits, now, config.asm_groups, config.templates, config.ip_pools, batches)
        errors = dedupe(self._check.errors(body) + rule_errors(body, context))
        if errors:
            return error_reply(400, errors, limit_headers)
        if config.verified_senders is not None:
            where = unverified_sender(body, config.verified_senders)
            if where is not None:
                return error_reply(403, [Err(M_UNVERIFIED_SENDER, where)])
        if enabled(body.get("mail_settings"), "sandbox_mode"):
            return Reply(200, b"", limit_headers, content_type="text/plain; charset=utf-8")
        message_id = self._new_id()
        self._store.accept(body, raw, message_id, now, headers.get("On-Behalf-Of"))
        reply_headers = [("X-Message-Id", message_id), *limit_headers]
        return Reply(202, b"", reply_headers, content_type="text/plain; charset=utf-8", message_id=message_id)

    def _authorize(self, authorization: str | None, config: Config) -> tuple[str, Reply | None]:
        scheme, _, token = (authorization or "").strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return "", status_reply(401, "Permission denied, wrong credentials")
        if token not in config.keys | config.scopeless_keys | config.exhausted_keys:
            return token, status_reply(401, "The provided authorization grant is invalid, expired, or revoked")
        if token in config.scopeless_keys:
            return token, status_reply(403, "access forbidden")
        if token in config.exhausted_keys or self._store.out_of_credits():
            return token, status_reply(401, "Maximum credits exceeded")
        return token, None

    def _rate_check(self, key: str, now: float, config: Config) -> tuple[Reply | None, list[tuple[str, str]]]:
        rule = config.rate_limit
        if rule is None:
            return None, []
        allowed, remaining, reset = self._rates.take(key, now, rule)
        if not allowed:
            return error_reply(429, [Err(STATUS_MESSAGES[429])], rate_headers(rule.limit, 0, reset)), []
        if config.rate_limit_headers_on_success:
            return None, rate_headers(rule.limit, remaining, reset)
        return None, []

    def _record(self, handler: Handler, raw: bytes, size: int, reply: Reply, fault: Fault | None) -> Record:
        headers = {k: ("[REDACTED]" if k.lower() == "authorization" else v) for k, v in handler.headers.items()}
        return self._store.record(
            Record(
                id=0,
                received_at=self._clock(),
                method=handler.command,
                path=handler.path,
                headers=headers,
                raw=raw,
                body_bytes=size,
                status=reply.status,
                message_id=reply.message_id,
                response=reply.body,
                fault=fault.as_json() if fault is not None else None,
            )
        )

    def _reply_and_record(self, handler: Handler, reply: Reply, raw: bytes = b"", size: int = 0) -> None:
        self._record(handler, raw, size, reply, None)
        handler.send_reply(reply)

    def handle_v3(self, handler: Handler, path: str) -> None:
        """Everything under /v3 except a POST to mail/send: batches, 405 and 404, all in SendGrid's JSON shape."""
        method = handler.command
        is_batch_item = path.startswith(BATCH_PATH + "/") and path.count("/") == 4
        allowed = {SEND_PATH: "POST", BATCH_PATH: "POST"}.get(path, "GET" if is_batch_item else None)
        raw, size = handler.read_body(self._config.limits.max_body_bytes)
        if allowed is None:
            return self._reply_and_record(handler, status_reply(404), raw or b"", size)
        if method != allowed:  # SendGrid answers a wrong method before looking at credentials
            return self._reply_and_record(handler, status_reply(405), raw or b"", size)
        _, refusal = self._authorize(handler.headers.get("Authorization"), self._config)
        if refusal is not None:
            return self._reply_and_record(handler, refusal, raw or b"", size)
        if path == BATCH_PATH:
            return self._reply_and_record(handler, json_reply(201, {"batch_id": self.create_batch()}), raw or b"", size)
        batch_id = path.rsplit("/", 1)[1]
        reply = json_reply(200, {"batch_id": batch_id}) if self._store.has_batch(batch_id) else status_reply(404)
        return self._reply_and_record(handler, reply, raw or b"", size)

    def handle_inspect(self, handler: Handler, path: str, query: str) -> None:
        raw, _ = handler.read_body(self._config.limits.max_body_bytes)
        try:
            reply = inspection.route(self, handler.command, path[len(INSPECT_PATH) :].strip("/"), query, raw or b"")
        except ValueError as exc:
            reply = error_reply(400, [Err(str(exc))])
        handler.send_reply(reply)
