"""The record of a build's quality checks (`checks.json` in the build folder), so a checked build is not
checked again: `digest check` writes it, `digest send --from-build` of the same build reads it.

The record holds the results and a key: a hash of the build's files (manifest.json's hashes), digest's
version and the checks' (checks.CHECKS_VERSION), the settings but those of delivery and storage (which
backend, where the ledger is: a send from another folder or to another backend needs no new check), and
whether SpamAssassin was asked for and found. Anything that could change a result changes the key, and
the checks run again. The record only saves work: deleting it is always safe, and a record edited by
hand proves nothing more than --skip-checks would.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import __version__
from .config import Settings
from .models import Build

if TYPE_CHECKING:
    from .checks import CheckResult

log = logging.getLogger(__name__)

RECORD_FILE = "checks.json"
# Settings no check reads: where things are kept and how the mail leaves (the build's files are keyed apart).
_NOT_CHECKED = ("root", "config_file", "content_dir", "templates_dir", "build_dir", "outbox_dir", "ledger_path",
                "suppression_file", "backend", "smtp", "sendgrid", "feeds")  # fmt: skip


_DEFAULTS = Settings(root=Path("."))


def _key(build: Build, settings: Settings, spamassassin: bool | None) -> str:
    from .checks import CHECKS_VERSION

    spam = "off" if spamassassin is False else (shutil.which("spamassassin") or "missing")
    parts = {
        "files": build.manifest.get("files"),
        "content_hash": build.content_hash,
        "digest": __version__,
        "checks": CHECKS_VERSION,
        "settings": repr(dataclasses.replace(settings, **{name: getattr(_DEFAULTS, name) for name in _NOT_CHECKED})),
        "spamassassin": spam,
    }
    return "sha256:" + hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def recorded(build: Build, settings: Settings, spamassassin: bool | None = None) -> list[CheckResult] | None:
    """The results recorded for exactly this build and settings, or None (no record, or a stale one)."""
    path = Path(build.folder) / RECORD_FILE
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("key") != _key(build, settings, spamassassin):
        return None
    from .checks import CheckResult

    try:
        return [CheckResult(**item) for item in record["results"]]
    except (KeyError, TypeError):
        return None


def record(build: Build, settings: Settings, results: list[CheckResult], spamassassin: bool | None = None) -> None:
    """Write the results beside the build (atomically); a folder that cannot be written is only logged."""
    path = Path(build.folder) / RECORD_FILE
    data: dict[str, Any] = {
        "key": _key(build, settings, spamassassin),
        "edition": build.edition,
        "results": [r.to_dict() for r in results],
    }
    tmp = path.with_name(f".{RECORD_FILE}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        log.info("could not record the checks in %s (%s); they will run again next time", path, exc)
        tmp.unlink(missing_ok=True)


def check_once(build: Build, settings: Settings, *, spamassassin: bool | None = None) -> list[CheckResult]:
    """checks.check_build, or its recorded results when this build was already checked with these settings."""
    results = recorded(build, settings, spamassassin)
    if results is None:
        from .checks import check_build

        results = check_build(build, settings, spamassassin=spamassassin)
        record(build, settings, results, spamassassin)
    return results
