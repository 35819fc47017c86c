"""Read: content files (front matter + Markdown) -> typed Items, every problem of a folder reported at once."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from .config import Settings
from .errors import ContentError, Problem
from .frontmatter import ACTION_FIELDS, EVENT_FIELDS, FIELDS, SOURCE_FIELDS, Invalid, Reading, get, got, parse, to_text
from .markup import absolute_url, markdown_html, markdown_text
from .models import Action, EventInfo, Item, LoadResult

DATE_PREFIX = re.compile(r"^\d{4}-\d{2}-\d{2}-")


def read_folder(folder: Path, files: Iterable[Path], settings: Settings) -> LoadResult:
    """Read the content `files` of `folder` into Items; raise ContentError listing every problem found."""
    shown_folder = _shown(folder)
    if not folder.is_dir():
        problem = Problem(shown_folder, None, "content folder not found", "create it or set content_dir in digest.toml")
        raise ContentError([problem])
    errors: list[Problem] = []
    warnings: list[Problem] = []
    items: list[Item] = []
    first_use: dict[str, Reading] = {}
    for path in files:
        file = Reading(path, _shown(path), errors, warnings)
        item = _read(file, settings)
        if item is None:
            continue
        if item.id in first_use:
            first = first_use[item.id]
            other, other_line = first.shown, first.line_of("id") or first.line_of("slug")
            file.error(
                file.line_of("id") or file.line_of("slug") or 1,
                f"id '{item.id}' is also used by {other}" + (f":{other_line}" if other_line else ""),
                "give each item its own id",
            )
            continue
        first_use[item.id] = file
        items.append(item)
    if errors:
        raise ContentError(errors, warnings)
    if not items:
        warnings.append(Problem(shown_folder, None, "no content files found", "add YYYY-MM-DD-<slug>.md files"))
    items.sort(key=lambda item: (-item.date.toordinal(), item.id))
    return LoadResult(items=tuple(items), warnings=tuple(warnings))


def read_file(path: Path, settings: Settings) -> tuple[Item | None, tuple[Problem, ...]]:
    """Read one file exactly as read_folder does (for files `digest import` writes): its Item, or its problems."""
    errors: list[Problem] = []
    warnings: list[Problem] = []
    item = _read(Reading(path, _shown(path), errors, warnings), settings)
    return (None if errors else item), tuple(errors + warnings)


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(path)


def _read(file: Reading, settings: Settings) -> Item | None:
    """One file -> Item, or None after recording why not."""
    parsed = parse(file)
    if parsed is None:
        return None
    raw, body = parsed
    values = file.convert(FIELDS, raw)
    _source(file, values.get("source"))
    kind = get(values, "kind", str, "news")
    event = _event(file, values.get("event"), kind)
    url = absolute_url(get(values, "url", str, ""), settings.base_url) or _link(settings, _item_id(file, values))
    actions = _actions(file, values.get("actions"), url, settings.base_url)
    summary = get(values, "summary", str, "")
    if body and summary:
        file.warn(
            file.line_of("summary") or file.line_of("description"), "both a body and 'summary'", "the body is used"
        )
    if file.failed or "title" not in values or "date" not in values:
        return None
    if not get(values, "title", str, ""):
        file.error(file.line_of("title"), "'title' is empty", "write the item's title")
        return None
    source = body or summary
    draft = get(values, "draft", bool, False) or get(values, "status", str, "published") == "draft"
    return Item(
        id=_item_id(file, values),
        title=get(values, "title", str, ""),
        date=get(values, "date", dt.date, dt.date.min),
        kind=kind,
        summary_html=markdown_html(source, settings.base_url),
        summary_text=markdown_text(source, settings.base_url),
        url=url,
        source=file.path,
        subtitle=get(values, "subtitle", str, ""),
        tags=get(values, "tags", tuple, ()),
        status="draft" if draft else "published",
        featured=get(values, "featured", bool, False),
        truncated=get(values, "truncated", bool, False),
        event=event,
        actions=actions,
        image=get(values, "image", str, ""),
        image_alt=get(values, "image_alt", str, ""),
    )


def _source(file: Reading, raw: object) -> None:
    if raw is None:
        return
    if not isinstance(raw, dict):
        file.error(file.line_of("source"), f"'source' must be a mapping (got {got(raw)})", "indent feed:, id: under it")
        return
    file.convert(SOURCE_FIELDS, raw, parent="source")


def _item_id(file: Reading, values: Mapping[str, object]) -> str:
    # Without an id the file name (minus its date) is the id, so renaming a file changes its link.
    default = DATE_PREFIX.sub("", file.path.stem).lower()
    return get(values, "id", str, default)


def _event(file: Reading, raw: object, kind: str) -> EventInfo | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        file.error(
            file.line_of("event"),
            f"'event' must be a mapping (got {got(raw)})",
            "indent start:, end:, when: under event:",
        )
        return None
    values = file.convert(EVENT_FIELDS, raw, parent="event")
    if "start" not in values:
        return None
    start = get(values, "start", dt.date, dt.date.min)
    end = values.get("end")
    if isinstance(end, dt.date) and end < start:
        file.error(
            file.line_of("end", "event") or file.line_of("event"),
            f"event 'end' ({end}) is before its 'start' ({start})",
            "fix the dates, or leave out 'end' for a one-day event",
        )
        return None
    return EventInfo(
        start=start,
        end=end if isinstance(end, dt.date) else None,
        when=get(values, "when", str, ""),
        place=get(values, "place", str, ""),
        # A webinar is online by definition; other kinds are online only when the file says so.
        online=get(values, "online", bool, kind == "webinar"),
    )


def _actions(file: Reading, raw: object, item_url: str, base_url: str) -> tuple[Action, ...]:
    if raw is None:
        return ()
    line = file.line_of("actions")
    actions: list[Action] = []
    for entry in raw if isinstance(raw, list) else [raw]:
        if isinstance(entry, dict):
            values = file.convert(ACTION_FIELDS, entry, parent="actions")
            if "label" not in values:
                continue  # already reported as missing or invalid
            label = get(values, "label", str, "")
            url = absolute_url(get(values, "url", str, ""), base_url) or item_url
        else:
            try:
                label, url = to_text("actions", entry), item_url
            except Invalid:
                file.error(line, f"an action must be a label or label:/url: (got {got(entry)})", "see docs/CONTENT.md")
                continue
        if not label:
            file.error(line, "an action has an empty label", "write the button's text, e.g. '- Read More'")
            continue
        actions.append(Action(label, url))
    return tuple(actions)


def _link(settings: Settings, slug: str) -> str:
    return settings.link_pattern.format(base_url=settings.base_url.rstrip("/"), slug=slug)
