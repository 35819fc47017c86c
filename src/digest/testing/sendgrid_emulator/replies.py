"""Answers in SendGrid's shape: the headers of every /v3 answer, the `{"errors": [...]}` body with its help
links, status and JSON replies, rate-limit headers."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from .body import JSON, Path

HELP_BASE: Final = "http://sendgrid.com/docs/API_Reference/Web_API_v3/Mail/errors.html"


# Headers on every /v3 answer, copied from a documented live 202.
SENDGRID_HEADERS: Final = (
    ("Access-Control-Allow-Origin", "https://sendgrid.api-docs.io"),
    ("Access-Control-Allow-Methods", "POST"),
    ("Access-Control-Allow-Headers", "Authorization, Content-Type, On-behalf-of, x-sg-elas-acl"),
    ("Access-Control-Max-Age", "600"),
    ("X-No-CORS-Reason", "https://sendgrid.com/docs/Classroom/Basics/API/cors.html"),
)
STATUS_MESSAGES: Final = {
    400: "Bad Request",
    401: "Permission denied, wrong credentials",
    403: "access forbidden",
    404: "not found",
    405: "method not allowed",
    413: "content too large",
    415: "Invalid UTF8 in request",
    429: "too many requests",
    500: "internal server error",
    502: "bad gateway",
    503: "service unavailable",
    504: "gateway timeout",
}


@dataclass(frozen=True)
class Err:
    message: str
    field: str | None = None
    help: str | None = None

    def as_json(self) -> dict[str, str | None]:
        return {"message": self.message, "field": self.field, "help": self.help}


# The anchors of SendGrid's errors page. A field's help link points at the longest of these that prefixes the
# field with indexes removed: the live API answers personalizations.0.to.0.email with #message.personalizations.to.
HELP_ANCHORS: Final = frozenset(
    {
        "personalizations", "personalizations.bcc", "personalizations.cc", "personalizations.custom_args",
        "personalizations.headers", "personalizations.send_at", "personalizations.subject",
        "personalizations.substitutions", "personalizations.to", "asm.group_id", "asm.groups_to_display",
        "attachments.content", "attachments.content_id", "attachments.disposition", "attachments.filename",
        "attachments.type", "batch_id", "categories", "content", "content.type", "content.value", "from",
        "headers", "ip_pool_name", "reply_to", "send_at", "subject", "template_id",
    }
)  # fmt: skip


def help_link(field_path: str) -> str:
    parts = [p for p in field_path.split(".") if not p.isdigit()]
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in HELP_ANCHORS:
            return f"{HELP_BASE}#message.{candidate}"
    return f"{HELP_BASE}#message.{'.'.join(parts)}"


def err(message: str, path: str | Path) -> Err:
    field_path = path if isinstance(path, str) else ".".join(str(p) for p in path)
    return Err(message, field_path, help_link(field_path))


def error_body(errors: Iterable[Err]) -> bytes:
    return json.dumps({"errors": [e.as_json() for e in errors]}).encode()


@dataclass
class Reply:
    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    content_type: str = "application/json"
    message_id: str | None = None


def error_reply(status: int, errors: Iterable[Err], headers: list[tuple[str, str]] | None = None) -> Reply:
    return Reply(status, error_body(errors), headers or [])


def status_reply(status: int, message: str | None = None) -> Reply:
    return error_reply(status, [Err(message or STATUS_MESSAGES.get(status, "error"))])


def json_reply(status: int, payload: JSON) -> Reply:
    return Reply(status, json.dumps(payload).encode())


def rate_headers(limit: int, remaining: int, reset: float) -> list[tuple[str, str]]:
    return [
        ("X-RateLimit-Limit", str(limit)),
        ("X-RateLimit-Remaining", str(remaining)),
        ("X-RateLimit-Reset", str(math.ceil(reset))),
    ]
