"""Suppressions: the addresses no send may reach, from the ledger and from the suppression file.

The ledger holds the list of record, with a reason and a date per address: bounces, spam complaints and
unsubscribes reported by SendGrid's events, and addresses added by hand (`digest suppressions add`).
The suppression file (`suppression_file`, one address per line or any CSV with an email column) stays
what it was: the one-click endpoint appends to it, it can be edited by hand or be an export from another
tool, and every send honours it. `digest suppressions` lists both; an address from the file is removed
by deleting its line there.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from .addresses import normalize_email
from .config import Settings
from .errors import SuppressionError
from .ledger import Ledger
from .ledger.db import is_url
from .ledger.events import (
    Suppression,
    add_suppression,
    is_complaint,
    remove_suppression,
    suppressed_addresses,
    waiting,
)
from .ledger.events import suppression as ledger_entry
from .ledger.events import suppressions as ledger_entries
from .models import Recipient

SUPPRESSION_HEADER = "email"  # first line of a new file, so it is also a one-column CSV

if TYPE_CHECKING:
    from .recipients import RowProblem


def _file(settings: Settings) -> Path:
    return settings.path(settings.suppression_file)


def _ledger(settings: Settings) -> Path | str:
    return settings.ledger_location()


def _has_ledger(settings: Settings) -> bool:
    """A PostgreSQL ledger is always there; a SQLite one once something was sent or recorded."""
    location = _ledger(settings)
    return is_url(location) or Path(location).exists()


def suppressed(settings: Settings, ledger: Ledger | None = None) -> frozenset[str]:
    """Every case-folded address a send must skip: the file's and the ledger's (`ledger`, or the one on disk)."""
    from .recipients import load_suppressions

    listed = load_suppressions(_file(settings))
    if ledger is not None:
        return listed | suppressed_addresses(ledger)
    if not _has_ledger(settings):
        return listed
    with Ledger.open_store(_ledger(settings)) as opened:
        return listed | suppressed_addresses(opened)


def entries(settings: Settings) -> list[Suppression]:
    """The ledger's entries (oldest first), then the file's addresses that the ledger does not list."""
    from .recipients import load_suppressions

    found: list[Suppression] = []
    if _has_ledger(settings):
        with Ledger.open_store(_ledger(settings)) as ledger:
            found = ledger_entries(ledger)
    known = {s.email for s in found}
    path = _file(settings)
    for email in sorted(load_suppressions(path) - known):
        found.append(Suppression(email, f"listed in {path.name}", "file", ""))
    return found


def add(settings: Settings, email: str, reason: str) -> bool:
    """Add `email` to the ledger's list with `reason`; False when it is listed already."""
    from .recipients import normalize_address

    try:
        address = normalize_address(email)
    except ValueError as exc:
        raise SuppressionError(
            f"{email!r} is not an email address ({exc}); give one address, e.g. ann@example.org"
        ) from None
    if not reason.strip():
        raise SuppressionError("say why with --reason, e.g. --reason 'asked by phone'")
    with Ledger.open_store(_ledger(settings)) as ledger:
        return add_suppression(ledger, address, reason.strip())


def remove(settings: Settings, email: str, because: str, *, yes: bool = False) -> Suppression:
    """Take `email` off the ledger's list, recording `because`; a spam complaint needs `yes`."""
    if not because.strip():
        raise SuppressionError("say why with --reason, e.g. --reason 'asked to be re-added by email'")
    path = _ledger(settings)
    entry = None
    if _has_ledger(settings):
        with Ledger.open_store(path) as ledger:
            entry = ledger_entry(ledger, email)
            if entry is not None and is_complaint(entry) and not yes:
                raise SuppressionError(
                    f"{entry.email} reported the newsletter as spam on {entry.created_at[:10]}; mailing them again "
                    "hurts delivery for everyone. If they asked to be re-added, repeat with --yes"
                )
            if entry is not None:
                removed = remove_suppression(ledger, email, because.strip())
                if removed is not None:
                    return removed
    line = _line_in_file(_file(settings), email)
    if line:
        raise SuppressionError(f"{_file(settings)}:{line}: {email} is listed in the suppression file; delete that line")
    raise SuppressionError(f"{email} is not on the suppression list ('digest suppressions' lists it)")


def _line_in_file(path: Path, email: str) -> int:
    """The line of the suppression file that lists `email` (0: none)."""
    from .recipients import load_suppressions

    key = email.strip().casefold()
    if key not in load_suppressions(path):
        return 0
    for number, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), 1):
        if key in line.casefold():
            return number
    return 0


def retry_list(ledger: Ledger, edition: str, skip: frozenset[str]) -> Iterator[Recipient | RowProblem] | None:
    """What `digest retry` should send when some of the edition's failed or pending recipients are now
    suppressed (a bounce, a complaint): the others as a list, the suppressed as skipped rows; None when
    none is suppressed (retry then sends every failed and pending row, as the ledger has them)."""
    from .recipients import RowProblem

    rows = waiting(ledger, edition)
    if not any(normalize_email(email) in skip for email, _ in rows):
        return None
    return (
        RowProblem(0, email, "suppressed (on the suppression list since it was sent)", "suppressed")
        if normalize_email(email) in skip
        else Recipient(email=email, name=name)
        for email, name in rows
    )


def add_to_file(path: Path, email: str) -> bool:
    """Append `email` (case-folded) to the suppression file; False when it is already there.

    One O_APPEND write of one line under an exclusive flock: concurrent unsubscribes (threads or
    processes of a WSGI server) neither interleave nor duplicate. The file is read under the lock with
    recipients.load_suppressions, the reader sends use, so "already there" means what a send means by
    it; at a line per unsubscriber that read is cheap next to the rarity of unsubscribes.
    """
    address = normalize_email(email)
    if not address or "@" not in address or any(c in address for c in ',\r\n"'):
        raise ValueError(f"not an address to suppress: {email!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        from .recipients import load_suppressions

        if address in load_suppressions(path):
            return False
        size = os.fstat(fd).st_size
        last = os.pread(fd, 1, size - 1) if size else b""
        line = address + "\n"
        if not size:
            line = SUPPRESSION_HEADER + "\n" + line
        elif last != b"\n":
            line = "\n" + line  # someone edited the file by hand and left no final newline
        os.write(fd, line.encode("utf-8"))
        os.fsync(fd)  # the 200 we answer promises the unsubscribe is recorded
        return True
    finally:
        os.close(fd)  # also releases the lock
