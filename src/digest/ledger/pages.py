"""Each sent edition's web version, kept so `digest archive` can rebuild the public archive from the ledger alone."""

from __future__ import annotations

from .batches import SENT, now
from .db import Database


class PagesMixin:
    """The web versions of editions (Ledger inherits them). The page is an opaque blob (archive.pack)."""

    _db: Database

    def store_page(self, edition: str, page: bytes) -> None:
        """Keep the edition's web version; a later store replaces the page, not the date of the first."""
        with self._db.tx() as conn:
            conn.execute(
                "INSERT INTO edition_pages (edition, stored_at, page) SELECT id, ?, ? FROM editions WHERE name = ? "
                "ON CONFLICT (edition) DO UPDATE SET page = excluded.page",
                (now(), page, edition),
            )

    def sent_pages(self, newsletter: str) -> list[tuple[str, str, bytes]]:
        """(edition, stored_at, page) of each edition of `newsletter` sent to at least one recipient."""
        rows = self._db.read(
            "SELECT e.name, p.stored_at, p.page FROM edition_pages p JOIN editions e ON e.id = p.edition "
            "WHERE e.newsletter = ? AND EXISTS (SELECT 1 FROM recipients r WHERE r.edition = p.edition "
            f"AND r.state = {SENT}) ORDER BY e.name",
            (newsletter,),
        ).fetchall()
        return [(str(edition), str(stored_at), bytes(page)) for edition, stored_at, page in rows]
