"""Questions asked of a ledger file that may not exist yet (digest history, status, retry, --if-new, vacuum).

Each opens the file (Ledger.open_existing: NoLedger when nothing was ever sent), answers and closes it.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import LedgerError, NoLedger, NothingSentYet, NothingToRetry
from .store import Ledger
from .views import EditionStatus, EditionSummary


def history(path: Path, newsletter: str) -> list[EditionSummary]:
    """Editions of `newsletter`, newest first; [] when there is no ledger yet."""
    try:
        ledger = Ledger.open_existing(path)
    except NoLedger:
        return []
    with ledger:
        return ledger.history(newsletter)


def latest_edition(path: Path, newsletter: str) -> str:
    """The newest edition of `newsletter`; LedgerError when none was sent yet."""
    try:
        with Ledger.open_existing(path) as ledger:
            return _latest(ledger, path, newsletter)
    except NothingSentYet:  # only digest retry asks, and before the first send there is nothing to retry
        message = f"{path}: no edition of {newsletter} has been sent yet, so there is nothing to retry"
        raise NothingToRetry(message) from None


def status(path: Path, newsletter: str, edition: str | None = None) -> EditionStatus:
    """`edition`'s status (the newest edition of `newsletter` if None); LedgerError naming the editions
    there are when it is not in the ledger."""
    with Ledger.open_existing(path) as ledger:
        name = edition or _latest(ledger, path, newsletter)
        found = ledger.status(name)
        if found is None:
            known = ", ".join(e.edition for e in ledger.history(newsletter, limit=5)) or "none"
            raise LedgerError(f"no edition '{name}' in {path}; recent editions: {known} (see digest history)")
        return found


def sent_item_ids(path: Path, newsletter: str) -> set[str] | None:
    """Item ids of every edition of `newsletter` that reached anyone; None when nothing was sent yet."""
    try:
        ledger = Ledger.open_existing(path)
    except NoLedger:
        return None
    with ledger:
        return ledger.sent_item_ids(newsletter)


def build_folder(path: Path, edition: str) -> Path:
    """The build folder `edition` was sent from (for digest retry); LedgerError when none is recorded."""
    try:
        ledger = Ledger.open_existing(path)
    except NoLedger:
        raise NoLedger(f"{path}: no ledger yet; nothing was sent, so there is nothing to retry") from None
    with ledger:
        folder = ledger.build_folder(edition)
        if folder is None and ledger.edition(edition) is None:
            known = ", ".join(e.edition for e in ledger.history(limit=5)) or "none"
            raise LedgerError(f"unknown edition {edition}; editions sent: {known} (all of them: digest history)")
    if folder is None:
        raise LedgerError(f"no build folder recorded for {edition}; give it with --from-build DIR")
    return Path(folder)


def vacuum(path: Path) -> tuple[int, int]:
    """`digest ledger vacuum`: the ledger without free space; its size in bytes before and after."""
    with Ledger.open_existing(path) as ledger:
        return ledger.vacuum()


def _latest(ledger: Ledger, path: Path, newsletter: str) -> str:
    name = ledger.latest_edition(newsletter)
    if name is None:
        raise NothingSentYet(f"{path}: no edition of {newsletter} has been sent yet")
    return name
