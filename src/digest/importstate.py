"""Import state: per feed its ETag and Last-Modified, per entry the file written and that file's hash.

It lives in `.digest-import.sqlite3` beside digest.toml, apart from the send ledger: deleting it only
makes the next import treat every entry as new, and files already there with the same text are
adopted rather than written twice.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .errors import ImportWriteError

STATE_NAME = ".digest-import.sqlite3"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS feeds (
    source TEXT PRIMARY KEY,
    etag TEXT NOT NULL DEFAULT '',
    last_modified TEXT NOT NULL DEFAULT '',
    format TEXT NOT NULL DEFAULT '',
    checked_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS entries (
    source TEXT NOT NULL,
    key TEXT NOT NULL,
    file TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    input_sha256 TEXT NOT NULL,
    first_seen TEXT NOT NULL,
    PRIMARY KEY (source, key)
);
"""


@dataclass(frozen=True)
class Written:
    """What an import wrote for one entry: the file (name in content_dir), its hash, the hash of what it was
    made from (the entry and the settings that shape it), the day the entry was first seen."""

    file: str
    sha256: str
    input_sha256: str
    first_seen: dt.date


class ImportState:
    """The state database; `read_only` (a dry run) never creates or changes it."""

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        self.path = path
        self.read_only = read_only
        try:
            if read_only:
                uri = f"{path.resolve().as_uri()}?mode=ro" if path.exists() else "file::memory:"
                self._db = sqlite3.connect(uri, uri=True)
                if not path.exists():
                    self._db.executescript(_SCHEMA)
            else:
                self._db = sqlite3.connect(path)
                self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise self._error(exc) from None

    def _error(self, exc: sqlite3.Error) -> ImportWriteError:
        return ImportWriteError(
            f"{self.path}: cannot open or write the import state ({exc}); make the folder writable "
            "(or check the disk), then run the same import again"
        )

    def __enter__(self) -> ImportState:
        return self

    def __exit__(self, *exc: object) -> None:
        self._db.close()

    def validators(self, source: str) -> tuple[str, str]:
        """The ETag and Last-Modified of the feed's last full answer ("" when none).

        None for a calendar: its recurring events enter the upcoming horizon day by day, so an unchanged
        calendar can still have new occurrences to import.
        """
        row = self._db.execute("SELECT etag, last_modified, format FROM feeds WHERE source = ?", (source,)).fetchone()
        return (str(row[0]), str(row[1])) if row and row[2] != "ical" else ("", "")

    def entries(self, source: str) -> dict[str, Written]:
        rows = self._db.execute(
            "SELECT key, file, sha256, input_sha256, first_seen FROM entries WHERE source = ?", (source,)
        )
        return {key: Written(file, sha, made, dt.date.fromisoformat(seen)) for key, file, sha, made, seen in rows}

    def save_feed(self, source: str, format: str, etag: str, last_modified: str, written: dict[str, Written]) -> None:
        """Record a feed's validators and the entries written, in one transaction."""
        if self.read_only:
            return
        now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        rows = written.items()
        try:
            self._save(source, format, etag, last_modified, now, rows)
        except sqlite3.Error as exc:
            raise self._error(exc) from None

    def _save(
        self, source: str, format: str, etag: str, last_modified: str, now: str, rows: Iterable[tuple[str, Written]]
    ) -> None:
        with self._db:
            self._db.execute(
                "INSERT INTO feeds (source, etag, last_modified, format, checked_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (source) DO UPDATE SET etag = excluded.etag, last_modified = excluded.last_modified, "
                "format = excluded.format, checked_at = excluded.checked_at",
                (source, etag, last_modified, format, now),
            )
            self._db.executemany(
                "INSERT OR REPLACE INTO entries (source, key, file, sha256, input_sha256, first_seen) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [(source, key, w.file, w.sha256, w.input_sha256, w.first_seen.isoformat()) for key, w in rows],
            )
