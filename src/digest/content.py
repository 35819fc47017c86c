"""Load: content/*.md -> typed Items, through a cache of the parsed folder.

Parsing (readers.py: YAML, Markdown, sanitising) costs more to import than to run; a folder whose
files have not changed since the last run is loaded from the cache instead, as pelican's content
cache does. The cache is keyed on every file's name, size and mtime, the settings that shape an
Item, the working folder (it appears in messages) and digest's version: any change re-reads the
folder. `DIGEST_NO_CACHE=1` turns it off. When the folder must be parsed, a build has it parsed in
a child process while it imports the render stack (start_loading, parallel.py).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import __version__, parallel
from .config import Settings
from .errors import Problem
from .models import Item

log = logging.getLogger(__name__)

SUFFIXES = (".md", ".markdown")


@dataclass(frozen=True)
class LoadResult:
    items: tuple[Item, ...]  # newest first, then by id; drafts included (status "draft")
    warnings: tuple[Problem, ...]


def content_files(folder: Path) -> list[Path]:
    """The content files of a folder, by name: *.md and *.markdown, minus README and files starting with . or _."""
    return sorted(
        path
        for path in folder.iterdir()
        if path.suffix.lower() in SUFFIXES
        and not path.name.startswith((".", "_"))
        and path.stem.lower() != "readme"
        and path.is_file()
    )


def cache_dir(env: dict[str, str] | None = None) -> Path | None:
    """Where digest keeps caches ($XDG_CACHE_HOME/digest or ~/.cache/digest); None when turned off."""
    env = dict(os.environ) if env is None else env
    if env.get("DIGEST_NO_CACHE", "").strip().lower() in {"1", "true", "yes", "on"}:
        return None
    base = env.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "digest"


def _cache_key(folder: Path, settings: Settings) -> str | None:
    try:
        files = content_files(folder)
        stats = [(p.name, st.st_size, st.st_mtime_ns) for p in files for st in (p.stat(),)]
    except OSError:
        return None
    shape = (__version__, str(folder.resolve()), os.getcwd(), settings.base_url, settings.link_pattern, stats)
    return hashlib.sha256(repr(shape).encode()).hexdigest()[:32]


def _load_cached(path: Path) -> LoadResult | None:
    try:
        with path.open("rb") as handle:
            result: Any = pickle.load(handle)  # our own file in the user's own cache folder
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError, TypeError):
        return None
    return result if isinstance(result, LoadResult) else None


def _store(path: Path, result: LoadResult) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_suffix(f".{os.getpid()}.tmp")
        temp.write_bytes(pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL))
        os.replace(temp, path)
    except OSError as exc:  # a read-only home or a full disk only costs speed
        log.debug("content cache not written: %s", exc)


def load_content(folder: Path, settings: Settings) -> LoadResult:
    """Read every content file of `folder` into Items; raise ContentError listing every problem found."""
    return start_loading(folder, settings, in_child=False)()


def start_loading(folder: Path, settings: Settings, *, in_child: bool = True) -> Callable[[], LoadResult]:
    """Start loading `folder`; call the result for its LoadResult (or its ContentError).

    A fresh cache entry is read at once. Otherwise the folder is parsed: with `in_child`, in a child
    process where the machine allows (parallel.py), so the caller can do other work meanwhile (a
    build imports the render stack), and the result is cached when it arrives.
    """
    base = cache_dir()
    key = _cache_key(folder, settings) if base is not None and folder.is_dir() else None
    cached_path = base / "content" / f"{key}.pickle" if base is not None and key else None
    cached = _load_cached(cached_path) if cached_path is not None else None
    if cached is not None:
        return lambda: cached
    parse = functools.partial(_parse, folder, settings)
    parsed = parallel.start(parse) if in_child else parse

    def finish() -> LoadResult:
        result = parsed()
        if cached_path is not None:
            _store(cached_path, result)
        return result

    return finish


def _parse(folder: Path, settings: Settings) -> LoadResult:
    from .readers import read_folder

    return read_folder(folder, settings)  # raises ContentError: broken folders are never cached


def __getattr__(name: str) -> Any:
    """The parsing helpers (markdown_html, FIELDS, ...) live in readers.py; reach them from here too."""
    if name.startswith("__"):
        # The import system asks modules for __path__ and the like on every `from .content import x`:
        # answering those must not load the parsers.
        raise AttributeError(f"module 'digest.content' has no attribute {name!r}")
    from . import readers

    try:
        return getattr(readers, name)
    except AttributeError:
        raise AttributeError(f"module 'digest.content' has no attribute {name!r}") from None
