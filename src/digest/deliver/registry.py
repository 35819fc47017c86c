"""Backend by name: the one place that knows which class serves `backend = "outbox" | "smtp" | "sendgrid"`."""

from __future__ import annotations

from pathlib import Path

from ..config import Settings
from ..errors import ConfigError
from . import BACKENDS
from .base import Backend

__all__ = ["BACKENDS", "make_backend"]


def make_backend(name: str, settings: Settings, *, outbox_dir: Path | None = None) -> Backend:
    """A new, unopened backend. `outbox_dir` overrides settings.outbox_dir (e.g. a --outbox flag).

    Nothing secret is read here: SMTP and SendGrid read their secret from the environment at open().
    """
    if name == "outbox":
        from .outbox import OutboxBackend

        return OutboxBackend(outbox_dir if outbox_dir is not None else settings.path(settings.outbox_dir))
    if name == "smtp":
        from .smtp import SmtpBackend

        return SmtpBackend(settings.smtp)
    if name == "sendgrid":
        # Imported here: the sendgrid client is only loaded by runs that use it.
        from .sendgrid import SendGridBackend

        return SendGridBackend(settings.sendgrid)
    raise ConfigError(f"unknown backend {name!r}; use one of: {', '.join(BACKENDS)} ('backend' or --backend)")
