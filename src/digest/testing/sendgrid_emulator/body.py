"""The request body as SendGrid's JSON parser reads it, and the small JSON tests validation and rules share."""

from __future__ import annotations

import json
from typing import Any

JSON = Any  # a decoded JSON value; the request body is validated, not trusted, so it stays loosely typed
Path = tuple[str | int, ...]


class DupDict(dict[str, Any]):
    """A JSON object that repeated a key. Go's decoder (SendGrid's) keeps the last one; for headers it is an error."""


def _object_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    return DupDict(obj) if len(obj) != len(pairs) else obj


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")  # Python accepts NaN/Infinity; SendGrid's parser does not


def parse_body(text: str) -> JSON:
    return json.loads(text, object_pairs_hook=_object_pairs, parse_constant=_reject_constant)


def json_size(value: JSON) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def string_map_fits(value: dict[str, str], limit: int) -> bool:
    """Whether the compact UTF-8 JSON of a string map is at most `limit` bytes.

    Encoding a thousand small maps per request shows up in profiles, so first try a bound: no character takes more
    than 6 bytes (a \\u escape), each pair adds 6 (quotes, colon, comma), the braces 2. Only near the limit encode.
    """
    bound = 2 + sum(6 * (len(k) + len(v) + 1) for k, v in value.items())
    return bound <= limit or json_size(value) <= limit


def json_type(value: JSON) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def is_int(value: JSON) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def string_map(value: JSON) -> bool:
    return isinstance(value, dict) and all(isinstance(v, str) for v in value.values())


def enabled(settings: JSON, name: str) -> bool:
    section = settings.get(name) if isinstance(settings, dict) else None
    return isinstance(section, dict) and section.get("enable") is True
