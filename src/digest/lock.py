"""Lock: one send run per newsletter at a time, held by the OS (flock) so it cannot go stale.

A pid file outlives a killed process and must be guessed about; an flock is released by the kernel
the moment its holder dies (SIGKILL, OOM, power off), so a lock that is held is always a live run.
The pid and start time written into the file are only for the message a second run shows.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import LedgerError, LockedError


def lock_path(ledger_path: Path, newsletter: str) -> Path:
    """`<ledger>.<newsletter>.lock`, beside the ledger: two newsletters sharing a ledger don't block each other."""
    ledger_path = Path(ledger_path)
    return ledger_path.with_name(f"{ledger_path.name}.{newsletter}.lock")


@contextmanager
def newsletter_lock(ledger_path: Path, newsletter: str) -> Iterator[Path]:
    """Hold the newsletter's lock for the block; raise LockedError at once if another run holds it.

    Never waits: a cron job that finds the previous run still going should say so and stop, not queue.
    Yields the lock file's path.
    """
    path = lock_path(ledger_path, newsletter)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # O_CLOEXEC: a backend that spawns a helper must not pass the lock on to it.
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise LedgerError(
            f"{path}: cannot create the lock file ({exc}); check that the ledger's folder is writable"
        ) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            raise LockedError(
                f"another digest run for newsletter {newsletter} is in progress{holder} (lock {path}); "
                "wait for it to finish"
            ) from None
        # The file is never deleted: unlinking a lock file races with a second process that has it open.
        stamp = dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} since {stamp}\n".encode(), 0)
        yield path
    finally:
        # Closing the descriptor releases the flock; an explicit unlock first keeps it obvious.
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


def require_lock(ledger_path: Path, newsletter: str) -> None:
    """Check that this process holds the newsletter's lock (taken with newsletter_lock); raise if not.

    LockedError when another process holds it, LedgerError (a bug in the caller) when nobody does.
    """
    path = lock_path(ledger_path, newsletter)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        fd = -1
    if fd >= 0:
        try:
            # flock locks belong to open file descriptions: even our own lock blocks this new descriptor.
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            if holder.startswith(f" (pid {os.getpid()} "):
                return
            raise LockedError(
                f"another digest run for newsletter {newsletter} is in progress{holder} (lock {path}); "
                "wait for it to finish"
            ) from None
        finally:
            os.close(fd)  # also drops the probe's lock if it got one
    raise LedgerError(
        f"send: the newsletter lock {path} is not held; wrap the send in "
        "'with newsletter_lock(ledger_path, newsletter):' (digest.lock)"
    )


def _read_holder(fd: int) -> str:
    try:
        text = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
    except OSError:
        return ""
    return f" ({text})" if text else ""
