"""Leases: a --worker run says "alive until T" and renews it, so the other workers know when its batches are orphans.

A worker killed mid-request stops renewing; once its lease has run out, a worker that starts or runs out
of work (or a plain `digest send` afterwards) makes that run's in-flight batches unknown
(batches.recover_expired), never re-sending them on its own. Leases are written and compared with the
database server's clock (Database.clock), so the workers' own clocks need not agree.
"""

from __future__ import annotations

import contextlib
import threading

from .db import Database


class Lease:
    """The lease of one run, renewed every third of `seconds` on a daemon thread until stop()."""

    def __init__(self, db: Database, run: int, seconds: float):
        self.run = run
        self.seconds = seconds
        self._db = db
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"digest-lease-{run}", daemon=True)
        self._thread.start()

    def renew(self) -> None:
        """A run another worker already found dead (its outcome set) stays dead."""
        with self._db.tx() as conn:
            conn.execute(
                f"UPDATE runs SET lease_until = {self._db.clock} WHERE id = ? AND outcome IS NULL",
                (self.seconds, self.run),
            )

    def _beat(self) -> None:
        while not self._stopped.wait(self.seconds / 3):
            # The next beat tries again: a lease that runs out only makes this run's batches unknown.
            with contextlib.suppress(Exception):
                self.renew()

    def stop(self) -> None:
        """No renewal after this returns (the connection may be closed next)."""
        self._stopped.set()
        self._thread.join()
