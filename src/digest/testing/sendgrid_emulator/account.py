"""The account the emulator plays: API keys, verified senders, known ids, limits, the rate limit, and how
`configure` changes them."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from .body import JSON, is_int


@dataclass(frozen=True)
class Limits:
    """Account limits the request schema cannot express.

    Where SendGrid's own sources disagree the default is the stricter value: a client that
    passes the emulator also passes SendGrid. The 1000-personalization and 10-category caps live in the schema.
    """

    max_recipients: int = 1000  # to + cc + bcc over the whole request
    max_body_bytes: int = 30_000_000  # larger bodies get 413
    custom_args_max_bytes: int = 10_000  # merged message + personalization custom_args, compact UTF-8 JSON
    custom_args_max_keys: int = 100
    substitutions_max_bytes: int = 10_000  # per personalization, compact UTF-8 JSON
    substitutions_max_keys: int = 100
    send_at_max_ahead: float = 72 * 3600.0  # seconds
    reject_name_separators: bool = True  # to/cc/bcc names with ';' or ',' (documented, unconfirmed live)


@dataclass(frozen=True)
class RateLimit:
    """At most `limit` mail/send requests per API key in each fixed `window` of seconds."""

    limit: int
    window: float = 60.0


@dataclass(frozen=True)
class Config:
    """Everything `configure` changes. Replaced whole, so a request reads one consistent snapshot without a lock."""

    keys: frozenset[str]
    scopeless_keys: frozenset[str] = frozenset()  # known keys without the mail.send scope -> 403
    exhausted_keys: frozenset[str] = frozenset()  # known keys whose plan is out of credits -> 401
    verified_senders: frozenset[str] | None = None  # lower-cased addresses or "@domain"; None accepts any sender
    asm_groups: frozenset[int] | None = None  # None accepts any group id
    templates: frozenset[str] | None = None
    ip_pools: frozenset[str] | None = None
    rate_limit: RateLimit | None = None
    rate_limit_headers_on_success: bool = False  # live mail/send reportedly omits them on 2xx
    limits: Limits = Limits()

    def describe(self) -> dict[str, JSON]:
        def sorted_or_none(values: Iterable[Any] | None) -> list[Any] | None:
            return None if values is None else sorted(values)

        return {
            # Keys are shown masked: someone may start the emulator with a key that also works elsewhere.
            "keys": sorted(mask(k) for k in self.keys),
            "scopeless_keys": sorted(mask(k) for k in self.scopeless_keys),
            "exhausted_keys": sorted(mask(k) for k in self.exhausted_keys),
            "verified_senders": sorted_or_none(self.verified_senders),
            "asm_groups": sorted_or_none(self.asm_groups),
            "templates": sorted_or_none(self.templates),
            "ip_pools": sorted_or_none(self.ip_pools),
            "rate_limit": None if self.rate_limit is None else asdict(self.rate_limit),
            "rate_limit_headers_on_success": self.rate_limit_headers_on_success,
            "limits": asdict(self.limits),
        }


def mask(key: str) -> str:
    return key[:5] + "..." if len(key) > 8 else "***"


def string_set(values: Any, name: str) -> frozenset[str]:
    if isinstance(values, str) or not isinstance(values, Iterable) or not all(isinstance(v, str) for v in values):
        raise ValueError(f"{name} must be a list of strings")
    return frozenset(values)


def optional_int(value: Any, name: str) -> int | None:
    if value is None:
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an integer (got {value!r})") from None
    if number < 0:
        raise ValueError(f"{name} must be >= 0 (got {number})")
    return number


def parse_rate_limit(value: Any) -> RateLimit | None:
    if value is None or isinstance(value, RateLimit):
        return value
    if isinstance(value, Mapping):
        rule = RateLimit(**value)
    elif isinstance(value, tuple | list) and len(value) == 2:
        rule = RateLimit(int(value[0]), float(value[1]))
    else:
        raise ValueError('rate_limit must be {"limit": N, "window": seconds} or null')
    if not is_int(rule.limit) or rule.limit < 0 or not rule.window > 0:
        raise ValueError("rate_limit needs an integer limit >= 0 and a window > 0 seconds")
    return rule


def changed_config(config: Config, changes: Mapping[str, Any]) -> Config:
    """`config` with `changes` applied (see SendGridEmulator.configure); "credits" is the store's, and passes."""
    settable = {f.name for f in fields(Config)} | {"credits"}
    unknown = set(changes) - settable
    if unknown:
        raise ValueError(f"unknown setting(s) {sorted(unknown)}; use {sorted(settable)}")
    new: dict[str, Any] = {}
    for name in ("keys", "scopeless_keys", "exhausted_keys"):
        if name in changes:
            new[name] = string_set(changes[name], name)
    for name in ("verified_senders", "templates", "ip_pools"):
        if name in changes:
            values = changes[name]
            folded = values if name != "verified_senders" or values is None else [str(v).lower() for v in values]
            new[name] = None if values is None else string_set(folded, name)
    if "asm_groups" in changes:
        groups = changes["asm_groups"]
        if groups is not None and not all(is_int(g) for g in groups):
            raise ValueError("asm_groups must be a list of integers or null")
        new["asm_groups"] = None if groups is None else frozenset(groups)
    if "rate_limit" in changes:
        new["rate_limit"] = parse_rate_limit(changes["rate_limit"])
    if "rate_limit_headers_on_success" in changes:
        new["rate_limit_headers_on_success"] = bool(changes["rate_limit_headers_on_success"])
    if "limits" in changes:
        limits = changes["limits"]
        if not isinstance(limits, Limits):
            if not isinstance(limits, Mapping):
                raise ValueError("limits must be an object of Limits fields")
            allowed = {f.name for f in fields(Limits)}
            if set(limits) - allowed:
                raise ValueError(f"unknown limit(s) {sorted(set(limits) - allowed)}; use {sorted(allowed)}")
            limits = replace(config.limits, **limits)
        new["limits"] = limits
    return replace(config, **new)


class RateLimiter:
    """Fixed windows per API key: a key's window starts with its first request after the last one ended."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._windows: dict[str, list[float]] = {}

    def clear(self) -> None:
        with self._lock:
            self._windows.clear()

    def take(self, key: str, now: float, rule: RateLimit) -> tuple[bool, int, float]:
        """Count one request of `key`: (allowed, requests left in the window, when the window ends)."""
        with self._lock:
            window = self._windows.get(key)
            if window is None or now >= window[0] + rule.window:
                window = self._windows[key] = [now, 0]
            reset = window[0] + rule.window
            allowed = window[1] < rule.limit
            if allowed:
                window[1] += 1
            return allowed, rule.limit - int(window[1]), reset
