"""Check outcome: what one check found (`CheckResult`), and the helpers every group of checks words it with."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Literal

from ..appearance import INVISIBLE

Status = Literal["pass", "warn", "fail", "skip"]

PLACEHOLDER = re.compile(r"%%[A-Za-z_][A-Za-z0-9_:]*%%")


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check: `value` is the measured figure (bytes, score, count) when there is one."""

    name: str
    status: Status
    detail: str
    value: float | int | None = None

    def line(self) -> str:
        """One line for the terminal: `PASS  html-size           87,410 bytes (budget 102,000)`."""
        return f"{self.status.upper():<5} {self.name:<20} {self.detail}"

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def failed(results: Iterable[CheckResult]) -> bool:
    return any(r.status == "fail" for r in results)


def ok(name: str, detail: str, value: float | int | None = None) -> CheckResult:
    return CheckResult(name, "pass", detail, value)


def fail(name: str, detail: str, value: float | int | None = None) -> CheckResult:
    return CheckResult(name, "fail", detail, value)


def listed(items: list[str], limit: int = 3) -> str:
    shown = "; ".join(items[:limit])
    return shown + (f"; and {len(items) - limit} more" if len(items) > limit else "")


def squash(text: str) -> str:
    """Text compared loosely: case, whitespace, commas and invisible characters do not matter."""
    text = text.translate({ord(c): None for c in INVISIBLE})
    return re.sub(r"[\s,]+", " ", text).strip().casefold()
