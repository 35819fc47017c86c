"""SendGrid backend: one v3 mail/send request per batch of up to 1,000 recipients, personalised by substitutions.

The payload is the JSON that `json.dumps` would make of plain dicts (the sendgrid helper classes cost several
times the CPU), written from pieces: the message-level part (from, subject, content, categories, asm, sandbox) is
serialised once per edition; per batch only the personalizations are written, each from its strings encoded
once: `to`, the placeholder substitutions and the per-recipient List-Unsubscribe headers.

Requests go out `[sendgrid] concurrency` at a time (the send loop's threads) over a small pool of
kept-alive connections (keepalive.py), so a request pays one round trip, not a connect and TLS handshake.

What is retried, and why:
- 429: not accepted; wait until X-RateLimit-Reset (capped by `max_wait`), or Retry-After, or back off with
  full jitter when neither is given, then send the same batch again. The wait is shared: every request
  of the run holds back until it is over, not just the one that was told.
- 5xx: documented as not accepted, so retried with backoff up to `max_retries`. SendGrid has no
  idempotency key; should a 5xx ever follow an acceptance, every message carries custom_args
  {edition, batch}, so duplicates can be told apart in the event webhook.
- connection failures while connecting or sending the request (urllib wraps those in URLError):
  the request never arrived whole, so nothing can have been accepted: retried like a 5xx.
- no answer after the request went out (read timeout, reset, remote disconnect): SendGrid may have
  accepted it. Retrying could mail 1,000 people twice, so BatchOutcomeUnknown is raised and the ledger
  marks the batch unknown for the user to decide.
- 400/401/403/413 and other 4xx: never retried; DeliveryError with SendGrid's own words.
"""

from __future__ import annotations

import functools
import http.client
import json
import logging
import os
import random
import re
import ssl
import threading
import time
import urllib.error
from collections.abc import Callable
from email.utils import parseaddr
from json.encoder import encode_basestring_ascii
from typing import Any

from python_http_client.exceptions import HTTPError
from sendgrid import SendGridAPIClient

from ..config import SendGridSettings
from ..errors import BatchOutcomeUnknown, ConfigError, DeliveryError
from ..models import Build
from ..personalize import ALL_TOKENS, substitutions, tokens_used
from .base import BatchResult, Personal
from .keepalive import KeptAliveClient

log = logging.getLogger(__name__)

API_KEY_ENV = "SENDGRID_API_KEY"
HOST_ENV = "DIGEST_SENDGRID_HOST"
MAX_PERSONALIZATIONS = 1000  # and 1,000 recipients (to+cc+bcc) per request: one recipient each here
MAX_CATEGORIES = 10
MAX_SUBSTITUTION_BYTES = 10_000  # per personalization, compact UTF-8 JSON (the stricter documented figure)
MAX_EMAIL_CHARS = 320
RESERVED_HEADERS = frozenset(
    h.lower()
    for h in ("x-sg-id", "x-sg-eid", "received", "dkim-signature", "Content-Type", "Content-Transfer-Encoding",
              "To", "From", "Subject", "Reply-To", "CC", "BCC")
)  # fmt: skip
_NAME_SEPARATORS = re.compile(r"[;,]+")
_HEADERS_CHECKED: set[str] = set()  # per-recipient header names already found not reserved
_str = encode_basestring_ascii  # a str as json.dumps writes it (quoted, ASCII, escaped)


_KEYS: dict[str, str] = {}  # keys as json.dumps writes them, colon included: the same few for every recipient


def _object(values: dict[str, str]) -> str:
    """A dict of strings as json.dumps writes it."""
    parts = []
    for k, v in values.items():
        key = _KEYS.get(k)
        if key is None:
            key = _KEYS[k] = f"{_str(k)}: "
        parts.append(key + _str(v))
    return "{" + ", ".join(parts) + "}"


class _RedactAuthorization(logging.Filter):
    """python_http_client logs the request headers, API key included, at DEBUG: blank the key out."""

    _BEARER = re.compile(r"Bearer [^'\"\s,}]+")

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and "Bearer" in record.msg:
            record.msg = self._BEARER.sub("Bearer [redacted]", record.msg)
        return True


_CLIENT_LOG = logging.getLogger("python_http_client.client")
if not any(isinstance(f, _RedactAuthorization) for f in _CLIENT_LOG.filters):
    _CLIENT_LOG.addFilter(_RedactAuthorization())


def to_name(name: str) -> str:
    """A display name SendGrid accepts in to.name: it rejects ';' and ',' there (CONTRACT §2), and
    quoting does not help because the check is on the raw string. "Smith, Ann" becomes "Smith Ann";
    the greeting's %%name%% substitution keeps the name as written."""
    if "," in name or ";" in name:
        name = _NAME_SEPARATORS.sub(" ", name)
    if name.isprintable() and "  " not in name and name.strip() == name:
        return name  # the common case: nothing to tidy (isprintable is False for tabs and newlines)
    return " ".join(name.split())


def _address(email: str, name: str) -> dict[str, str]:
    return {"email": email, "name": name} if name else {"email": email}


def _too_big(email: str, subs: dict[str, str], subs_json: str) -> str:
    """Why SendGrid would reject a personalization (failing the whole request), or ''."""
    if len(email) > MAX_EMAIL_CHARS:
        return f"address longer than {MAX_EMAIL_CHARS} characters"
    # subs_json (ASCII-escaped, with spaces) is never shorter than the compact UTF-8 JSON the limit counts.
    if len(subs_json) > MAX_SUBSTITUTION_BYTES:
        size = len(json.dumps(subs, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
        if size > MAX_SUBSTITUTION_BYTES:
            return f"personal values too long for SendGrid ({size} bytes of substitutions, limit 10,000)"
    return ""


def check_categories(categories: tuple[str, ...], where: str = "[sendgrid] categories") -> list[str]:
    """Unique, ASCII, ≤ 255 characters each, at most 10: SendGrid's rules, checked before any request."""
    out: list[str] = []
    for c in categories:
        if not c.isascii() or not 0 < len(c) <= 255:
            raise ConfigError(f"{where}: category {c!r} must be 1-255 ASCII characters; fix the category")
        if c not in out:
            out.append(c)
    if len(out) > MAX_CATEGORIES:
        raise ConfigError(
            f"{where}: {len(out)} categories, SendGrid allows {MAX_CATEGORIES} (the edition id is one of them); "
            "remove some from [sendgrid] categories"
        )
    return out


def _errors_of(exc: HTTPError) -> list[dict[str, Any]]:
    try:
        body = json.loads(exc.body or b"{}")
    except (ValueError, TypeError):
        return []
    errors = body.get("errors") if isinstance(body, dict) else None
    return [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []


class _RateGate:
    """One pause shared by every request of a backend: a 429 to one request holds all of them back."""

    def __init__(self, clock: Callable[[], float], sleep: Callable[[float], None]):
        self._clock = clock
        self._sleep = sleep
        self._until = 0.0
        self._lock = threading.Lock()

    def pause(self, seconds: float) -> None:
        with self._lock:
            self._until = max(self._until, self._clock() + seconds)

    def wait(self) -> None:
        remaining = self._until - self._clock()
        if remaining > 0:
            self._sleep(remaining)


class SendGridBackend:
    """Delivers batches through SendGrid's v3 mail/send with the official client.

    `sleep`, `clock` and `rng` are injectable so tests need not wait; `max_wait` caps one 429 wait;
    backoff after a 5xx or a refused connection is full jitter: uniform(0, min(backoff_cap, backoff_base * 2^n)).
    """

    name = "sendgrid"

    def __init__(
        self,
        settings: SendGridSettings,
        *,
        host: str | None = None,
        api_key_env: str = API_KEY_ENV,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        max_wait: float = 60.0,
        backoff_base: float = 1.0,
        backoff_cap: float = 30.0,
        rate_limit_retries: int = 10,
    ):
        if not 1 <= settings.batch_size <= MAX_PERSONALIZATIONS:
            raise ConfigError(f"[sendgrid] batch_size must be 1..{MAX_PERSONALIZATIONS} (SendGrid's limit per request)")
        self.settings = settings
        self.batch_size = settings.batch_size
        self.concurrency = settings.concurrency
        self.host = (host or os.environ.get(HOST_ENV) or settings.host).rstrip("/")
        self._categories = check_categories(settings.categories)
        self._api_key_env = api_key_env
        self._sleep = sleep
        self._clock = clock
        self._rng = rng or random.Random()
        self._gate = _RateGate(clock, sleep)
        self.max_wait = max_wait
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.rate_limit_retries = rate_limit_retries
        self._client: Any = None
        self._key = ""
        self._bases: dict[tuple[str, str, bool], dict[str, Any]] = {}
        self._heads: dict[tuple[str, str, bool], str] = {}  # each base as JSON, without its closing brace
        self._tokens: dict[tuple[str, str, bool], tuple[tuple[str, str, str], ...]] = {}

    # ---- lifecycle ------------------------------------------------------------------------------------

    def open(self) -> None:
        key = os.environ.get(self._api_key_env, "").strip()
        if not key:
            raise DeliveryError(
                f"{self._api_key_env} is not set: export your SendGrid API key (with the Mail Send permission) "
                f"in the environment; digest never reads it from digest.toml"
            )
        self._key = key
        client = SendGridAPIClient(api_key=key, host=self.host)
        # The official client builds each request; only its transport is swapped for kept-alive connections.
        # It has no timeout of its own: without one a stalled connection blocks the run forever.
        client.client = KeptAliveClient.like(client.client, timeout=self.settings.timeout)
        self._client = client

    def close(self) -> None:
        if self._client is not None:
            self._client.client.close_connections()
        self._client = None
        self._key = ""
        self._bases.clear()
        self._heads.clear()
        self._tokens.clear()

    # ---- payload --------------------------------------------------------------------------------------

    def message_base(self, build: Build, test: bool) -> dict[str, Any]:
        """The message-level part of every request of this edition, built once."""
        key = (build.edition, build.content_hash, test)
        base = self._bases.get(key)
        if base is not None:
            return base
        from_name, from_email = parseaddr(build.sender)
        if "@" not in from_email:
            raise DeliveryError(
                f"sender {build.sender!r} has no email address; set 'sender' to 'Name <address@domain>'"
            )
        base = {
            "from": _address(from_email, from_name),
            "subject": f"[TEST] {build.subject}" if test else build.subject,
            # text/plain first, then text/html: SendGrid rejects any other order (RFC 1341 §7.2).
            "content": [{"type": "text/plain", "value": build.text}, {"type": "text/html", "value": build.html}],
            "categories": check_categories((*self._categories, build.edition), "categories (settings + edition)"),
        }
        if build.reply_to:
            reply_name, reply_email = parseaddr(build.reply_to)
            if "@" not in reply_email:
                raise DeliveryError(f"reply_to {build.reply_to!r} is not an email address; fix 'reply_to'")
            base["reply_to"] = _address(reply_email, reply_name)
        if build.list_id:  # the List-Id that message.py writes for the outbox and SMTP
            base["headers"] = {"List-Id": build.list_id}
        if self.settings.asm_group_id:
            base["asm"] = {"group_id": self.settings.asm_group_id}
        if self.settings.sandbox:
            base["mail_settings"] = {"sandbox_mode": {"enable": True}}
        self._bases[key] = base
        self._heads[key] = json.dumps(base)[:-1]
        # Substitutions only for the placeholders the content has: every personalization carries them.
        self._tokens[key] = tokens_used(html=build.html, text=build.subject + "\n" + build.text)
        return base

    @staticmethod
    def personalization(p: Personal, tokens: tuple[tuple[str, str, str], ...] = ALL_TOKENS) -> tuple[str, str]:
        """One recipient's personalization as JSON (its address, its substitutions, its unsubscribe headers),
        and why SendGrid would reject it (failing the whole request), or ''.

        `tokens` (personalize.tokens_used of the content) limits the substitutions to the placeholders
        the content has."""
        recipient = p.recipient
        email = recipient.email
        values = p.values
        if "email" not in values or "name" not in values:
            values = {"email": email, "name": recipient.name, **values}
        subs = substitutions(values, tokens)
        subs_json = _object(subs)
        name = to_name(recipient.name)
        to = f'{{"email": {_str(email)}, "name": {_str(name)}}}' if name else f'{{"email": {_str(email)}}}'
        headers = p.headers
        if headers:
            if not _HEADERS_CHECKED.issuperset(headers):  # the same two names for every recipient: check once
                for header in headers:
                    if header.lower() in RESERVED_HEADERS:
                        raise DeliveryError(
                            f"header {header!r} is reserved by SendGrid and cannot be set per recipient"
                        )
                    _HEADERS_CHECKED.add(header)
            item = f'{{"to": [{to}], "substitutions": {subs_json}, "headers": {_object(headers)}}}'
        else:
            item = f'{{"to": [{to}], "substitutions": {subs_json}}}'
        return item, _too_big(email, subs, subs_json)

    def build_body(
        self, build: Build, batch: list[Personal], batch_id: str, test: bool
    ) -> tuple[bytes, list[Personal], BatchResult]:
        """The request body (JSON), the recipients in it (in personalization order), and a result that already
        lists them as sent and those SendGrid would refuse (which would fail the whole request) as failed."""
        if len(batch) > MAX_PERSONALIZATIONS:
            raise DeliveryError(
                f"batch {batch_id} has {len(batch)} recipients; SendGrid takes at most 1,000 per request"
            )
        result = BatchResult()
        personalizations = []
        included = []
        self.message_base(build, test)
        key = (build.edition, build.content_hash, test)
        head, tokens = self._heads[key], self._tokens[key]
        personalization = self.personalization
        for p in batch:
            item, problem = personalization(p, tokens)
            if problem:
                result.failed.append((p.recipient.email, problem))
            else:
                personalizations.append(item)
                included.append(p)
                result.sent.append(p.recipient.email)
        # Message level: SendGrid merges them into every personalization, and the batch id lets webhook
        # events be matched to ledger batches (and duplicates told apart).
        custom_args = _object({"edition": build.edition, "batch": batch_id})
        body = f'{head}, "custom_args": {custom_args}, "personalizations": [{", ".join(personalizations)}]}}'
        return body.encode("ascii"), included, result

    # ---- sending --------------------------------------------------------------------------------------

    def send_batch(self, build: Build, batch: list[Personal], batch_id: str, test: bool = False) -> BatchResult:
        return self.prepare_batch(build, batch, batch_id, test)()

    def prepare_batch(
        self, build: Build, batch: list[Personal], batch_id: str, test: bool = False
    ) -> Callable[[], BatchResult]:
        """send_batch in two steps: build the request body now, return the call that POSTs it.

        The send loop prepares the next batch this way while the previous request is out (writing the body
        costs far less CPU than the request's round trip takes), then runs the call."""
        if self._client is None:
            raise DeliveryError("the SendGrid backend was not opened (internal error: call open() first)")
        body, included, result = self.build_body(build, batch, batch_id, test)
        return functools.partial(self._post, body, included, result, batch_id)

    def _post(self, body: bytes, included: list[Personal], result: BatchResult, batch_id: str) -> BatchResult:
        if not included:
            return result
        failures = 0
        rate_limited = 0
        while True:
            client = self._client
            if client is None:  # closed meanwhile (the run was interrupted): send nothing more
                raise DeliveryError(f"the SendGrid backend was closed before batch {batch_id} was sent")
            self._gate.wait()
            try:
                response = client.client.mail.send.post_json(body)
            except HTTPError as exc:
                status = int(exc.status_code)
                if status == 429:
                    rate_limited += 1
                    if rate_limited > self.rate_limit_retries:
                        raise DeliveryError(
                            f"SendGrid kept answering 429 (too many requests) to batch {batch_id}, "
                            f"{rate_limited} times; nothing of this batch was accepted; run again later "
                            "(the ledger resumes where this stopped)"
                        ) from None
                    wait = self._rate_limit_wait(exc, rate_limited)
                    log.warning("SendGrid rate limit (429) on batch %s: every request waits %.1f s", batch_id, wait)
                    self._gate.pause(wait)
                    continue
                if status >= 500:
                    failures += 1
                    if failures > self.settings.max_retries:
                        raise DeliveryError(
                            f"SendGrid answered {status} ({self._messages(exc, included) or exc.reason}) to batch "
                            f"{batch_id} {failures} times; nothing of this batch was accepted; run again later "
                            "or raise [sendgrid] max_retries"
                        ) from None
                    wait = self._backoff(failures)
                    log.warning("SendGrid answered %s on batch %s: retry in %.1f s", status, batch_id, wait)
                    self._sleep(wait)
                    continue
                raise self._refused(exc, batch_id, included) from None
            except urllib.error.URLError as exc:
                # urllib wraps only errors raised while connecting or writing the request: it never arrived
                # whole, so SendGrid cannot have accepted it.
                reason = exc.reason
                if isinstance(reason, ssl.SSLCertVerificationError) or not isinstance(reason, OSError):
                    raise DeliveryError(
                        f"cannot talk to SendGrid at {self.host} ({self._redact(str(reason))}); check "
                        f"{HOST_ENV} / [sendgrid] host and the machine's CA certificates"
                    ) from None
                failures += 1
                if failures > self.settings.max_retries:
                    raise DeliveryError(
                        f"cannot reach SendGrid at {self.host} ({self._redact(str(reason))}) after {failures} tries; "
                        f"nothing of batch {batch_id} was sent; check the network, a proxy (HTTPS_PROXY) and "
                        f"{HOST_ENV} / [sendgrid] host"
                    ) from None
                wait = self._backoff(failures)
                log.warning("SendGrid unreachable (%s): retry in %.1f s", reason, wait)
                self._sleep(wait)
                continue
            except (TimeoutError, ConnectionError, http.client.HTTPException, OSError) as exc:
                why = (
                    f"the request reached SendGrid but no answer came ({type(exc).__name__}: "
                    f"{self._redact(str(exc)) or 'connection closed'}); SendGrid may have accepted it"
                )
                if result.failed:  # keep the recipients refused before sending exact
                    result.unknown = [(email, why) for email in result.sent]
                    result.sent = []
                    return result
                raise BatchOutcomeUnknown(
                    f"batch {batch_id}: {why}. Check the SendGrid activity feed for custom_args batch "
                    f"{batch_id}, then resend or mark these {len(included)} recipients sent"
                ) from None
            return self._accepted(response, result)

    def _accepted(self, response: Any, result: BatchResult) -> BatchResult:
        status = int(response.status_code)
        if status == 200:  # sandbox mode: validated, nothing delivered
            result.provider_id = "sandbox"
        else:
            result.provider_id = str(response.headers.get("X-Message-Id") or "")
        return result

    def _backoff(self, attempt: int) -> float:
        return self._rng.uniform(0.0, min(self.backoff_cap, self.backoff_base * 2 ** (attempt - 1)))

    def _rate_limit_wait(self, exc: HTTPError, attempt: int) -> float:
        headers = exc.headers
        reset = headers.get("X-RateLimit-Reset") if headers is not None else None
        retry_after = headers.get("Retry-After") if headers is not None else None
        try:
            if reset is not None:
                return min(self.max_wait, max(0.0, float(reset) - self._clock()))
            if retry_after is not None:
                return min(self.max_wait, max(0.0, float(retry_after)))
        except ValueError:
            pass
        return min(self.max_wait, self._backoff(attempt))

    def _redact(self, text: str) -> str:
        return text.replace(self._key, "[redacted]") if self._key else text

    def _messages(self, exc: HTTPError, batch: list[Personal], limit: int = 5) -> str:
        """SendGrid's error list as `field: message`, a personalization's field naming its recipient."""
        parts = []
        errors = _errors_of(exc)
        for err in errors[:limit]:
            field = str(err.get("field") or "")
            m = re.match(r"personalizations\.(\d+)", field)
            if m and int(m.group(1)) < len(batch):
                field += f" ({batch[int(m.group(1))].recipient.email})"
            message = str(err.get("message") or "").strip()
            parts.append(f"{field}: {message}" if field and field != "null" else message)
        if len(errors) > limit:
            parts.append(f"and {len(errors) - limit} more")
        return self._redact("; ".join(p for p in parts if p))

    def _refused(self, exc: HTTPError, batch_id: str, batch: list[Personal]) -> DeliveryError:
        status = int(exc.status_code)
        said = self._messages(exc, batch) or str(exc.reason)
        if status == 401:
            return DeliveryError(
                f"SendGrid rejected the API key (401: {said}); check {self._api_key_env}: a valid, unrevoked key "
                f"of this account (for an EU subuser, set {HOST_ENV}=https://api.eu.sendgrid.com)"
            )
        if status == 403:
            return DeliveryError(
                f"SendGrid refused the request (403: {said}); check that {self._api_key_env} has the Mail Send "
                "permission and that the sender address is a verified Sender Identity"
            )
        if status == 413:
            return DeliveryError(
                f"SendGrid refused batch {batch_id} as too large (413: {said}); lower [sendgrid] batch_size "
                "or shrink the email"
            )
        if status == 400:
            return DeliveryError(
                f"SendGrid rejected batch {batch_id} (400): {said}. Nothing of this batch was sent; fix what the "
                "field names (settings, the build or the recipients file) and run again"
            )
        return DeliveryError(f"SendGrid refused batch {batch_id} ({status}: {said}); nothing of this batch was sent")
