"""Logging for the command line: digest's notices to stderr as plain lines, at the level -v/-q ask for."""

from __future__ import annotations

import logging
import sys

# -q -q: errors only; -q: warnings; default: notices (an unsubscribe, an SMTP reconnect); -v: debug details.
LEVELS = {-2: logging.ERROR, -1: logging.WARNING, 0: logging.INFO, 1: logging.DEBUG}


class _Stderr(logging.Handler):
    """Writes to whatever sys.stderr is at the time, so a replaced stream (tests, click) is honoured."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except Exception:  # logging's own rule: a failing handler must not break the program
            self.handleError(record)


class _Plain(logging.Formatter):
    """A notice is shown as is; anything else says what it is: "Warning: SendGrid answered 503 ..."."""

    def format(self, record: logging.LogRecord) -> str:
        message = super().format(record)
        return message if record.levelno == logging.INFO else f"{record.levelname.capitalize()}: {message}"


def configure(verbosity: int) -> None:
    """Send the `digest` loggers to stderr at the level for `verbosity` (verbose minus quiet flags)."""
    logger = logging.getLogger("digest")
    logger.setLevel(LEVELS[max(-2, min(1, verbosity))])
    if not any(isinstance(h, _Stderr) for h in logger.handlers):
        handler = _Stderr()
        handler.setFormatter(_Plain())
        logger.addHandler(handler)
