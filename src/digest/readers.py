"""Read: parse content files (YAML front matter + Markdown) into typed Items, every problem reported at once."""

from __future__ import annotations

import datetime as dt
import difflib
import html
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import nh3
import yaml
from markdown_it import MarkdownIt
from markdown_it.token import Token

from .config import Settings
from .errors import ContentError, Problem
from .models import KINDS, Action, EventInfo, Item, LoadResult

try:
    from yaml import CSafeLoader as _BaseLoader
except ImportError:  # PyYAML built without libyaml: same results, only slower
    from yaml import SafeLoader as _BaseLoader  # type: ignore[assignment]

STATUSES = ("published", "draft")


@dataclass(frozen=True)
class Field:
    """One front-matter field: its canonical name, value type, whether it is required, other accepted names."""

    name: str
    type: str  # a key of _CONVERTERS
    required: bool = False
    aliases: tuple[str, ...] = ()


# The one table of front matter; docs/CONTENT.md describes each field.
FIELDS: tuple[Field, ...] = (
    Field("title", "text", required=True),
    Field("date", "date", required=True, aliases=("posted",)),
    Field("kind", "kind", aliases=("type", "category")),
    Field("id", "id", aliases=("slug",)),
    Field("subtitle", "text"),
    Field("tags", "tags"),
    Field("featured", "bool"),
    Field("status", "status"),
    Field("draft", "bool"),
    Field("truncated", "bool"),
    Field("event", "event"),
    Field("actions", "actions"),
    Field("url", "url", aliases=("link",)),
    Field("image", "text"),
    Field("image_alt", "text"),
    Field("summary", "text", aliases=("description",)),  # used only when the body is empty
    Field("source", "source"),  # provenance of an imported item; not shown in the email
)
SOURCE_FIELDS: tuple[Field, ...] = (Field("feed", "text", required=True), Field("id", "text"))
EVENT_FIELDS: tuple[Field, ...] = (
    Field("start", "date", required=True),
    Field("end", "date"),
    Field("when", "text"),
    Field("place", "text"),
    Field("online", "bool"),
)
ACTION_FIELDS: tuple[Field, ...] = (Field("label", "text", required=True), Field("url", "url"))

ALLOWED_TAGS = {"p", "a", "em", "strong", "b", "i", "ul", "ol", "li", "br", "code", "blockquote"}
URL_SCHEMES = {"http", "https", "mailto"}
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_ID = re.compile(r"[a-z0-9][a-z0-9-]*")
DATE_PREFIX = re.compile(r"^\d{4}-\d{2}-\d{2}-")
# YAML contexts that begin with a quote or bracket: what to call them, and the fix.
_OPENED = {
    "quoted scalar": ("a quoted value", "close the quote"),
    "flow sequence": ("a [...] list", "close the list with ]"),
    "flow mapping": ("a {...} mapping", "close the mapping with }"),
}
_SCRIPT_OPEN = re.compile(r"<(script|style)\b", re.IGNORECASE)
_SCRIPT_CLOSE = re.compile(r"</(script|style)\s*>", re.IGNORECASE)


class _Loader(_BaseLoader):
    """Safe YAML that keeps dates as text, so every date goes through one check with one message, and
    refuses a key given twice (YAML would silently keep the last one)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[object, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                first = seen.setdefault(key, key_node.start_mark.line)
            except TypeError:  # an unhashable key: SafeConstructor reports it itself
                continue
            if first != key_node.start_mark.line:
                raise yaml.constructor.ConstructorError(
                    None, None, f"'{key}' is given twice (first on line {first + 2})", key_node.start_mark
                )
        return super().construct_mapping(node, deep)


# YAML would turn `2020-02-30` into an exception and `2020-03-17` into a date before we see it.
_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in _BaseLoader.yaml_implicit_resolvers.items()
}


class _Invalid(Exception):
    """A value that cannot be used: the message and the fix for the Problem."""

    def __init__(self, message: str, fix: str) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix


def _got(value: object) -> str:
    return f'"{value}"' if isinstance(value, str) else repr(value)


def _text(name: str, value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise _Invalid(f"'{name}' must be text (got {_got(value)})", f'write it as text, e.g. {name}: "..."')
    return str(value).strip()


def _date(name: str, value: object) -> dt.date:
    # A YAML loader elsewhere may already give a date; datetimes are refused because they carry a time.
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    if isinstance(value, str) and _ISO_DATE.fullmatch(value.strip()):
        try:
            return dt.date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise _Invalid(f"'{name}' is not a date (got {_got(value)})", "use YYYY-MM-DD")


def _bool(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise _Invalid(f"'{name}' must be true or false (got {_got(value)})", f"write {name}: true or {name}: false")
    return value


def _choice(name: str, value: object, choices: tuple[str, ...]) -> str:
    text = _text(name, value).lower()
    if text not in choices:
        close = difflib.get_close_matches(text, choices, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise _Invalid(f"unknown {name} {_got(value)}", f"{hint}use one of {', '.join(choices)}")
    return text


def _kind(name: str, value: object) -> str:
    return _choice(name, value, KINDS)


def _status(name: str, value: object) -> str:
    return _choice(name, value, STATUSES)


def _id(name: str, value: object) -> str:
    text = _text(name, value)
    if not _ID.fullmatch(text):
        raise _Invalid(
            f"'{name}' must be lowercase letters, digits and dashes (got {_got(value)})",
            "it becomes the item's link; e.g. id: what-mayors-need-to-know-now",
        )
    return text


def _tags(name: str, value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        parts: list[object] = list(value.split(","))
    elif isinstance(value, list):
        parts = value
    elif value is None:
        parts = []
    else:
        raise _Invalid(f"'{name}' must be a list (got {_got(value)})", f"write {name}: [water, equity]")
    # Lower case so filters and section rules match however an editor capitalised a tag.
    tags = [_text(name, part).lower() for part in parts]
    return tuple(dict.fromkeys(tag for tag in tags if tag))


def _url(name: str, value: object) -> str:
    text = _text(name, value)
    scheme = text.split(":", 1)[0].lower() if ":" in text else ""
    if scheme in URL_SCHEMES or (not scheme and text.startswith("/")):
        return text
    raise _Invalid(
        f"'{name}' must be an http(s) or mailto link, or a path starting with / (got {_got(value)})",
        "write the full link, e.g. https://example.org/news/x",
    )


_Converter = Callable[[str, object], object]
_CONVERTERS: dict[str, _Converter] = {
    "text": _text,
    "date": _date,
    "bool": _bool,
    "kind": _kind,
    "status": _status,
    "id": _id,
    "tags": _tags,
    "url": _url,
    # Nested mappings are read by _event and _actions, which need the file's lines for their own keys.
    "event": lambda _name, value: value,
    "actions": lambda _name, value: value,
    "source": lambda _name, value: value,
}

T = TypeVar("T")


def _get(values: Mapping[str, object], name: str, type_: type[T], default: T) -> T:
    value = values.get(name, default)
    if not isinstance(value, type_):  # the converters guarantee this; a failure is a bug here, not in content
        raise TypeError(f"{name}: expected {type_.__name__}, got {type(value).__name__}")
    return value


class _File:
    """One content file while it is read: its lines, where front matter keys sit, and its problems."""

    def __init__(self, path: Path, shown: str, errors: list[Problem], warnings: list[Problem]) -> None:
        self.path = path
        self.shown = shown
        self.errors = errors
        self.warnings = warnings
        self.front: list[str] = []  # front-matter lines; file line n is front[n - 2]
        self.failed = False

    def error(self, line: int | None, message: str, fix: str) -> None:
        self.failed = True
        self.errors.append(Problem(self.shown, line, message, fix))

    def warn(self, line: int | None, message: str, fix: str) -> None:
        self.warnings.append(Problem(self.shown, line, message, fix))

    def line_of(self, key: str, parent: str = "") -> int | None:
        """File line of `key:` in the front matter (under `parent:` if given); None if it is not written as a line."""
        start = 0
        if parent:
            parent_line = self.line_of(parent)
            if parent_line is None:
                return None
            start = parent_line - 1  # index of the line after the parent's
        pattern = re.compile(rf"^\s+(- )?{re.escape(key)}\s*:" if parent else rf"^{re.escape(key)}\s*:")
        for index in range(start, len(self.front)):
            line = self.front[index]
            if parent and line and not line[0].isspace() and not line.startswith("-"):
                break  # the parent's block has ended
            if pattern.match(line):
                return index + 2
        return None

    def convert(self, fields: tuple[Field, ...], raw: Mapping[object, object], parent: str = "") -> dict[str, object]:
        """Canonical names -> checked values, reporting aliases in conflict, unknown keys and bad values."""

        # Line numbers only matter for a message, and finding one scans the front matter: look them up
        # only when something is reported (a clean file reports nothing).
        def fallback() -> int | None:
            return self.line_of(parent) if parent else 1

        def line(name: str) -> int | None:
            return self.line_of(name, parent) or fallback()

        by_name = {alias: field for field in fields for alias in (field.name, *field.aliases)}
        where = f"{parent} " if parent else ""
        values: dict[str, object] = {}
        seen: dict[str, str] = {}
        for key, value in raw.items():
            name = str(key)
            field = by_name.get(name)
            if field is None:
                close = difflib.get_close_matches(name, list(by_name), n=1, cutoff=0.6)
                hint = f"did you mean '{close[0]}'?" if close else f"known fields: {', '.join(f.name for f in fields)}"
                self.warn(line(name), f"unknown {where}field '{name}' is ignored", hint)
                continue
            if field.name in seen:
                self.error(
                    line(name), f"'{name}' and '{seen[field.name]}' both set {where}'{field.name}'", "keep one of them"
                )
                continue
            seen[field.name] = name
            try:
                values[field.name] = _CONVERTERS[field.type](name, value)
            except _Invalid as bad:
                self.error(line(name), bad.message, bad.fix)
        for field in fields:
            if field.required and field.name not in seen:
                self.error(
                    fallback(),
                    f"missing {where}'{field.name}'",
                    f"add a line '{field.name}: ...'" + (f" under '{parent}:'" if parent else " to the front matter"),
                )
        return values


def read_folder(folder: Path, files: Iterable[Path], settings: Settings) -> LoadResult:
    """Read the content `files` of `folder` into Items; raise ContentError listing every problem found."""
    shown_folder = _shown(folder)
    if not folder.is_dir():
        problem = Problem(shown_folder, None, "content folder not found", "create it or set content_dir in digest.toml")
        raise ContentError([problem])
    errors: list[Problem] = []
    warnings: list[Problem] = []
    items: list[Item] = []
    first_use: dict[str, _File] = {}
    for path in files:
        file = _File(path, _shown(path), errors, warnings)
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
    item = _read(_File(path, _shown(path), errors, warnings), settings)
    return (None if errors else item), tuple(errors + warnings)


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(path)


def _read(file: _File, settings: Settings) -> Item | None:
    """One file -> Item, or None after recording why not."""
    try:
        text = file.path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = exc.object[: exc.start].count(b"\n") + 1
        file.error(line, f"not UTF-8 text (byte 0x{exc.object[exc.start]:02x})", "save the file as UTF-8")
        return None
    except OSError as exc:
        file.error(None, f"cannot be read ({exc.strerror})", "check the file's permissions")
        return None
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if not text.strip():
        file.error(1, "the file is empty", "add front matter (title, date) and a summary, or delete the file")
        return None
    if lines[0].strip() != "---":
        file.error(1, "no front matter", "start the file with a '---' line, then 'title:' and 'date:', then '---'")
        return None
    closing = next((n for n in range(1, len(lines)) if lines[n].rstrip() in ("---", "...")), None)
    if closing is None:
        file.error(1, "the front matter is never closed", "add a '---' line after the last front-matter field")
        return None
    file.front = lines[1:closing]
    body = "\n".join(lines[closing + 1 :]).strip()
    try:
        raw = yaml.load("\n".join(file.front), Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        # A quote or bracket left open is only noticed lines later (often at the end): point at its start.
        opened = next((v for k, v in _OPENED.items() if exc.context_mark and k in (exc.context or "")), None)
        mark = exc.context_mark if opened else exc.problem_mark or exc.context_mark
        line = mark.line + 2 if mark else 1  # +1 for the opening '---', +1 because marks count from 0
        if "given twice" in str(exc.problem):
            file.error(line, f"front matter: {exc.problem}", "keep one of them")
        elif opened:
            what, fix = opened
            file.error(line, f"front matter is not valid YAML ({what} starts here and is never closed)", fix)
        else:
            file.error(
                line, f"front matter is not valid YAML ({exc.problem})", "check quoting and indentation on that line"
            )
        return None
    except yaml.YAMLError as exc:
        file.error(1, f"front matter is not valid YAML ({exc})", "check quoting and indentation")
        return None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        found = "a list" if isinstance(raw, list) else f"{_got(raw)}"
        file.error(2, f"front matter must be 'key: value' lines (got {found})", "write one 'field: value' per line")
        return None
    values = file.convert(FIELDS, raw)
    _source(file, values.get("source"))
    kind = _get(values, "kind", str, "news")
    event = _event(file, values.get("event"), kind)
    url = _absolute(_get(values, "url", str, ""), settings.base_url) or _link(settings, _item_id(file, values))
    actions = _actions(file, values.get("actions"), url, settings.base_url)
    summary = _get(values, "summary", str, "")
    if body and summary:
        file.warn(
            file.line_of("summary") or file.line_of("description"), "both a body and 'summary'", "the body is used"
        )
    if file.failed or "title" not in values or "date" not in values:
        return None
    if not _get(values, "title", str, ""):
        file.error(file.line_of("title"), "'title' is empty", "write the item's title")
        return None
    source = body or summary
    draft = _get(values, "draft", bool, False) or _get(values, "status", str, "published") == "draft"
    return Item(
        id=_item_id(file, values),
        title=_get(values, "title", str, ""),
        date=_get(values, "date", dt.date, dt.date.min),
        kind=kind,
        summary_html=markdown_html(source, settings.base_url),
        summary_text=markdown_text(source, settings.base_url),
        url=url,
        source=file.path,
        subtitle=_get(values, "subtitle", str, ""),
        tags=_get(values, "tags", tuple, ()),
        status="draft" if draft else "published",
        featured=_get(values, "featured", bool, False),
        truncated=_get(values, "truncated", bool, False),
        event=event,
        actions=actions,
        image=_get(values, "image", str, ""),
        image_alt=_get(values, "image_alt", str, ""),
    )


def _source(file: _File, raw: object) -> None:
    if raw is None:
        return
    if not isinstance(raw, dict):
        file.error(
            file.line_of("source"), f"'source' must be a mapping (got {_got(raw)})", "indent feed:, id: under it"
        )
        return
    file.convert(SOURCE_FIELDS, raw, parent="source")


def _item_id(file: _File, values: Mapping[str, object]) -> str:
    # Without an id the file name (minus its date) is the id, so renaming a file changes its link.
    default = DATE_PREFIX.sub("", file.path.stem).lower()
    return _get(values, "id", str, default)


def _event(file: _File, raw: object, kind: str) -> EventInfo | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        file.error(
            file.line_of("event"),
            f"'event' must be a mapping (got {_got(raw)})",
            "indent start:, end:, when: under event:",
        )
        return None
    values = file.convert(EVENT_FIELDS, raw, parent="event")
    if "start" not in values:
        return None
    start = _get(values, "start", dt.date, dt.date.min)
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
        when=_get(values, "when", str, ""),
        place=_get(values, "place", str, ""),
        # A webinar is online by definition; other kinds are online only when the file says so.
        online=_get(values, "online", bool, kind == "webinar"),
    )


def _actions(file: _File, raw: object, item_url: str, base_url: str) -> tuple[Action, ...]:
    if raw is None:
        return ()
    line = file.line_of("actions")
    actions: list[Action] = []
    for entry in raw if isinstance(raw, list) else [raw]:
        if isinstance(entry, dict):
            values = file.convert(ACTION_FIELDS, entry, parent="actions")
            if "label" not in values:
                continue  # already reported as missing or invalid
            label = _get(values, "label", str, "")
            url = _absolute(_get(values, "url", str, ""), base_url) or item_url
        else:
            try:
                label, url = _text("actions", entry), item_url
            except _Invalid:
                file.error(line, f"an action must be a label or label:/url: (got {_got(entry)})", "see docs/CONTENT.md")
                continue
        if not label:
            file.error(line, "an action has an empty label", "write the button's text, e.g. '- Read More'")
            continue
        actions.append(Action(label, url))
    return tuple(actions)


def _link(settings: Settings, slug: str) -> str:
    return settings.link_pattern.format(base_url=settings.base_url.rstrip("/"), slug=slug)


def _absolute(url: str, base_url: str) -> str:
    """A site path ("/news/x") becomes a full link: an email has no page to resolve it against."""
    return base_url.rstrip("/") + url if base_url and url.startswith("/") and not url.startswith("//") else url


_markdown = MarkdownIt("commonmark", {"html": True})


def markdown_html(source: str, base_url: str = "") -> str:
    """Markdown -> HTML safe for an email: only ALLOWED_TAGS, http(s)/mailto links with rel, no scripts or handlers."""

    def absolute_links(tag: str, attribute: str, value: str) -> str | None:
        return _absolute(value, base_url) if base_url and tag == "a" and attribute == "href" else value

    return nh3.clean(
        _markdown.render(source),
        tags=ALLOWED_TAGS,
        attributes={"a": {"href", "title"}},
        attribute_filter=absolute_links,
        url_schemes=URL_SCHEMES,
        link_rel="noopener noreferrer",
    ).strip()


def markdown_text(source: str, base_url: str = "") -> str:
    """Markdown -> plain text: no formatting, link text kept with its URL in parentheses, blank lines between blocks."""
    blocks: list[tuple[str, bool]] = []  # (text, is a list item), so list items stay on consecutive lines
    prefixes: list[str] = []
    numbers: list[int] = []
    for token in _markdown.parse(source):
        if token.type == "bullet_list_open":
            numbers.append(0)
        elif token.type == "ordered_list_open":
            numbers.append(int(token.attrGet("start") or 1) - 1)
        elif token.type in ("bullet_list_close", "ordered_list_close"):
            numbers.pop()
        elif token.type == "list_item_open":
            if token.markup in (".", ")"):
                numbers[-1] += 1
                prefixes.append(f"{numbers[-1]}. ")
            else:
                prefixes.append("- ")
        elif token.type == "list_item_close":
            prefixes.pop()
        elif token.type == "blockquote_open":
            prefixes.append("> ")
        elif token.type == "blockquote_close":
            prefixes.pop()
        elif token.type in ("inline", "code_block", "fence", "html_block"):
            if token.type == "inline":
                text = _inline_text(token.children or [], base_url)
            elif token.type == "html_block":
                text = _html_text(token.content)
            else:
                text = token.content.rstrip("\n")
            if text.strip():
                blocks.append(("".join(prefixes) + text.strip(), bool(numbers)))
    out = ""
    for index, (text, in_list) in enumerate(blocks):
        if index:
            out += "\n" if in_list and blocks[index - 1][1] else "\n\n"
        out += text
    return out


def _inline_text(children: Iterable[Token], base_url: str) -> str:
    parts: list[str] = []
    links: list[tuple[str, int]] = []  # (href, index in parts where the link text starts)
    skipping = False  # inside an inline <script> or <style>, whose text is not prose
    for child in children:
        if skipping:
            skipping = not (child.type == "html_inline" and _SCRIPT_CLOSE.search(child.content))
        elif child.type in ("text", "code_inline"):
            parts.append(child.content)
        elif child.type == "softbreak":
            parts.append(" ")
        elif child.type == "hardbreak":
            parts.append("\n")
        elif child.type == "image":
            parts.append(child.content)
        elif child.type == "html_inline":
            skipping = bool(_SCRIPT_OPEN.match(child.content)) and not _SCRIPT_CLOSE.search(child.content)
        elif child.type == "link_open":
            links.append((_absolute(str(child.attrGet("href") or ""), base_url), len(parts)))
        elif child.type == "link_close" and links:
            href, start = links.pop()
            label = "".join(parts[start:]).strip()
            scheme = href.split(":", 1)[0].lower()
            if href and scheme in URL_SCHEMES and href not in (label, f"mailto:{label}"):
                parts.append(f" ({href})")
    return "".join(parts)


def _html_text(fragment: str) -> str:
    # nh3 with no allowed tags keeps only text and drops script/style contents entirely.
    return html.unescape(nh3.clean(fragment, tags=set()))
