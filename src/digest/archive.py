"""Archive: the public web archive of the editions sent, where every "View in browser" link leads.

A list send keeps the edition's web version in the ledger (`store_web_version`): the email's HTML
with the personal parts taken out (no name, address or unsubscribe token; the footer's unsubscribe
link becomes the `signup_url` link; the "View in browser" link and elements of class "personal"
go), links counted as `utm_medium=web`, plus what the index, the feed and the calendar files need.
`digest archive` (`write_archive`) builds the site from the ledger alone: one page per edition at
its `view_url` path under `base_url`, `index.html`, `feed.xml` (Atom) and `events/<id>.ics`. The
same ledger gives the same bytes, and the folder is replaced as a whole, so a reader or an upload
never sees half an archive.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import posixpath
import re
import shutil
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from .config import Settings
from .errors import ArchiveError, BuildError
from .ics import EventRecord, ics_url, to_ics
from .links import retag_medium
from .models import Build, Window
from .personalize import HTML_TOKENS, view_url

PACK_FORMAT = 1  # the layout of a stored web version; unpack refuses others
WEB_MEDIUM = "web"
PAGE_TEMPLATE = "archive/edition.html.j2"
INDEX_TEMPLATE = "archive/index.html.j2"
FEED_TEMPLATE = "archive/feed.xml.j2"
PERSONAL_CLASS = "personal"  # a template marks what only the email shows ("Dear %%name%%") with this class
_PLACEHOLDER = re.compile(r"%%[A-Za-z_][A-Za-z0-9_:]*%%")


@dataclass(frozen=True)
class WebEdition:
    """One edition's web version: what the ledger keeps and the archive shows."""

    edition: str
    newsletter: str
    period: str  # the window label, "2020-01"
    period_title: str  # as readers say it, "January 2020"
    subject: str
    preheader: str
    item_count: int
    language: str
    direction: str
    body: str  # the email's <body> content, personal parts removed
    body_style: str  # the email's <body style>
    styles: str  # the email's <style> blocks
    events: tuple[EventRecord, ...] = ()
    sent_at: str = ""  # UTC, "2020-02-01T14:00:00Z": from the ledger, not stored in the pack


@dataclass(frozen=True)
class WebBody:
    """The email's HTML made into a web page's parts; `leftovers` are placeholders that had to be blanked."""

    body: str
    body_style: str
    styles: str
    leftovers: tuple[str, ...]


# --- the web version of a build -------------------------------------------------------------------


def _drop_link(link: Any) -> None:
    """Remove a link, and its paragraph too when the link was all it held."""
    parent = link.getparent()
    alone = not (link.tail or "").strip()
    if parent is not None and parent.tag == "p" and len(parent) == 1 and not (parent.text or "").strip() and alone:
        parent.drop_tree()
    else:
        link.drop_tree()


def web_body(html: str, settings: Settings, edition: str) -> WebBody:
    """The email's HTML (placeholders in, or the shared view_url filled) as a web page's body and styles."""
    import lxml.html
    from lxml.etree import ParserError

    try:
        doc = lxml.html.document_fromstring(html)
    except (ParserError, ValueError) as exc:
        raise ArchiveError(f"{edition}: the email's HTML cannot be parsed ({exc}); rebuild the edition") from None
    head, body = doc.find("head"), doc.find("body")
    if body is None:
        raise ArchiveError(f"{edition}: the email's HTML has no <body>; check the templates, then rebuild")
    styles = "".join(
        lxml.html.tostring(style, encoding="unicode", with_tail=False)
        for style in (head.iter("style") if head is not None else ())
    )
    for comment in body.xpath("//comment()"):  # Outlook's conditional tables mean nothing on the web
        comment.drop_tree()
    for hidden in [*body.find_class("preheader"), *body.find_class(PERSONAL_CLASS)]:
        hidden.drop_tree()
    for wrapper in body.xpath('.//*[@aria-roledescription="email"]'):
        del wrapper.attrib["aria-roledescription"]
    views = {HTML_TOKENS["view_url"], view_url(settings, edition)}
    for link in list(body.iter("a")):
        href = link.get("href", "")
        if href in views:
            _drop_link(link)
        elif href == HTML_TOKENS["unsubscribe_url"]:
            if settings.signup_url:
                for child in list(link):
                    link.remove(child)
                link.text = settings.words.subscribe
                link.set("href", settings.signup_url)
            else:
                _drop_link(link)
        elif settings.utm:
            link.set(
                "href",
                retag_medium(href, source=settings.utm_source, medium=settings.utm_medium, new_medium=WEB_MEDIUM),
            )
    inner = (body.text or "") + "".join(lxml.html.tostring(child, encoding="unicode") for child in body)
    leftovers = tuple(sorted(set(_PLACEHOLDER.findall(inner))))
    return WebBody(_PLACEHOLDER.sub("", inner), body.get("style", ""), styles, leftovers)


def _window(build: Build) -> Window | None:
    raw = build.manifest.get("window")
    if not isinstance(raw, dict):
        return None
    try:
        since, until = dt.date.fromisoformat(str(raw["since"])), dt.date.fromisoformat(str(raw["until"]))
    except (KeyError, ValueError):
        return None
    return Window(since, until, str(raw.get("tz", "")), str(raw.get("label", build.period)))


def _item_count(build: Build) -> int:
    selection = build.manifest.get("selection")
    if not isinstance(selection, dict):
        return 0
    return sum(len(ids) for key in ("posted", "upcoming") if isinstance(ids := selection.get(key), list))


def web_version(build: Build, settings: Settings, *, sent_at: str = "") -> WebEdition:
    """The edition's web version, from its build (the HTML as every recipient got it, without them)."""
    from .dates import period_title

    window = _window(build)
    parts = web_body(build.html, settings, build.edition)
    raw_events = build.manifest.get("events")
    listed = raw_events if isinstance(raw_events, list) else []
    events = tuple(EventRecord.from_json(e) for e in listed if isinstance(e, dict))
    return WebEdition(
        edition=build.edition,
        newsletter=build.newsletter,
        period=build.period,
        period_title=period_title(window, settings.words) if window else build.period,
        subject=build.subject,
        preheader=build.preheader,
        item_count=_item_count(build),
        language=settings.language,
        direction=settings.direction,
        body=parts.body,
        body_style=parts.body_style,
        styles=parts.styles,
        events=events,
        sent_at=sent_at,
    )


def pack(web: WebEdition) -> bytes:
    """The web version as the ledger keeps it: zlib-compressed JSON (about a fifth of the page's size)."""
    data = dataclasses.asdict(web)
    data.pop("sent_at")
    data["events"] = [event.to_json() for event in web.events]
    data["format"] = PACK_FORMAT
    return zlib.compress(json.dumps(data, sort_keys=True, ensure_ascii=False).encode("utf-8"), 9)


def unpack(blob: bytes, *, sent_at: str, where: str) -> WebEdition:
    """A stored web version read back; ArchiveError names the ledger and the edition when it is unreadable."""
    try:
        data = json.loads(zlib.decompress(blob).decode("utf-8"))
        if data.pop("format") != PACK_FORMAT:
            raise ValueError("a format this digest does not know")
        data["events"] = tuple(EventRecord.from_json(e) for e in data["events"])
        return WebEdition(**data, sent_at=sent_at)
    except (zlib.error, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ArchiveError(
            f"{where}: the stored web version is unreadable ({exc}); upgrade digest if a newer one wrote it, "
            "or send the edition's build again to store it anew"
        ) from None


def store_web_version(ledger: Any, build: Build, settings: Settings) -> None:
    """Keep the edition's web version in the ledger (a list send calls this before its first batch)."""
    ledger.store_page(build.edition, pack(web_version(build, settings)))


def leftover_placeholders(build: Build, settings: Settings) -> tuple[str, ...]:
    """Placeholders the edition's web page would still carry (a name, an address, a token): `digest check`."""
    return web_body(build.html, settings, build.edition).leftovers


# --- where things go -------------------------------------------------------------------------------


def site_path(settings: Settings, url: str) -> PurePosixPath | None:
    """The file under the archive folder that serves `url`, or None when `url` is not under base_url."""
    base = settings.base_url.rstrip("/") + "/"
    if not url.startswith(base):
        return None
    rest = url[len(base) :].split("#", 1)[0].split("?", 1)[0]
    parts = [p for p in rest.split("/") if p]
    if any(p in {".", ".."} for p in parts):
        return None
    if not parts:
        return PurePosixPath("index.html")
    path = PurePosixPath(*parts)
    return path if path.suffix else path / "index.html"


def _absolute(settings: Settings, path: PurePosixPath) -> str:
    return f"{settings.base_url.rstrip('/')}/{path.as_posix()}"


def _relative(target: PurePosixPath, start: PurePosixPath) -> str:
    return posixpath.relpath(target.as_posix(), start.parent.as_posix() or ".")


def _event_path(settings: Settings, event_id: str) -> PurePosixPath:
    return site_path(settings, ics_url(settings, event_id)) or PurePosixPath("events", f"{event_id}.ics")


# --- reading the editions back ---------------------------------------------------------------------


def _utc(stamp: str) -> str:
    """An ISO timestamp as Atom's UTC seconds, "2020-02-01T14:00:00Z"."""
    try:
        moment = dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return "1970-01-01T00:00:00Z"
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def sent_editions(settings: Settings) -> list[WebEdition]:
    """Every edition of this newsletter sent to at least one recipient, from the ledger alone."""
    from .errors import NoLedger
    from .ledger import Ledger

    path = settings.ledger_location()
    try:
        ledger = Ledger.open_existing(path)
    except NoLedger:
        return []
    with ledger:
        rows = ledger.sent_pages(settings.slug)
    return [unpack(blob, sent_at=_utc(stored), where=f"{path} ({edition})") for edition, stored, blob in rows]


def built_editions(settings: Settings, skip: Iterable[str]) -> tuple[list[WebEdition], list[str]]:
    """Editions built in build_dir but not sent (for --include-unsent), with a warning per unreadable build."""
    from .build import MANIFEST_FILE, read_build

    folder = settings.path(settings.build_dir)
    found: list[WebEdition] = []
    warnings: list[str] = []
    seen = set(skip)
    if not folder.is_dir():
        return found, warnings
    for sub in sorted(p for p in folder.iterdir() if (p / MANIFEST_FILE).is_file()):
        try:
            build = read_build(sub)
        except BuildError as exc:
            warnings.append(f"{sub}: skipped ({exc})")
            continue
        if build.newsletter != settings.slug or build.edition in seen:
            continue
        seen.add(build.edition)
        found.append(web_version(build, settings, sent_at=_utc(str(build.manifest.get("built_at", "")))))
    return found, warnings


# --- the site ------------------------------------------------------------------------------------


def _render(settings: Settings, name: str, context: dict[str, Any]) -> str:
    from .render import _render_template, make_environment

    env = make_environment(settings)
    return _render_template(env, name, {"settings": settings, "words": settings.words, **context}, settings)


def _sent_date(stamp: str, settings: Settings) -> str:
    import zoneinfo

    from .dates import long_date

    moment = dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    return long_date(moment.astimezone(zoneinfo.ZoneInfo(settings.timezone)).date(), settings.words)


@dataclass(frozen=True)
class Site:
    """Every file of the archive (path under the folder -> bytes), with what it holds."""

    files: dict[PurePosixPath, bytes]
    pages: int
    events: int
    warnings: tuple[str, ...]


def site_files(editions: list[WebEdition], settings: Settings) -> Site:
    """The archive's files, from the editions alone (no clock, no build folder: the same input, the same bytes)."""
    warnings: list[str] = []
    index = PurePosixPath("index.html")
    feed = PurePosixPath("feed.xml")
    newest_first = sorted(editions, key=lambda e: (e.sent_at, e.edition), reverse=True)
    files: dict[PurePosixPath, bytes] = {}
    rows: list[dict[str, Any]] = []
    events: dict[str, tuple[EventRecord, str]] = {}
    for web in newest_first:
        url = view_url(settings, web.edition)
        path = site_path(settings, url)
        if path is None or path in (index, feed):
            warnings.append(
                f"{web.edition}: view_url {url} is not a page under base_url {settings.base_url}, so the archive "
                'has no page for it; set view_url to "{base_url}/digest/{edition}"'
            )
            continue
        context = {
            "web": web,
            "page_url": url,
            "index_href": _relative(index, path),
            "feed_href": _relative(feed, path),
            "sent_date": _sent_date(web.sent_at, settings),
        }
        files[path] = _render(settings, PAGE_TEMPLATE, context).encode("utf-8")
        rows.append({"web": web, "href": path.as_posix(), "url": url, "sent_date": context["sent_date"]})
        for event in web.events:
            events.setdefault(event.id, (event, web.sent_at))  # the newest edition's facts win
    shared = {
        "editions": rows,
        "index_url": settings.base_url.rstrip("/") + "/",
        "feed_url": _absolute(settings, feed),
        "updated": newest_first[0].sent_at if newest_first else "1970-01-01T00:00:00Z",
    }
    files[index] = _render(settings, INDEX_TEMPLATE, {**shared, "feed_href": feed.as_posix()}).encode("utf-8")
    files[feed] = _render(settings, FEED_TEMPLATE, shared).encode("utf-8")
    for event_id, (event, stamp) in sorted(events.items()):
        moment = dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
        files[_event_path(settings, event_id)] = to_ics(event, settings, stamp=moment)
    return Site(files, len(rows), len(events), tuple(warnings))


@dataclass(frozen=True)
class ArchiveOutcome:
    folder: Path
    editions: int
    events: int
    changed: int  # files added or changed
    removed: int
    warnings: tuple[str, ...] = field(default_factory=tuple)

    @property
    def unchanged(self) -> bool:
        return not (self.changed or self.removed)

    def summary(self) -> str:
        what = f"{self.editions} edition(s), {self.events} calendar file(s)"
        if self.unchanged:
            return f"Archive {self.folder} is up to date: {what}, nothing changed."
        return f"Archive {self.folder}: {what}; {self.changed} file(s) written, {self.removed} removed."


def _existing(folder: Path) -> dict[PurePosixPath, Path]:
    if not folder.is_dir():
        return {}
    return {PurePosixPath(path.relative_to(folder).as_posix()): path for path in folder.rglob("*") if path.is_file()}


def write_site(files: dict[PurePosixPath, bytes], folder: Path) -> tuple[int, int]:
    """Make `folder` hold exactly `files`; returns (added or changed, removed).

    Nothing is written when nothing changed. Otherwise the site is written to a new folder beside it,
    unchanged files keep their old modification times (so rsync and uploads skip them), and the new
    folder replaces the old one with two renames: a reader sees the old archive or the new one.
    """
    if folder.exists() and not folder.is_dir():
        raise ArchiveError(f"{folder}: is a file, not a folder; set archive_dir (or --out) to a folder")
    if folder.is_symlink():
        folder = folder.resolve()  # replace the folder it points at (a web root), never the link itself
    old = _existing(folder)
    changed = [path for path, data in files.items() if path not in old or old[path].read_bytes() != data]
    removed = [path for path in old if path not in files]
    if not changed and not removed and folder.is_dir():
        return 0, 0
    parent = folder.parent
    temp = parent / f".{folder.name}.new-{os.getpid()}"
    retired = parent / f".{folder.name}.old-{os.getpid()}"
    try:
        parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(temp, ignore_errors=True)
        for path, data in sorted(files.items()):
            target = temp / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            if path in old and path not in changed:
                stat = old[path].stat()
                os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        if folder.exists():
            os.replace(folder, retired)
        os.replace(temp, folder)
    except OSError as exc:
        shutil.rmtree(temp, ignore_errors=True)
        if retired.exists() and not folder.exists():
            os.replace(retired, folder)
        raise ArchiveError(
            f"{folder}: cannot write the archive ({exc.strerror or exc}); check the folder's permissions and free "
            "space, then run digest archive again (the previous archive is unchanged)"
        ) from None
    shutil.rmtree(retired, ignore_errors=True)
    return len(changed), len(removed)


def write_archive(settings: Settings, out: Path | None = None, *, include_unsent: bool = False) -> ArchiveOutcome:
    """Write the archive of every edition sent (and, with include_unsent, every edition built) to `out`."""
    folder = out or settings.path(settings.archive_dir)
    editions = sent_editions(settings)
    warnings: list[str] = []
    if include_unsent:
        built, skipped = built_editions(settings, (e.edition for e in editions))
        editions += built
        warnings += skipped
    site = site_files(editions, settings)
    changed, removed = write_site(site.files, folder)
    return ArchiveOutcome(folder, site.pages, site.events, changed, removed, (*warnings, *site.warnings))
