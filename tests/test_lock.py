"""Lock: one run per newsletter; a second run is refused at once; a killed holder frees it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from digest.errors import LockedError
from digest.lock import lock_path, newsletter_lock

HOLD = """
import sys, time
from pathlib import Path
from digest.lock import newsletter_lock
with newsletter_lock(Path(sys.argv[1]), "mayors-innovation"):
    print("held", flush=True)
    time.sleep(60)
"""


def test_lock_path_is_beside_the_ledger_per_newsletter(tmp_path: Path) -> None:
    """The lock file sits next to the ledger and is named per newsletter."""
    assert lock_path(tmp_path / "ledger.sqlite3", "mayors") == tmp_path / "ledger.sqlite3.mayors.lock"


def test_second_acquirer_is_refused_at_once(tmp_path: Path) -> None:
    """While one holder has the lock, another gets LockedError (exit 5) immediately, naming the holder."""
    ledger = tmp_path / "ledger.sqlite3"
    with newsletter_lock(ledger, "mayors-innovation"):
        started = time.monotonic()
        with pytest.raises(LockedError) as info, newsletter_lock(ledger, "mayors-innovation"):
            pass
        assert time.monotonic() - started < 1
    assert info.value.exit_code == 5
    message = str(info.value)
    assert "another digest run for newsletter mayors-innovation is in progress" in message
    assert f"pid {os.getpid()}" in message and "wait for it to finish" in message


def test_other_newsletters_do_not_block_and_release_frees(tmp_path: Path) -> None:
    """Different newsletters lock independently; leaving the block releases the lock."""
    ledger = tmp_path / "ledger.sqlite3"
    with newsletter_lock(ledger, "a"), newsletter_lock(ledger, "b"):
        pass
    with newsletter_lock(ledger, "a"):
        pass


def test_killed_holder_releases_the_lock(tmp_path: Path) -> None:
    """A holder killed with SIGKILL leaves no stale lock: the next run gets it."""
    ledger = tmp_path / "ledger.sqlite3"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(ledger)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(LockedError, match=f"pid {holder.pid}"), newsletter_lock(ledger, "mayors-innovation"):
            pass
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
    finally:
        if holder.poll() is None:
            holder.kill()
    with newsletter_lock(ledger, "mayors-innovation") as path:
        assert path.read_text().startswith(f"pid {os.getpid()} since ")


def test_require_lock_tells_mine_from_theirs_and_none(tmp_path: Path) -> None:
    """require_lock passes for our own lock, names another holder (LockedError) and flags no lock at all."""
    from digest.errors import LedgerError
    from digest.lock import require_lock

    ledger = tmp_path / "ledger.sqlite3"
    with pytest.raises(LedgerError, match="is not held"):
        require_lock(ledger, "mayors-innovation")
    with newsletter_lock(ledger, "mayors-innovation"):
        require_lock(ledger, "mayors-innovation")
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(ledger)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(LockedError, match=f"pid {holder.pid}"):
            require_lock(ledger, "mayors-innovation")
    finally:
        holder.kill()
        holder.wait()
