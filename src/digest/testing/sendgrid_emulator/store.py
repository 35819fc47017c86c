"""What the emulator holds: every /v3 request it logged and every accepted mail, with the per-recipient views,
counts and credits the inspection API reports."""

from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

from .body import JSON, enabled

AUTO_UNSUBSCRIBE_HOST: Final = "sendgrid.emulator.invalid"


@dataclass(frozen=True)
class Accepted:
    message_id: str
    raw: bytes  # the request body, kept once; per-recipient views are derived when inspected
    accepted_at: float
    recipients: frozenset[str]  # lower-cased to/cc/bcc, so the `to` filter can skip a request without parsing it
    recipient_count: int
    categories: tuple[str, ...]
    on_behalf_of: str | None


def _substituter(substitutions: Mapping[str, Any]) -> Callable[[str], str]:
    """Replace every tag in one pass, longest tag first, so a value that contains a tag is not substituted again."""
    tags = sorted((k for k, v in substitutions.items() if k and isinstance(v, str)), key=len, reverse=True)
    if not tags:
        return lambda text: text
    pattern = re.compile("|".join(re.escape(tag) for tag in tags))
    return lambda text: pattern.sub(lambda m: str(substitutions[m.group(0)]), text)


def _merge_headers(message: Mapping[str, str], personal: Mapping[str, str]) -> dict[str, str]:
    merged = dict(message)
    for key, value in personal.items():
        for existing in [k for k in merged if k.lower() == key.lower()]:
            del merged[existing]  # a personalization header overrides the message-level one, whatever its case
        merged[key] = value
    return merged


def derive(
    accepted: Accepted,
    body: dict[str, Any],
    *,
    to: str | None,
    custom_args: Mapping[str, str] | None,
    include_content: bool,
) -> Iterator[dict[str, JSON]]:
    message_headers = body.get("headers") or {}
    message_args = body.get("custom_args") or {}
    tracking = body.get("tracking_settings") or {}
    auto_unsubscribe = enabled(tracking, "subscription_tracking")
    for n, p in enumerate(body["personalizations"]):
        merged_args = {**message_args, **(p.get("custom_args") or {})}
        if custom_args and any(merged_args.get(k) != v for k, v in custom_args.items()):
            continue
        recipients = [(kind, address) for kind in ("to", "cc", "bcc") for address in p.get(kind) or ()]
        chosen = [(r, kind, a) for r, (kind, a) in enumerate(recipients) if to is None or a["email"].lower() == to]
        if not chosen:
            continue
        substitutions = p.get("substitutions") or {}
        substitute = _substituter(substitutions)
        subject = p.get("subject", body.get("subject"))
        headers = _merge_headers(message_headers, p.get("headers") or {})
        if auto_unsubscribe and not any(k.lower() == "list-unsubscribe" for k in headers):
            # SendGrid adds both when subscription tracking is on.
            headers["List-Unsubscribe"] = (
                f"<https://{AUTO_UNSUBSCRIBE_HOST}/lu/unsubscribe?mid={accepted.message_id}&p={n}>"
            )
            headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        view: dict[str, JSON] = {
            "message_id": accepted.message_id,
            "personalization": n,
            "to": p.get("to", []),
            "cc": p.get("cc", []),
            "bcc": p.get("bcc", []),
            "from": p.get("from", body.get("from")),
            "reply_to": body.get("reply_to"),
            "reply_to_list": body.get("reply_to_list"),
            "subject": substitute(subject) if isinstance(subject, str) else None,
            "headers": headers,
            "custom_args": merged_args,
            "substitutions": substitutions,
            "dynamic_template_data": p.get("dynamic_template_data"),
            "template_id": body.get("template_id"),
            "categories": body.get("categories", []),
            "asm": body.get("asm"),
            "send_at": p.get("send_at", body.get("send_at")),
            "batch_id": body.get("batch_id"),
            "ip_pool_name": body.get("ip_pool_name"),
            "mail_settings": body.get("mail_settings"),
            "tracking_settings": body.get("tracking_settings"),
            "attachments": body.get("attachments", []),
            "on_behalf_of": accepted.on_behalf_of,
            "accepted_at": accepted.accepted_at,
        }
        if include_content:
            content = [{"type": b["type"], "value": substitute(b["value"])} for b in body.get("content") or ()]
            view["content"] = content
            view["text"] = next((b["value"] for b in content if b["type"].lower() == "text/plain"), None)
            view["html"] = next((b["value"] for b in content if b["type"].lower() == "text/html"), None)
        for r, kind, address in chosen:
            yield {
                **view,
                "email": address["email"],
                "name": address.get("name"),
                "recipient_type": kind,
                "sg_message_id": f"{accepted.message_id}.emulator.{n}.{r}",
            }


@dataclass
class Record:
    id: int
    received_at: float
    method: str
    path: str
    headers: dict[str, str]
    raw: bytes
    body_bytes: int
    status: int = 0
    message_id: str | None = None
    response: bytes = b""
    fault: dict[str, JSON] | None = None
    dropped: bool = False

    def as_json(self, include_body: bool) -> dict[str, JSON]:
        try:
            response = json.loads(self.response) if self.response else None
        except ValueError:
            response = self.response.decode("utf-8", "replace")
        return {
            "id": self.id,
            "received_at": self.received_at,
            "method": self.method,
            "path": self.path,
            "headers": self.headers,
            "body": self.raw.decode("utf-8", "replace") if include_body else None,
            "body_bytes": self.body_bytes,
            "status": self.status,
            "message_id": self.message_id,
            "response": response,
            "fault": self.fault,
            "dropped": self.dropped,
        }


class Store:
    """The request log, the accepted mail and the counts, behind one lock (requests arrive on many threads)."""

    def __init__(self, credits: int | None) -> None:
        self.lock = threading.Lock()
        self._credits = credits
        self.clear()

    def clear(self) -> None:
        """Forget requests, mail, counts and batches; the credits left stay, as they are configuration."""
        with self.lock:
            self._records: list[Record] = []
            self._accepted: list[Accepted] = []
            self._parsed: OrderedDict[str, dict[str, Any]] = OrderedDict()
            self._batches: set[str] = set()
            self._counts = {
                "requests": 0, "accepted": 0, "sandbox": 0, "recipients": 0, "dropped": 0, "faults": 0, "cut_off": 0
            }  # fmt: skip
            self._by_status: dict[str, int] = {}

    # ---- credits and batches ----------------------------------------------------------------------------

    @property
    def credits(self) -> int | None:
        with self.lock:
            return self._credits

    @credits.setter
    def credits(self, value: int | None) -> None:
        with self.lock:
            self._credits = value

    def out_of_credits(self) -> bool:
        with self.lock:
            return self._credits is not None and self._credits <= 0

    def add_batch(self, batch_id: str) -> None:
        with self.lock:
            self._batches.add(batch_id)

    def has_batch(self, batch_id: str) -> bool:
        with self.lock:
            return batch_id in self._batches

    def batches(self) -> frozenset[str] | None:
        """The batch ids created so far; None before the first (a mail's batch_id is then not checked)."""
        with self.lock:
            return frozenset(self._batches) if self._batches else None

    # ---- writing ----------------------------------------------------------------------------------------

    def accept(self, body: dict[str, Any], raw: bytes, message_id: str, now: float, on_behalf_of: str | None) -> None:
        """Keep an accepted request once and take its recipients off the credits."""
        emails: set[str] = set()
        count = 0
        for p in body["personalizations"]:
            for kind in ("to", "cc", "bcc"):
                for address in p.get(kind) or ():
                    emails.add(address["email"].lower())
                    count += 1
        categories = tuple(body.get("categories") or ())
        accepted = Accepted(message_id, raw, now, frozenset(emails), count, categories, on_behalf_of)
        with self.lock:
            self._accepted.append(accepted)
            self._counts["recipients"] += count
            if self._credits is not None:
                self._credits = max(0, self._credits - count)

    def record(self, record: Record) -> Record:
        """Log one answered /v3 request (its id is assigned here) and count it."""
        status_key = str(record.status)
        with self.lock:
            record.id = len(self._records) + 1
            self._records.append(record)
            self._counts["requests"] += 1
            self._counts["accepted"] += record.status == 202
            self._counts["sandbox"] += record.status == 200
            self._counts["faults"] += record.fault is not None
            self._by_status[status_key] = self._by_status.get(status_key, 0) + 1
        return record

    def mark_dropped(self, record: Record) -> None:
        with self.lock:
            record.dropped = True
            self._counts["dropped"] += 1

    def count_cut_off(self) -> None:
        with self.lock:
            self._counts["cut_off"] += 1

    # ---- reading ----------------------------------------------------------------------------------------

    def accepted(self) -> list[Accepted]:
        with self.lock:
            return list(self._accepted)

    def messages(
        self,
        to: str | None,
        *,
        message_id: str | None,
        category: str | None,
        custom_args: Mapping[str, str] | None,
        include_content: bool,
        limit: int | None,
        offset: int,
    ) -> list[dict[str, JSON]]:
        """One view per recipient of every accepted request, oldest first (see SendGridEmulator.messages)."""
        wanted = to.lower() if to else None
        found: list[dict[str, JSON]] = []
        skipped = 0
        for request in self.accepted():
            if message_id is not None and request.message_id != message_id:
                continue
            if category is not None and category not in request.categories:
                continue
            if wanted is not None and wanted not in request.recipients:
                continue
            views = derive(
                request, self._body(request), to=wanted, custom_args=custom_args, include_content=include_content
            )
            for view in views:
                if skipped < offset:
                    skipped += 1
                    continue
                found.append(view)
                if limit is not None and len(found) >= limit:
                    return found
        return found

    def requests(self, *, include_body: bool) -> list[dict[str, JSON]]:
        with self.lock:
            records = list(self._records)
        return [r.as_json(include_body) for r in records]

    def stats(self) -> dict[str, JSON]:
        with self.lock:
            return {**self._counts, "by_status": dict(self._by_status), "credits": self._credits}

    def _body(self, accepted: Accepted) -> dict[str, Any]:
        """The parsed request body, from a small cache: inspection often asks about the same recent requests."""
        with self.lock:
            cached = self._parsed.get(accepted.message_id)
            if cached is not None:
                self._parsed.move_to_end(accepted.message_id)
                return cached
        body: dict[str, Any] = json.loads(accepted.raw)
        with self.lock:
            self._parsed[accepted.message_id] = body
            while len(self._parsed) > 8:
                self._parsed.popitem(last=False)
        return body
