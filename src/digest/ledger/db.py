"""What the ledger's queries need of a database: the Protocols a SQLite (schema.py) or PostgreSQL adapter implements.

The queries (batches.py, editions.py, views.py) use `?` placeholders, `RETURNING`, `ON CONFLICT`, partial
indexes and the hooks below; everything else particular to one database stays behind `Database`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol

# A list chunk or a set of addresses as Database.stage takes them: (local part, domain, the address as
# written when it differs from the normalised one, name).
StagedRow = tuple[str, str, str | None, str]

URL_SCHEMES = ("postgresql://", "postgres://")


def is_url(location: object) -> bool:
    """Whether a ledger location is a PostgreSQL URL rather than a SQLite file's path."""
    return str(location).startswith(URL_SCHEMES)


def is_url_as_path(path: Path) -> bool:
    """A PostgreSQL URL made into a Path (which folds its `//`): never a ledger file anyone meant."""
    return str(path).startswith(tuple(scheme.rstrip("/") for scheme in URL_SCHEMES))


class Cursor(Protocol):
    """A statement's result (sqlite3.Cursor, psycopg's cursor)."""

    @property
    def rowcount(self) -> int: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    def __iter__(self) -> Iterator[Any]: ...


class Conn(Protocol):
    """A connection inside one of Database's transactions."""

    def execute(self, sql: str, parameters: Any = ..., /) -> Cursor: ...
    def executemany(self, sql: str, parameters: Iterable[Any], /) -> Cursor: ...


class Database(Protocol):
    """One ledger database: transactions, reads, the scratch table `stage`, upkeep and dialect hooks."""

    path: Path  # where the newsletter locks live beside it
    greatest: str  # SQL's two-argument maximum: max (SQLite), greatest (PostgreSQL)
    skip_locked: str  # ends a claim's SELECT: rows another transaction is claiming are passed over, not waited on
    # The database server's UTC time plus `?` seconds, in the ledger's timestamp format (batches.now()): leases
    # are written and compared by one clock, whichever machine each worker runs on.
    clock: str

    def hint(self, index: str) -> str:
        """Text after a table name that makes the planner use `index` (SQLite: INDEXED BY; elsewhere: "")."""
        ...

    def select_all(self, conn: Conn, columns: Sequence[str], source: str, params: Any = ()) -> list[Sequence[Any]]:
        """The rows of `SELECT <columns> <source>` (FROM ... WHERE ...), in no set order, fetched at once."""
        ...

    @property
    def version(self) -> int: ...
    def tx(self, durable: bool = False) -> AbstractContextManager[Conn]:
        """One write transaction; `durable`: on disk (fsynced) before it returns (the write-ahead mark)."""
        ...

    def read(self, sql: str, params: Any = ()) -> Cursor: ...
    def staging(self) -> AbstractContextManager[Conn]:
        """The connection for a read that fills `stage` first (which writes no ledger data)."""
        ...

    def stage(self, conn: Conn, rows: Sequence[StagedRow]) -> None:
        """Replace the rows of the connection's scratch table `stage` (pos, local, domain, email, name)."""
        ...

    def newsletter_lock(self, newsletter: str, shared: bool = False) -> AbstractContextManager[object]:
        """One run of `newsletter` at a time: LockedError at once if another holds it. `shared`: any number
        of `--worker` runs together and no other run meanwhile (PostgreSQL only)."""
        ...

    def serialise(self, conn: Conn, name: str, shared: bool = False) -> None:
        """In a transaction, until it ends: hold `name`, waiting while another transaction holds it the other
        way (`shared`: alongside other shared holders). One writer at a time (SQLite): nothing to do."""
        ...

    def require_lock(self, newsletter: str) -> None:
        """Raise unless this process holds `newsletter`'s lock."""
        ...

    def sync_ids(self, conn: Conn, table: str) -> None:
        """After rows were inserted with explicit ids: the next generated id follows the largest."""
        ...

    def release_free_pages(self) -> None: ...
    def vacuum(self) -> tuple[int, int]: ...
    def close(self) -> None: ...
