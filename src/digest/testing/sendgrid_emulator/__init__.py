"""Test kit: a local SendGrid v3 mail/send emulator (`server.py`) and its command line (`__main__.py`).

    from digest.testing.sendgrid_emulator import DEFAULT_API_KEY, Limits, RateLimit, SendGridEmulator
    python -m digest.testing.sendgrid_emulator --port 3030

It needs jsonschema, which the `emulator` extra installs (`pip install 'digest[emulator]'`). The names
are imported on first use, so the command line can say so instead of failing while it is imported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .server import DEFAULT_API_KEY, Limits, RateLimit, SendGridEmulator

__all__ = ["DEFAULT_API_KEY", "Limits", "RateLimit", "SendGridEmulator"]


def __getattr__(name: str) -> object:
    if name in __all__:
        from . import server

        return getattr(server, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
