"""Ledger: SQLite record of every edition and every recipient's state, so each edition reaches each person once.

    db.py        the Protocols the queries need of a database (Database, Conn, Cursor)
    schema.py    the SQLite file (SqliteDatabase): open, pragmas, transactions, versioned migrations,
                 the compact version-3 tables
    batches.py   the exactly-once rules: the state machine and the write-ahead batch transitions
    editions.py  editions, runs, builds; streaming a recipients list in
    views.py     counts, history, status, failures (typed results)
    pages.py     each sent edition's web version, for `digest archive`
    store.py     `BatchStore` (the Protocol send.py uses) and `Ledger` (the SQLite implementation)
    lookup.py    questions asked of a ledger file by path, which may not exist yet (history, status, retry)

The ledger never stores secrets: only addresses, names, provider ids and error texts.
"""

from .batches import STATES, PendingRow, State, UnknownAction
from .editions import AddResult
from .migrations import SCHEMA_VERSION
from .store import BatchStore, Ledger
from .views import BatchInfo, EditionStatus, EditionSummary, Failure, RunInfo

__all__ = [
    "SCHEMA_VERSION",
    "STATES",
    "AddResult",
    "BatchInfo",
    "BatchStore",
    "EditionStatus",
    "EditionSummary",
    "Failure",
    "Ledger",
    "PendingRow",
    "RunInfo",
    "State",
    "UnknownAction",
]
