"""Import: site feeds and calendars -> ordinary content files, once each, never over a hand edit.

For each feed: fetch (conditional GET), parse, turn every entry into the text of a content file, and
compare it with what the last import wrote (importstate.py): new entries are written, entries changed
upstream are rewritten unless the file was edited by hand since, the rest is left as it is. Each file
is written atomically and read back by the same reader as hand-written files before it takes its place.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import tempfile
import zoneinfo
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from . import __version__
from . import fetch as fetching
from .config import FeedSettings, Settings
from .contentfile import Skipped, render
from .entries import Entry, Feed
from .errors import FeedError, ImportWriteError
from .importstate import STATE_NAME, ImportState, Written
from .readers import DATE_PREFIX, read_file

EDITED_BY_HAND = "edited by hand since it was imported; the feed's update was not applied"
DELETED_BY_HAND = "deleted by hand since it was imported; not written again"


@dataclass(frozen=True)
class Kept:
    file: str
    reason: str


@dataclass
class FeedReport:
    """What one feed's import did (or, in a dry run, would do)."""

    source: str
    format: str = ""
    not_modified: bool = False
    new: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    kept: list[Kept] = field(default_factory=list)
    error: str = ""


@dataclass(frozen=True)
class ImportReport:
    feeds: tuple[FeedReport, ...]
    dry_run: bool

    @property
    def failed(self) -> tuple[FeedReport, ...]:
        return tuple(feed for feed in self.feeds if feed.error)

    def total(self, name: str) -> int:
        return sum(len(value) if isinstance(value := getattr(f, name), list) else value for f in self.feeds)


def failure(report: ImportReport) -> FeedError:
    """The error a run with failed feeds ends with (exit 1); each failed feed was already reported on its line."""
    failed = report.failed
    others = " The other feeds were imported." if len(failed) < len(report.feeds) else ""
    if len(failed) == 1:
        return FeedError(failed[0].source, failed[0].error + others)
    listed = "".join(f"\n  {feed.source}: {feed.error}" for feed in failed)
    return FeedError(f"{len(failed)} of {len(report.feeds)} feeds", f"failed:{listed}{others}")


def state_path(settings: Settings) -> Path:
    return settings.root / STATE_NAME


def import_feeds(
    settings: Settings,
    sources: Sequence[str] = (),
    *,
    dry_run: bool = False,
    today: dt.date | None = None,
    timeout: float = fetching.TIMEOUT,
) -> ImportReport:
    """Import `sources` (else every [[feeds]] entry); a feed that fails is reported and the others go on."""
    rules = {rule.url: rule for rule in settings.feeds}
    chosen = [_rule(settings, source, rules) for source in sources] if sources else list(settings.feeds)
    if not chosen:
        return ImportReport(feeds=(), dry_run=dry_run)  # nothing configured: a scheduled run goes on to send
    zone = zoneinfo.ZoneInfo(settings.timezone)
    today = today or dt.datetime.now(zone).date()
    folder = settings.path(settings.content_dir)
    if not dry_run:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ImportWriteError(
                f"{folder}: cannot create the content folder ({exc.strerror}); make the newsletter folder "
                "writable (or set content_dir), then run the same import again"
            ) from None
    reports = []
    with ImportState(state_path(settings), read_only=dry_run) as state:
        taken = _ids_in(folder)
        for rule in chosen:
            report = FeedReport(source=fetching.redact(rule.url))
            try:
                _import_one(settings, rule, state, report, taken, dry_run=dry_run, today=today, timeout=timeout)
            except FeedError as exc:
                report.error = exc.problem
            except OSError as exc:  # the content folder itself: full disk, permissions
                report.error = f"writing to {folder} failed ({exc.strerror}); nothing more imported from this feed"
            reports.append(report)
    return ImportReport(feeds=tuple(reports), dry_run=dry_run)


def _rule(settings: Settings, source: str, rules: dict[str, FeedSettings]) -> FeedSettings:
    if source in rules:
        return rules[source]
    if not fetching.is_url(source):
        # A file given on the command line is read from the current folder, and recorded as an absolute path.
        return FeedSettings(url=str(Path(source).expanduser().resolve()))
    return FeedSettings(url=source)


def _location(settings: Settings, rule: FeedSettings) -> str:
    """Where to fetch a feed from: URLs as they are, file paths of digest.toml relative to its folder."""
    return rule.url if fetching.is_url(rule.url) else str(settings.path(Path(rule.url).expanduser()))


def _import_one(
    settings: Settings,
    rule: FeedSettings,
    state: ImportState,
    report: FeedReport,
    taken: dict[str, str],
    *,
    dry_run: bool,
    today: dt.date,
    timeout: float,
) -> None:
    from . import feeds

    # The password of a user:password@ URL is used to fetch, and kept out of reports, state and files.
    shown = replace(rule, url=fetching.redact(rule.url))
    fetched = fetching.fetch(_location(settings, rule), *state.validators(shown.url), timeout=timeout)
    known = state.entries(shown.url)
    if fetched.not_modified:
        report.not_modified = True
        report.unchanged = len(known)
        return
    try:
        feed = feeds.parse(
            shown.url, fetched.body, fetched.content_type, today=today, horizon_days=settings.upcoming_days
        )
    except FeedError:
        raise
    except Exception as exc:  # a parser library failing on input it was not built for
        raise FeedError(shown.url, f"cannot be read ({type(exc).__name__}: {exc}); is it really a feed?") from None
    report.format = feed.format
    written = _write_entries(settings, shown, feed, known, report, taken, dry_run=dry_run, today=today)
    if written and not dry_run:
        # One flush of the feed's files to disk before the state records them (an fsync per file costs
        # more than the rest of the import).
        os.sync()
    state.save_feed(shown.url, feed.format, fetched.etag, fetched.last_modified, written)


def _write_entries(
    settings: Settings,
    rule: FeedSettings,
    feed: Feed,
    known: dict[str, Written],
    report: FeedReport,
    taken: dict[str, str],
    *,
    dry_run: bool,
    today: dt.date,
) -> dict[str, Written]:
    folder = settings.path(settings.content_dir)
    written: dict[str, Written] = {}
    seen: set[str] = set()
    for entry in feed.entries:
        label = entry.key or entry.title or "(an entry without id, link or title)"
        if entry.key and entry.key in seen:
            report.skipped.append(Skipped(label, "the same guid is used by an earlier entry of the feed"))
            continue
        seen.add(entry.key)
        previous = known.get(entry.key)
        first_seen = previous.first_seen if previous else today
        made_from = _input_sha256(settings, rule, entry, first_seen)
        if previous is not None and previous.input_sha256 == made_from:
            report.unchanged += 1  # the same entry under the same settings: the same text, not made again
            continue
        document = render(settings, rule, feed, entry, first_seen)
        if isinstance(document, Skipped):
            report.skipped.append(document)
            continue
        if previous is not None:
            # The file keeps its name and id: links to it stay valid when the title changes upstream.
            document.front["id"] = DATE_PREFIX.sub("", Path(previous.file).stem)
            path = folder / previous.file
            text = document.text()
            digest = _sha256(text.encode("utf-8"))
            on_disk = _file_sha256(path)
            if on_disk is None:
                report.kept.append(Kept(_shown(path), DELETED_BY_HAND))
                continue
            if digest == previous.sha256:
                report.unchanged += 1
                written[entry.key] = Written(path.name, digest, made_from, first_seen)
                continue
            if on_disk != previous.sha256:
                report.kept.append(Kept(_shown(path), EDITED_BY_HAND))
                continue
        else:
            slug = document.front["id"]
            if taken.get(slug) == document.name:
                text = document.text()
                digest = _sha256(text.encode("utf-8"))
                if _file_sha256(folder / document.name) == digest:
                    # Written by an import whose state was lost: adopt it rather than write a copy.
                    report.unchanged += 1
                    written[entry.key] = Written(document.name, digest, made_from, first_seen)
                    continue
            document.front["id"] = _free_slug(slug, taken)
            path = folder / document.name
            text = document.text()
            digest = _sha256(text.encode("utf-8"))
        problem = _write(path, text, settings, dry_run=dry_run)
        if problem:
            report.skipped.append(Skipped(label, problem))
            continue
        taken[document.front["id"]] = path.name
        (report.updated if previous is not None else report.new).append(_shown(path))
        written[entry.key] = Written(path.name, digest, made_from, first_seen)
    return written


def _input_sha256(settings: Settings, rule: FeedSettings, entry: Entry, first_seen: dt.date) -> str:
    """A hash of everything an entry's file is made from, so an unchanged entry is recognised without rendering."""
    shape = (__version__, entry, rule, first_seen, settings.timezone, settings.summary_words, settings.words)
    return _sha256(repr(shape).encode("utf-8"))


def _ids_in(folder: Path) -> dict[str, str]:
    """The ids the folder's file names imply (id -> file name), so an import never reuses one."""
    if not folder.is_dir():
        return {}
    return {DATE_PREFIX.sub("", path.stem).lower(): path.name for path in folder.glob("*.md")}


def _free_slug(slug: str, taken: dict[str, str]) -> str:
    candidate, n = slug, 1
    while candidate in taken:
        n += 1
        candidate = f"{slug}-{n}"
    return candidate


def _write(path: Path, text: str, settings: Settings, *, dry_run: bool) -> str:
    """Write `text` to `path` atomically once the content reader accepts it; return the reader's problem if not.

    A dry run checks the text the same way, in a temporary folder, and writes nothing.
    """
    if dry_run:
        with tempfile.TemporaryDirectory(prefix="digest-import-") as scratch:
            return _checked(Path(scratch) / path.name, text, settings)
    # A leading dot: a half-written file is never read as content.
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        problem = _checked(temporary, text, settings)
        if not problem:
            os.replace(temporary, path)
        return problem
    finally:
        temporary.unlink(missing_ok=True)


def _checked(path: Path, text: str, settings: Settings) -> str:
    """Write `text` to `path` and read it back as content: "" when the reader accepts it, else its problems."""
    path.write_text(text, encoding="utf-8", newline="\n")
    item, problems = read_file(path, settings)
    return "" if item is not None else "the content reader refused it: " + "; ".join(p.message for p in problems)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _file_sha256(path: Path) -> str | None:
    try:
        return _sha256(path.read_bytes())
    except FileNotFoundError:
        return None


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(path)
