"""Front matter: a content file's YAML header, checked against the one table of its fields.

Every problem is recorded on the file being read (`Reading`) with its line and fix, so a reader can
report all of a folder's problems at once.
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml

from .errors import Problem
from .markup import URL_SCHEMES
from .models import KINDS

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

_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_ID = re.compile(r"[a-z0-9][a-z0-9-]*")
# YAML contexts that begin with a quote or bracket: what to call them, and the fix.
_OPENED = {
    "quoted scalar": ("a quoted value", "close the quote"),
    "flow sequence": ("a [...] list", "close the list with ]"),
    "flow mapping": ("a {...} mapping", "close the mapping with }"),
}


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


class Invalid(Exception):
    """A value that cannot be used: the message and the fix for the Problem."""

    def __init__(self, message: str, fix: str) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix


def got(value: object) -> str:
    """A value as a message quotes it: text in double quotes, anything else as Python writes it."""
    return f'"{value}"' if isinstance(value, str) else repr(value)


def to_text(name: str, value: object) -> str:
    """A text field's value, stripped; a number is taken as its text, anything else is Invalid."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise Invalid(f"'{name}' must be text (got {got(value)})", f'write it as text, e.g. {name}: "..."')
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
    raise Invalid(f"'{name}' is not a date (got {got(value)})", "use YYYY-MM-DD")


def _bool(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise Invalid(f"'{name}' must be true or false (got {got(value)})", f"write {name}: true or {name}: false")
    return value


def _choice(name: str, value: object, choices: tuple[str, ...]) -> str:
    text = to_text(name, value).lower()
    if text not in choices:
        close = difflib.get_close_matches(text, choices, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise Invalid(f"unknown {name} {got(value)}", f"{hint}use one of {', '.join(choices)}")
    return text


def _kind(name: str, value: object) -> str:
    return _choice(name, value, KINDS)


def _status(name: str, value: object) -> str:
    return _choice(name, value, STATUSES)


def _id(name: str, value: object) -> str:
    text = to_text(name, value)
    if not _ID.fullmatch(text):
        raise Invalid(
            f"'{name}' must be lowercase letters, digits and dashes (got {got(value)})",
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
        raise Invalid(f"'{name}' must be a list (got {got(value)})", f"write {name}: [water, equity]")
    # Lower case so filters and section rules match however an editor capitalised a tag.
    tags = [to_text(name, part).lower() for part in parts]
    return tuple(dict.fromkeys(tag for tag in tags if tag))


def _url(name: str, value: object) -> str:
    text = to_text(name, value)
    scheme = text.split(":", 1)[0].lower() if ":" in text else ""
    if scheme in URL_SCHEMES or (not scheme and text.startswith("/")):
        return text
    raise Invalid(
        f"'{name}' must be an http(s) or mailto link, or a path starting with / (got {got(value)})",
        "write the full link, e.g. https://example.org/news/x",
    )


_Converter = Callable[[str, object], object]
_CONVERTERS: dict[str, _Converter] = {
    "text": to_text,
    "date": _date,
    "bool": _bool,
    "kind": _kind,
    "status": _status,
    "id": _id,
    "tags": _tags,
    "url": _url,
    # Nested mappings are read by readers.py's event, actions and source steps, which need the file's lines.
    "event": lambda _name, value: value,
    "actions": lambda _name, value: value,
    "source": lambda _name, value: value,
}

T = TypeVar("T")


def get(values: Mapping[str, object], name: str, type_: type[T], default: T) -> T:
    """A converted field's value (or `default`), typed for the reader."""
    value = values.get(name, default)
    if not isinstance(value, type_):  # the converters guarantee this; a failure is a bug here, not in content
        raise TypeError(f"{name}: expected {type_.__name__}, got {type(value).__name__}")
    return value


class Reading:
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
            except Invalid as bad:
                self.error(line(name), bad.message, bad.fix)
        for field in fields:
            if field.required and field.name not in seen:
                self.error(
                    fallback(),
                    f"missing {where}'{field.name}'",
                    f"add a line '{field.name}: ...'" + (f" under '{parent}:'" if parent else " to the front matter"),
                )
        return values


def parse(file: Reading) -> tuple[dict[object, object], str] | None:
    """The file's front matter as a mapping and its Markdown body, or None after recording why not."""
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
        found = "a list" if isinstance(raw, list) else f"{got(raw)}"
        file.error(2, f"front matter must be 'key: value' lines (got {found})", "write one 'field: value' per line")
        return None
    return raw, body
