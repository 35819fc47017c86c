"""Cache: where digest keeps work it may redo (the parsed content folder, compiled templates).

Everything here only saves time: a missing, stale or unreadable entry means the work is done again.
"""

from __future__ import annotations

import logging
import os
import pickle
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def cache_dir(env: dict[str, str] | None = None) -> Path | None:
    """Where digest keeps caches ($XDG_CACHE_HOME/digest or ~/.cache/digest); None when turned off."""
    env = dict(os.environ) if env is None else env
    if env.get("DIGEST_NO_CACHE", "").strip().lower() in {"1", "true", "yes", "on"}:
        return None
    base = env.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "digest"


def load_pickle(path: Path) -> Any:
    """The object pickled at `path`, or None when it is missing or unreadable."""
    try:
        with path.open("rb") as handle:
            return pickle.load(handle)  # our own file in the user's own cache folder
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError, TypeError):
        return None


def store_pickle(path: Path, value: object) -> None:
    """Write `value` to `path` atomically; a read-only home or a full disk only costs speed."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_suffix(f".{os.getpid()}.tmp")
        temp.write_bytes(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))
        os.replace(temp, path)
    except OSError as exc:
        log.debug("cache entry %s not written: %s", path, exc)
