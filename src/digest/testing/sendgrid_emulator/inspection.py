"""The inspection API under /_emulator: what was sent, the request log, the stats, the faults and the
configuration, over HTTP (each route mirrors a method of SendGridEmulator)."""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Mapping
from typing import Any, Final, Protocol

from .account import optional_int
from .body import JSON
from .faults import Fault
from .replies import Reply, json_reply, status_reply

INSPECT_PATH: Final = "/_emulator"


class Inspected(Protocol):
    """The part of SendGridEmulator the routes call."""

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
    ) -> list[dict[str, JSON]]: ...
    def requests(self, *, include_body: bool = True) -> list[dict[str, JSON]]: ...
    def stats(self) -> dict[str, JSON]: ...
    def reset(self) -> None: ...
    def add_faults(self, faults: list[Fault]) -> None: ...
    def clear_faults(self) -> None: ...
    def faults(self) -> list[dict[str, JSON]]: ...
    def config(self) -> dict[str, JSON]: ...
    def configure(self, **changes: Any) -> dict[str, JSON]: ...


ENDPOINTS: Final = [
    "POST /v3/mail/send",
    "POST /v3/mail/batch",
    "GET /v3/mail/batch/{batch_id}",
    "GET /_emulator/messages?to=&message_id=&category=&custom_arg=key=value&include_content=&limit=&offset=",
    "DELETE /_emulator/messages",
    "GET /_emulator/requests?include_body=",
    "GET|POST|DELETE /_emulator/faults",
    "GET|POST /_emulator/config",
    "GET /_emulator/stats",
]


def route(emulator: Inspected, method: str, route: str, query: str, raw: bytes) -> Reply:
    """The answer to `method` on /_emulator/`route`; a ValueError is the caller's 400."""
    params = urllib.parse.parse_qs(query)

    def one(name: str) -> str | None:
        values = params.get(name)
        return values[-1] if values else None

    routes = {"": {"GET"}, "messages": {"GET", "DELETE"}, "requests": {"GET"}, "faults": {"GET", "POST", "DELETE"}}
    routes.update({"config": {"GET", "POST"}, "stats": {"GET"}})
    if route not in routes:
        return status_reply(404)
    if method not in routes[route]:
        return status_reply(405)
    if route == "":
        return json_reply(200, {"endpoints": ENDPOINTS})
    if route == "messages" and method == "GET":
        args: dict[str, str] = {}
        for pair in params.get("custom_arg", []):
            name, _, value = pair.partition("=")
            args[name] = value
        found = emulator.messages(
            one("to"),
            message_id=one("message_id"),
            category=one("category"),
            custom_args=args or None,
            include_content=(one("include_content") or "true").lower() not in ("0", "false", "no"),
            limit=optional_int(one("limit"), "limit"),
            offset=optional_int(one("offset"), "offset") or 0,
        )
        return json_reply(200, {"count": len(found), "messages": found})
    if route == "messages":
        emulator.reset()
        return json_reply(200, {"reset": True})
    if route == "requests":
        include = (one("include_body") or "true").lower() not in ("0", "false", "no")
        return json_reply(200, {"requests": emulator.requests(include_body=include)})
    if route == "stats":
        return json_reply(200, emulator.stats())
    if route == "faults":
        if method == "POST":
            emulator.add_faults([Fault.parse(spec) for spec in load_json_object_or_list(raw)])
            return json_reply(201, {"faults": emulator.faults()})
        if method == "DELETE":
            emulator.clear_faults()
        return json_reply(200, {"faults": emulator.faults()})
    if method == "POST":
        changes = load_json_object_or_list(raw)
        if len(changes) != 1:
            raise ValueError("POST /_emulator/config takes one JSON object")
        return json_reply(200, emulator.configure(**changes[0]))
    return json_reply(200, emulator.config())


def load_json_object_or_list(raw: bytes) -> list[dict[str, Any]]:
    try:
        value = json.loads(raw or b"{}")
    except ValueError as exc:
        raise ValueError(f"the body is not JSON: {exc}") from None
    items = value if isinstance(value, list) else [value]
    if not all(isinstance(item, dict) for item in items):
        raise ValueError("expected a JSON object or a list of objects")
    return items
