"""Test kit: local stand-ins for the services digest delivers through (a SendGrid v3 mail/send emulator).

Imported lazily so `python -m digest.testing.sendgrid_emulator` does not load the module twice.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .sendgrid_emulator import DEFAULT_API_KEY, Limits, RateLimit, SendGridEmulator

__all__ = ["DEFAULT_API_KEY", "Limits", "RateLimit", "SendGridEmulator"]


def __getattr__(name: str) -> object:
    if name in __all__:
        from . import sendgrid_emulator

        return getattr(sendgrid_emulator, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
