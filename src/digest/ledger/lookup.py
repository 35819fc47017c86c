"""Questions asked of a ledger file that may not exist yet (digest history, status, retry, --if-new,
and digest ledger vacuum / export / import / migrate).

Each opens the file (Ledger.open_existing: NoLedger when nothing was ever sent), answers and closes it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from ..errors import LedgerError, NoLedger, NothingSentYet, NothingToRetry
from .store import Ledger
from .transfer import dumps
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
    try:
        with Ledger.open_existing(path) as ledger:
            return _latest(ledger, path, newsletter)
    except NothingSentYet:  # only digest retry asks, and before the first send there is nothing to retry
        message = f"{path}: no edition of {newsletter} has been sent yet, so there is nothing to retry"
        raise NothingToRetry(message) from None


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
        if folder is None and ledger.edition(edition) is None:
            known = ", ".join(e.edition for e in ledger.history(limit=5)) or "none"
            raise LedgerError(f"unknown edition {edition}; editions sent: {known} (all of them: digest history)")
    if folder is None:
        raise LedgerError(f"no build folder recorded for {edition}; give it with --from-build DIR")
    return Path(folder)


def vacuum(path: Path | str) -> tuple[int, int]:
    """`digest ledger vacuum`: the ledger without free space; its size in bytes before and after."""
    with Ledger.open_existing(path) as ledger:
        return ledger.vacuum()


def export(location: Path | str, out: IO[str]) -> dict[str, int]:
    """`digest ledger export`: every record, one JSON line each, to `out`; how many of each type."""
    counts: dict[str, int] = {}
    with Ledger.open_existing(location) as ledger:
        for record in ledger.export():
            out.write(dumps(record) + "\n")
            counts[record["type"]] = counts.get(record["type"], 0) + 1
    return counts


def import_file(location: Path | str, source: Path) -> dict[str, int]:
    """`digest ledger import`: the records of an export file into the (new, empty) ledger at `location`."""

    def records() -> Iterator[dict[str, Any]]:
        with source.open(encoding="utf-8") as fh:
            for number, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as exc:
                    raise LedgerError(f"{source}:{number}: not a ledger export line ({exc.msg}); "
                                      "give a file written by 'digest ledger export'") from None  # fmt: skip

    try:
        with Ledger.open_store(location) as ledger:
            return ledger.import_rows(records())
    except OSError as exc:
        raise LedgerError(f"{source}: cannot read the export ({exc.strerror})") from None


def migrate(source: Path | str, target: Path | str) -> dict[str, int]:
    """`digest ledger migrate`: copy the ledger at `source` into the new, empty one at `target`."""
    with Ledger.open_existing(source) as old, Ledger.open_store(target) as new:
        return new.import_rows(old.export())


def _latest(ledger: Ledger, path: Path | str, newsletter: str) -> str:
    name = ledger.latest_edition(newsletter)
    if name is None:
        raise NothingSentYet(f"{path}: no edition of {newsletter} has been sent yet")
    return name
