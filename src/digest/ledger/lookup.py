"""Questions asked of a ledger file that may not exist yet (digest history, status, retry, --if-new, vacuum).

Each opens the file (Ledger.open_existing: NoLedger when nothing was ever sent), answers and closes it.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import LedgerError, NoLedger
from .store import Ledger
from .views import EditionStatus, EditionSummary


def history(path: Path | str, newsletter: str) -> list[EditionSummary]:
    """Editions of `newsletter`, newest first; [] when there is no ledger yet."""
    try:
        ledger = Ledger.open_existing(path)
    except NoLedger:
        return []
    with ledger:
        return ledger.history(newsletter)


def latest_edition(path: Path | str, newsletter: str) -> str:
    """The newest edition of `newsletter`; LedgerError when none was sent yet."""
    with Ledger.open_existing(path) as ledger:
        return _latest(ledger, path, newsletter)


def status(path: Path | str, newsletter: str, edition: str | None = None) -> EditionStatus:
    """`edition`'s status (the newest edition of `newsletter` if None); LedgerError naming the editions
    there are when it is not in the ledger."""
    with Ledger.open_existing(path) as ledger:
        name = edition or _latest(ledger, path, newsletter)
        found = ledger.status(name)
        if found is None:
            known = ", ".join(e.edition for e in ledger.history(newsletter, limit=5)) or "none"
            raise LedgerError(f"no edition '{name}' in {path}; recent editions: {known} (see digest history)")
        return found


def sent_item_ids(path: Path | str, newsletter: str) -> set[str] | None:
    """Item ids of every edition of `newsletter` that reached anyone; None when nothing was sent yet."""
    try:
        ledger = Ledger.open_existing(path)
    except NoLedger:
        return None
    with ledger:
        return ledger.sent_item_ids(newsletter)


def build_folder(path: Path | str, edition: str) -> Path:
    """The build folder `edition` was sent from (for digest retry); LedgerError when none is recorded."""
    try:
        ledger = Ledger.open_existing(path)
    except NoLedger:
        raise NoLedger(f"{path}: no ledger yet; nothing was sent, so there is nothing to retry") from None
    with ledger:
        folder = ledger.build_folder(edition)
    if folder is None:
        raise LedgerError(f"no build folder recorded for {edition}; give it with --from-build DIR")
    return Path(folder)


def vacuum(path: Path | str) -> tuple[int, int]:
    """`digest ledger vacuum`: the ledger without free space; its size in bytes before and after."""
    with Ledger.open_existing(path) as ledger:
        return ledger.vacuum()


def _latest(ledger: Ledger, path: Path | str, newsletter: str) -> str:
    name = ledger.latest_edition(newsletter)
    if name is None:
        raise LedgerError(f"{path}: no edition of {newsletter} has been sent yet")
    return name
