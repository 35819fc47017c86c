"""Load: content/*.md -> typed Items, through a cache of the parsed folder (readers.py parses).

The cache is keyed on every file's name, size and mtime, the settings that shape an Item, the working
folder (it appears in messages) and digest's version, so any change re-reads the folder.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Callable
from pathlib import Path

from . import __version__, parallel
from .cache import cache_dir, load_pickle, store_pickle
from .config import Settings
from .models import LoadResult

SUFFIXES = (".md", ".markdown")


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


def _cache_key(folder: Path, settings: Settings) -> str | None:
    try:
        files = content_files(folder)
        stats = [(p.name, st.st_size, st.st_mtime_ns) for p in files for st in (p.stat(),)]
    except OSError:
        return None
    shape = (__version__, str(folder.resolve()), os.getcwd(), settings.base_url, settings.link_pattern, stats)
    return hashlib.sha256(repr(shape).encode()).hexdigest()[:32]


def load_content(folder: Path, settings: Settings) -> LoadResult:
    """Read every content file of `folder` into Items; raise ContentError listing every problem found."""
    return start_loading(folder, settings, in_child=False)()


def start_loading(folder: Path, settings: Settings, *, in_child: bool = True) -> Callable[[], LoadResult]:
    """Start loading `folder`; call the result for its LoadResult (or its ContentError).

    A fresh cache entry is read at once. Otherwise the folder is parsed: with `in_child`, in a child
    process where the machine allows (parallel.py), so the caller can do other work meanwhile, and the
    result is cached when it arrives.
    """
    base = cache_dir()
    key = _cache_key(folder, settings) if base is not None and folder.is_dir() else None
    cached_path = base / "content" / f"{key}.pickle" if base is not None and key else None
    cached = load_pickle(cached_path) if cached_path is not None else None
    if isinstance(cached, LoadResult):
        return lambda: cached
    parse = functools.partial(_parse, folder, settings)
    parsed = parallel.start(parse) if in_child else parse

    def finish() -> LoadResult:
        result = parsed()
        if cached_path is not None:
            store_pickle(cached_path, result)
        return result

    return finish


def _parse(folder: Path, settings: Settings) -> LoadResult:
    from .readers import read_folder  # the parsers load only when the cache misses

    files = content_files(folder) if folder.is_dir() else []
    return read_folder(folder, files, settings)  # raises ContentError: broken folders are never cached
