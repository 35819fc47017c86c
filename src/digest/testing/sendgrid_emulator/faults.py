"""The fault script: scripted answers (a status, a delay, a dropped connection, a hold) for coming mail/send
requests, in order or for a random share of them."""

from __future__ import annotations

import random
import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from .body import JSON, is_int


@dataclass
class Fault:
    """A scripted answer for the next `count` mail/send requests, or for a random `rate` share of them."""

    status: int | None = None
    message: str | None = None
    delay: float = 0.0
    drop: bool = False
    # Wait this long *before* storing; a client gone by then (killed mid-request) is never stored.
    hold: float = 0.0
    reset_in: float | None = None  # 429 only: X-RateLimit-Reset = now + reset_in
    count: int = 1
    rate: float | None = None
    seed: int | None = None

    @classmethod
    def parse(cls, spec: Mapping[str, Any]) -> Fault:
        known = {f.name for f in fields(cls)}
        unknown = set(spec) - known
        if unknown:
            raise ValueError(f"unknown fault field(s) {sorted(unknown)}; use {sorted(known)}")
        fault = cls(**spec)
        if fault.status is None and not fault.drop and not fault.delay and not fault.hold:
            raise ValueError("a fault needs a status, a delay, a hold or drop")
        if not isinstance(fault.hold, int | float) or fault.hold < 0:
            raise ValueError(f"hold must be a number of seconds >= 0 (got {fault.hold!r})")
        if fault.status is not None and (not is_int(fault.status) or not 400 <= fault.status <= 599):
            raise ValueError(f"fault status must be an integer 400..599 (got {fault.status!r})")
        if fault.status is not None and fault.drop:
            raise ValueError("a fault either answers with a status or drops the connection, not both")
        if not isinstance(fault.delay, int | float) or fault.delay < 0:
            raise ValueError(f"delay must be a number of seconds >= 0 (got {fault.delay!r})")
        if not is_int(fault.count) or fault.count < 1:
            raise ValueError(f"count must be an integer >= 1 (got {fault.count!r})")
        if fault.rate is not None and not (isinstance(fault.rate, int | float) and 0 <= fault.rate <= 1):
            raise ValueError(f"rate must be a number 0..1 (got {fault.rate!r})")
        return fault

    def as_json(self) -> dict[str, JSON]:
        # hold is newer than the other fields: shown only when set, so earlier listings read as before.
        return {k: v for k, v in asdict(self).items() if v is not None and (k != "hold" or v)}


class FaultScript:
    """The pending faults: scripted ones are used up in order; random ones are drawn, in the order added."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queued: list[Fault] = []
        self._random: list[tuple[Fault, random.Random]] = []

    def add(self, fault: Fault) -> None:
        with self._lock:
            if fault.rate is not None:
                self._random.append((fault, random.Random(fault.seed)))
            else:
                self._queued.append(fault)

    def clear(self) -> None:
        with self._lock:
            self._queued.clear()
            self._random.clear()

    def pending(self) -> list[dict[str, JSON]]:
        """Pending scripted faults, then the random faults (in the order they are drawn)."""
        with self._lock:
            return [f.as_json() for f in self._queued] + [fault.as_json() for fault, _ in self._random]

    def take(self) -> Fault | None:
        """The fault for the request at hand, if any."""
        with self._lock:
            if self._queued:
                fault = self._queued[0]
                fault.count -= 1
                if fault.count <= 0:
                    self._queued.pop(0)
                return replace(fault, count=1)
            for fault, rng in self._random:  # in the order added; the first that hits answers
                if rng.random() < (fault.rate or 0.0):
                    return fault
        return None
