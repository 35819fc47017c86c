"""Settings in layers: defaults <- digest.toml <- DIGEST_* environment <- command-line flags.

Secrets (SENDGRID_API_KEY, DIGEST_SMTP_PASSWORD, DIGEST_UNSUBSCRIBE_SECRET) are never settings:
they are read from the environment at the moment they are needed, so no Settings object, log,
manifest or report can carry one.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import tomllib
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .deliver import BACKENDS
from .environment import warn_misspelt
from .errors import ConfigError

CONFIG_NAME = "digest.toml"
MAX_IN_FLIGHT = 16  # [sendgrid] concurrency and [smtp] connections
SECRET_ENV = ("SENDGRID_API_KEY", "DIGEST_SMTP_PASSWORD", "DIGEST_UNSUBSCRIBE_SECRET")


@dataclass(frozen=True)
class Section:
    """A group of items in the email. An item lands in the first section that takes it."""

    id: str
    title: str
    kinds: tuple[str, ...] = ()  # empty: any kind
    featured: bool = False  # takes items marked `featured: true`
    upcoming: bool = False  # takes events selected for their start date after the window


DEFAULT_SECTIONS = (
    Section("featured", "Featured", featured=True),
    Section("upcoming", "Upcoming events", upcoming=True),
    Section("news", "News and reports", kinds=("news", "report", "job")),
    Section("events", "Events and webinars", kinds=("event", "webinar", "meeting", "workshop")),
)


@dataclass(frozen=True)
class SmtpSettings:
    host: str = "localhost"
    port: int = 587
    security: str = "starttls"  # starttls | ssl | none
    user: str = ""
    timeout: float = 30.0
    connections: int = 2  # connections in parallel, one batch on each


@dataclass(frozen=True)
class SendGridSettings:
    host: str = "https://api.sendgrid.com"  # DIGEST_SENDGRID_HOST; the EU host or an emulator
    batch_size: int = 1000
    asm_group_id: int = 0  # 0: no unsubscribe group
    sandbox: bool = False
    categories: tuple[str, ...] = ("digest",)
    timeout: float = 30.0
    max_retries: int = 5
    # An unknown batch with no event this long after its hand-over, while events for the edition arrive,
    # was never accepted (24 h: SendGrid retries a failed webhook post for that long).
    events_wait_hours: float = 24.0
    concurrency: int = 4  # requests out at once; 1: one after another


@dataclass(frozen=True)
class FeedSettings:
    """A site feed or calendar `digest import` reads ([[feeds]] in digest.toml)."""

    url: str  # an http(s) URL, or a file path relative to digest.toml
    kind: str = ""  # its items' kind; empty: news for feeds, event for calendars
    kinds: tuple[tuple[str, str], ...] = ()  # (category, kind), matched without regard to case


_ENGLISH_MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip


@dataclass(frozen=True)
class Words:
    """The email's fixed words and date formats ([words] in digest.toml), English by default.

    A newsletter in another language sets them all; braces hold the values a phrase takes (WORD_FIELDS
    lists which). Plurals come in two forms, `_one` for a count of 1 and `_other` for the rest; a
    language with more forms can override the templates (docs/TEMPLATES.md).
    """

    months: tuple[str, ...] = _ENGLISH_MONTHS
    date: str = "{month} {day}, {year}"  # January 5, 2020
    month_year: str = "{month} {year}"  # a calendar month's digest: January 2020
    range_in_month: str = "{month} {day} – {end_day}, {year}"  # January 1 – 15, 2020
    range_in_year: str = "{month} {day} – {end_month} {end_day}, {year}"  # January 25 – February 5, 2020
    new_items_one: str = "{count} new item from {period}"
    new_items_other: str = "{count} new items from {period}"
    upcoming_events_one: str = ", and {count} upcoming event"
    upcoming_events_other: str = ", and {count} upcoming events"
    view_in_browser: str = "View in browser"
    view_in_browser_text: str = "View this email in your browser"
    when: str = "When"
    where: str = "Where"
    posted: str = "Posted {date}"
    online: str = "Online"
    more_section: str = "More"  # the section of items no configured section takes
    subscribed: str = "You receive this email because you subscribed to news from {name}."
    reply: str = "Reply to it to reach us."
    unsubscribe: str = "Unsubscribe"  # the footer link's text; `digest check` looks for it
    and_more_one: str = "and {count} more"  # subject: "<lead title> and 1 more"
    and_more_other: str = "and {count} more"  # subject: "<lead title> and 12 more"
    add_to_calendar: str = "Add to calendar"  # before an event's calendar links
    google_calendar: str = "Google Calendar"
    calendar_file: str = "Apple, Outlook (.ics)"  # the link to the event's .ics file
    archive_title: str = "{name}: past editions"  # the web archive's index page and feed
    all_editions: str = "All editions"  # an archived edition's link back to the index
    subscribe: str = "Subscribe"  # the web page's sign-up link, in place of the email's unsubscribe
    sent_on: str = "Sent {date}"  # an edition on the index page
    items_one: str = "{count} item"
    items_other: str = "{count} items"
    feed: str = "Atom feed"

    def say(self, name: str, /, **values: object) -> str:
        """The phrase `name` with its values filled in: words.say("posted", date="May 1, 2020")."""
        phrase: str = getattr(self, name)
        return phrase.format(**values) if values else phrase

    def count(self, name: str, count: int, /, **values: object) -> str:
        """The `name_one` or `name_other` phrase for `count`: words.count("new_items", 3, period=...)."""
        return self.say(f"{name}_{'one' if count == 1 else 'other'}", count=count, **values)


# The values each phrase of Words may use (loading refuses any other, so a typo fails at load, not mid-send).
WORD_FIELDS: dict[str, frozenset[str]] = {
    "date": frozenset({"month", "day", "year"}),
    "month_year": frozenset({"month", "year"}),
    "range_in_month": frozenset({"month", "day", "end_day", "year"}),
    "range_in_year": frozenset({"month", "day", "end_month", "end_day", "year"}),
    "new_items_one": frozenset({"count", "period"}),
    "new_items_other": frozenset({"count", "period"}),
    "upcoming_events_one": frozenset({"count"}),
    "upcoming_events_other": frozenset({"count"}),
    "posted": frozenset({"date"}),
    "subscribed": frozenset({"name"}),
    "and_more_one": frozenset({"count"}),
    "and_more_other": frozenset({"count"}),
    "archive_title": frozenset({"name"}),
    "sent_on": frozenset({"date"}),
    "items_one": frozenset({"count"}),
    "items_other": frozenset({"count"}),
}


@dataclass(frozen=True)
class Settings:
    root: Path  # folder of the config file; relative paths resolve against it
    config_file: Path | None = None
    name: str = ""  # name, slug and sender have no default: every newsletter sets its own (REQUIRED)
    slug: str = ""
    sender: str = ""
    reply_to: str = ""
    postal_address: str = ""
    base_url: str = "https://example.org"
    link_pattern: str = "{base_url}/news/{slug}"
    view_url: str = "{base_url}/digest/{edition}"
    unsubscribe_url: str = "{base_url}/unsubscribe?token={token}"
    unsubscribe_mailto: str = ""
    signup_url: str = ""  # the web archive's sign-up (or contact) link, in place of the email's unsubscribe
    ics_url: str = "{base_url}/events/{id}.ics"  # an event's calendar file ("" for none); digest archive writes it
    language: str = "en"
    direction: str = "ltr"
    timezone: str = "America/Chicago"
    upcoming_days: int = 90
    summary_words: int = 60  # an imported entry's summary is cut to this many words
    feeds: tuple[FeedSettings, ...] = ()
    sections: tuple[Section, ...] = DEFAULT_SECTIONS
    primary_color: str = "#1d4f91"
    text_color: str = "#222222"
    background_color: str = "#f4f4f4"
    logo: str = ""
    logo_alt: str = ""
    content_dir: Path = Path("content")
    templates_dir: Path = Path("templates")
    build_dir: Path = Path("build")
    outbox_dir: Path = Path("outbox")
    ledger_path: Path = Path("ledger.sqlite3")
    archive_dir: Path = Path("archive")
    ledger_url: str = ""  # postgresql://... puts the ledger in PostgreSQL (DIGEST_LEDGER_URL; password from PG*)
    worker_lease: float = 60.0  # seconds a `digest send --worker` run counts as alive without renewing its lease
    suppression_file: Path = Path("suppressions.csv")
    backend: str = "outbox"
    utm: bool = True
    utm_source: str = "digest"
    utm_medium: str = "email"
    smtp: SmtpSettings = field(default_factory=SmtpSettings)
    sendgrid: SendGridSettings = field(default_factory=SendGridSettings)
    words: Words = field(default_factory=Words)

    def path(self, value: Path) -> Path:
        return value if value.is_absolute() else self.root / value

    def ledger_location(self) -> Path | str:
        """Where the ledger is: the PostgreSQL URL when one is set, else the SQLite file."""
        return self.ledger_url or self.path(self.ledger_path)


REQUIRED = ("name", "slug", "sender")
_EXAMPLES = {"name": '"My Newsletter"', "slug": '"my-newsletter"', "sender": '"My Newsletter <news@example.org>"'}
_PATH_KEYS = {
    "content_dir", "templates_dir", "build_dir", "outbox_dir", "ledger_path", "archive_dir", "suppression_file"
}  # fmt: skip
_NESTED = {"smtp": SmtpSettings, "sendgrid": SendGridSettings, "words": Words}
_HEX = re.compile(r"^#[0-9a-fA-F]{6}$")


def _coerce(where: str, key: str, value: Any, default: Any) -> Any:
    """Turn a TOML or environment value into the type of the default, or say what is wrong."""
    try:
        if isinstance(default, bool):
            if isinstance(value, str):
                low = value.strip().lower()
                if low in {"1", "true", "yes", "on"}:
                    return True
                if low in {"0", "false", "no", "off", ""}:
                    return False
                raise ValueError(value)
            if not isinstance(value, bool):
                raise ValueError(value)
            return value
        if isinstance(default, int):
            if isinstance(value, bool):
                raise ValueError(value)
            return int(value)
        if isinstance(default, float):
            return float(value)
        if isinstance(default, Path):
            return Path(str(value)).expanduser()
        if isinstance(default, tuple) and key != "sections":
            if isinstance(value, str):
                return tuple(v.strip() for v in value.split(",") if v.strip())
            return tuple(str(v) for v in value)
        if isinstance(default, str):
            if not isinstance(value, str | int | float):
                raise ValueError(value)
            return str(value)
    except (TypeError, ValueError):
        kinds = {bool: "true or false", int: "whole number", float: "number", tuple: "list", str: "string"}
        kind = next((name for cls, name in kinds.items() if isinstance(default, cls)), "path")
        raise ConfigError(f"{where}: '{key}' must be a {kind} (got {value!r}); fix the value") from None
    return value


def _sections(where: str, raw: Any) -> tuple[Section, ...]:
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"{where}: 'sections' must be a list of [[sections]] tables; see README 'Configuration'")
    out = []
    for n, entry in enumerate(raw, 1):
        if not isinstance(entry, dict) or "id" not in entry or "title" not in entry:
            raise ConfigError(f"{where}: section {n} needs an 'id' and a 'title'")
        keys = ("id", "title", "kinds", "featured", "upcoming")
        unknown = sorted(set(entry) - set(keys))
        if unknown:
            close = difflib.get_close_matches(unknown[0], keys, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise ConfigError(
                f"{where}: section {entry['id']!r} has unknown keys {unknown}; {hint}use {', '.join(keys)}"
            )
        out.append(
            Section(
                id=str(entry["id"]),
                title=str(entry["title"]),
                kinds=tuple(str(k) for k in entry.get("kinds", ())),
                featured=bool(entry.get("featured", False)),
                upcoming=bool(entry.get("upcoming", False)),
            )
        )
    return tuple(out)


def _feeds(where: str, raw: Any) -> tuple[FeedSettings, ...]:
    from .models import KINDS

    if not isinstance(raw, list):
        raise ConfigError(f"{where}: 'feeds' must be a list of [[feeds]] tables, each with a url; see docs/IMPORT.md")
    out = []
    for n, entry in enumerate(raw, 1):
        if not isinstance(entry, dict) or not isinstance(entry.get("url"), str) or not entry["url"].strip():
            raise ConfigError(f'{where}: feed {n} needs a url = "https://..." (or a file path)')
        feed = f"{where}: feed {entry['url']!r}"
        unknown = set(entry) - {"url", "kind", "kinds"}
        if unknown:
            raise ConfigError(f"{feed} has unknown keys {sorted(unknown)}; use url, kind, kinds")
        kinds = entry.get("kinds", {})
        if not isinstance(kinds, dict):
            raise ConfigError(f'{feed}: kinds must be a table, e.g. {{ "Events" = "event" }}')
        for kind in [entry.get("kind", "news"), *kinds.values()]:
            if kind not in KINDS:
                raise ConfigError(f"{feed}: unknown kind {kind!r}; use one of {', '.join(KINDS)}")
        out.append(
            FeedSettings(
                url=entry["url"].strip(),
                kind=str(entry.get("kind", "")),
                kinds=tuple((str(category), str(kind)) for category, kind in kinds.items()),
            )
        )
    return tuple(out)


def _apply(base: Any, values: Mapping[str, Any], where: str) -> Any:
    """Return `base` with `values` merged in, rejecting unknown keys with the list of known ones."""
    known = {f.name for f in dataclasses.fields(base)} - {"root", "config_file"}
    changes: dict[str, Any] = {}
    for key, value in values.items():
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"did you mean '{close[0]}'?" if close else f"known settings: {', '.join(sorted(known))}"
            raise ConfigError(f"{where}: unknown setting '{key}'; {hint}")
        current = getattr(base, key)
        if key in _NESTED:
            if not isinstance(value, Mapping):
                raise ConfigError(f"{where}: [{key}] must be a table")
            changes[key] = _apply(current, value, f"{where} [{key}]")
            if key == "words":  # checked here, not in validate(), so the message names the phrase's layer
                _validate_words(where, changes[key])
        elif key == "sections":
            changes[key] = value if isinstance(value, tuple) else _sections(where, value)
        elif key == "feeds":
            changes[key] = value if isinstance(value, tuple) else _feeds(where, value)
        else:
            changes[key] = _coerce(where, key, value, current)
    return dataclasses.replace(base, **changes)


def _from_env(env: Mapping[str, str]) -> dict[str, Any]:
    """DIGEST_NAME -> name, DIGEST_SMTP_HOST -> smtp.host. Secrets are skipped on purpose."""
    out: dict[str, Any] = {}
    top = {f.name for f in dataclasses.fields(Settings)} - {"root", "config_file", "sections", "feeds", *_NESTED}
    for var, value in env.items():
        if not var.startswith("DIGEST_") or var in SECRET_ENV or var == "DIGEST_CONFIG":
            continue
        key = var[len("DIGEST_") :].lower()
        for nested, cls in _NESTED.items():
            prefix = nested + "_"
            if key.startswith(prefix) and key[len(prefix) :] in {f.name for f in dataclasses.fields(cls)}:
                out.setdefault(nested, {})[key[len(prefix) :]] = value
                break
        else:
            if key in top:
                out[key] = value
    return out


def find_config(explicit: str | Path | None, cwd: Path | None = None) -> Path | None:
    """The config file: `explicit` (--config, DIGEST_CONFIG), else ./digest.toml; None when there is none."""
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found; check --config, or run 'digest init' to create one")
        return path.resolve()
    candidate = (cwd or Path.cwd()) / CONFIG_NAME
    return candidate.resolve() if candidate.is_file() else None


def load_settings(
    config: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    cwd: Path | None = None,
) -> Settings:
    """Build Settings from the four layers. `overrides` are the command-line flags (None = not given)."""
    env = os.environ if env is None else env
    path = find_config(config or env.get("DIGEST_CONFIG"), cwd)
    root = path.parent if path else (cwd or Path.cwd()).resolve()
    settings = Settings(root=root, config_file=path)
    if path:
        try:
            text = path.read_text(encoding="utf-8")
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML ({exc}); fix the syntax") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{path}: not UTF-8 text; save it as UTF-8") from None
        _refuse_ledger_password(path, text, data.get("ledger_url"))
        settings = _apply(settings, data, str(path))
    env_values = _from_env(env)
    warn_misspelt(env, _from_env, settings, SECRET_ENV)
    if env_values:
        settings = _apply(settings, env_values, "environment (DIGEST_*)")
    if overrides:
        given = {k: v for k, v in overrides.items() if v is not None}
        settings = _apply(settings, given, "command line")
    if path is None and any(not getattr(settings, key) for key in REQUIRED):
        raise ConfigError(
            f"no {CONFIG_NAME} found: looked for {root / CONFIG_NAME} (no --config or DIGEST_CONFIG given). "
            f"Run digest in a newsletter's folder, give --config FILE, or create one with 'digest init FOLDER'"
        )
    validate(settings)
    return settings


def _refuse_ledger_password(path: Path, text: str, url: object) -> None:
    """A password in digest.toml would sit in a file people commit: refuse it, naming the line, never the password."""
    if not isinstance(url, str):
        return
    try:
        password = urlsplit(url).password
    except ValueError:  # a malformed URL: PostgreSQL's own message says what is wrong when it is used
        return
    if password is None:
        return
    found = re.search(r"^[ \t]*ledger_url[ \t]*=", text, re.MULTILINE)
    line = text.count("\n", 0, found.start()) + 1 if found else None
    where = f"{path}:{line}" if line else str(path)
    raise ConfigError(
        f"{where}: ledger_url holds a password, and {CONFIG_NAME} is no place for secrets; remove it from the URL "
        "and give it in PGPASSWORD or ~/.pgpass, or put the whole URL in the environment as DIGEST_LEDGER_URL"
    )


def validate(settings: Settings) -> None:
    """Refuse settings that cannot make a digest, naming the key and the fix."""
    where = str(settings.config_file or "settings")
    missing = [key for key in REQUIRED if not getattr(settings, key).strip()]
    if missing:
        lines = "; ".join(f"{key} = {_EXAMPLES[key]}" for key in missing)
        raise ConfigError(
            f"{where}: missing {', '.join(repr(k) for k in missing)}: every newsletter names itself and its "
            f"sender; add e.g. {lines}"
        )
    templates = settings.path(settings.templates_dir)
    if settings.templates_dir != Settings.templates_dir and not templates.is_dir():
        raise ConfigError(
            f"{where}: templates_dir {str(settings.templates_dir)!r}: {templates} is not a folder; "
            "create it, fix the path, or remove the line to use the default templates"
        )
    try:
        zoneinfo.ZoneInfo(settings.timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"{where}: unknown time zone '{settings.timezone}'; use an IANA name such as 'America/Chicago'"
        ) from None
    for key in ("primary_color", "text_color", "background_color"):
        if not _HEX.match(getattr(settings, key)):
            raise ConfigError(f"{where}: '{key}' must be a colour like '#1d4f91' (got {getattr(settings, key)!r})")
    if settings.worker_lease < 1:
        raise ConfigError(f"{where}: 'worker_lease' must be at least 1 second (got {settings.worker_lease})")
    if settings.smtp.security not in {"starttls", "ssl", "none"}:
        raise ConfigError(f"{where}: [smtp] security must be starttls, ssl or none (got {settings.smtp.security!r})")
    if settings.backend not in BACKENDS:
        raise ConfigError(f"{where}: backend must be one of {', '.join(BACKENDS)} (got {settings.backend!r})")
    if not 1 <= settings.sendgrid.batch_size <= 1000:
        raise ConfigError(f"{where}: [sendgrid] batch_size must be 1..1000 (SendGrid's limit per request)")
    # A crash leaves up to this many batches unknown, and providers throttle wide fan-outs: keep it small.
    if not 1 <= settings.sendgrid.concurrency <= MAX_IN_FLIGHT:
        raise ConfigError(f"{where}: [sendgrid] concurrency must be 1..{MAX_IN_FLIGHT} (requests out at once)")
    if not 1 <= settings.smtp.connections <= MAX_IN_FLIGHT:
        raise ConfigError(f"{where}: [smtp] connections must be 1..{MAX_IN_FLIGHT} (SMTP connections in parallel)")
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", settings.slug):
        raise ConfigError(f"{where}: 'slug' must be lowercase letters, digits and dashes (got {settings.slug!r})")
    if settings.upcoming_days < 0:
        raise ConfigError(f"{where}: 'upcoming_days' must be 0 or more")
    if settings.summary_words < 1:
        raise ConfigError(f"{where}: 'summary_words' must be 1 or more (imported summaries link to the site)")
    ids = [s.id for s in settings.sections]
    if len(ids) != len(set(ids)):
        raise ConfigError(f"{where}: section ids must be unique (got {ids})")


def _validate_words(where: str, words: Words) -> None:
    import string

    if len(words.months) != 12 or not all(month.strip() for month in words.months):
        raise ConfigError(f"{where}: [words] months must list the 12 month names, January first (got {words.months!r})")
    for name, allowed in {f.name: WORD_FIELDS.get(f.name, frozenset()) for f in dataclasses.fields(words)}.items():
        if name == "months":
            continue
        phrase = getattr(words, name)
        try:
            used = {field for _, field, _, _ in string.Formatter().parse(phrase) if field is not None}
        except ValueError as exc:
            raise ConfigError(
                f"{where}: [words] {name} = {phrase!r} is not a valid phrase ({exc}); write braces as {{{{ }}}}"
            ) from None
        wrong = sorted(used - allowed)
        if wrong:
            may = ", ".join(f"{{{v}}}" for v in sorted(allowed)) or "no values"
            raise ConfigError(
                f"{where}: [words] {name} = {phrase!r} uses {', '.join(f'{{{w}}}' for w in wrong)}; it may use {may}"
            )
