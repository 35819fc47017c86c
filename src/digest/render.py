"""Render: Selection -> MJML -> HTML, text, subject, preheader (Jinja2 templates, mjml-python, premailer).

The edition is rendered once with placeholder tokens (personalize.py) where per-recipient values go;
delivery fills them per recipient. docs/TEMPLATES.md lists the templates and the context each receives.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import jinja2
import mjml

from .cache import cache_dir
from .config import Section, Settings, Words
from .dates import ENGLISH, date_range, long_date, period_title
from .errors import Problem, TemplateError
from .ics import CalendarLinks, calendar_links
from .inline import inline_css
from .links import tag_html, utm_for
from .models import Action, Item, Rendered, Selection, Window
from .personalize import HTML_TOKENS, TEXT_TOKENS

log = logging.getLogger(__name__)

PACKAGE_TEMPLATES = Path(__file__).resolve().parent / "templates"
HTML_TEMPLATE = "digest.mjml.j2"
TEXT_TEMPLATE = "digest.txt.j2"
SUBJECT_TEMPLATE = "subject.txt.j2"
PREHEADER_TEMPLATE = "preheader.txt.j2"
# Formats whose output is markup, so values are HTML-escaped; text templates are left alone.
_ESCAPED = ("mjml.j2", "html.j2", "mjml", "html", "xml")
_DOCS = "see docs/TEMPLATES.md"


@dataclass(frozen=True)
class SectionView:
    """One section of the email as the templates see it: its items, and the items of each layout column."""

    id: str
    title: str
    featured: bool
    upcoming: bool
    items: tuple[Item, ...]
    # One tuple per column. Two columns for a featured or upcoming section of 2+ items (side by side
    # on desktop, stacked on phones, in reading order); one column otherwise.
    columns: tuple[tuple[Item, ...], ...]


def edition_id(settings: Settings, window: Window) -> str:
    """The edition's id, e.g. "mayors-innovation-2020-01": names the build and the ledger's edition."""
    return f"{settings.slug}-{window.label}"


def _takes(section: Section, item: Item, upcoming: bool) -> bool:
    if (section.featured or section.upcoming) and not (
        (section.featured and item.featured) or (section.upcoming and upcoming)
    ):
        return False
    return not section.kinds or item.kind in section.kinds


def _columns(section: Section, items: tuple[Item, ...]) -> tuple[tuple[Item, ...], ...]:
    if (section.featured or section.upcoming) and len(items) >= 2:
        # First half left, second half right: stacked on a phone they read in the original order.
        half = (len(items) + 1) // 2
        return (items[:half], items[half:])
    return (items,)


def group_items(selection: Selection, sections: tuple[Section, ...], words: Words = ENGLISH) -> tuple[SectionView, ...]:
    """Put each selected item into the first section that takes it; drop empty sections.

    An item no configured section takes goes to a closing "More" section rather than vanishing
    from the email without a word (the default sections take every kind, custom ones may not).
    """
    buckets: dict[str, list[Item]] = {section.id: [] for section in sections}
    leftover: list[Item] = []
    for chosen in selection.items:
        home = next((s for s in sections if _takes(s, chosen.item, chosen.reason == "upcoming")), None)
        (buckets[home.id] if home else leftover).append(chosen.item)
    views = []
    for section in sections:
        items = tuple(buckets[section.id])
        if items:
            views.append(
                SectionView(
                    section.id, section.title, section.featured, section.upcoming, items, _columns(section, items)
                )
            )
    if leftover:
        log.warning("%d item(s) fit no configured section; they are shown under 'More'", len(leftover))
        extra = tuple(leftover)
        views.append(SectionView("more", words.more_section, False, False, extra, (extra,)))
    return tuple(views)


def _tagged(selection: Selection, tag: Callable[[str, str], str]) -> Selection:
    """The selection with every item link UTM-tagged (links.py), so HTML and text carry the same URLs."""

    def one(item: Item) -> Item:
        def by_item(url: str) -> str:
            return tag(url, item.id)

        return dataclasses.replace(
            item,
            url=by_item(item.url),
            summary_html=tag_html(item.summary_html, by_item),
            actions=tuple(Action(a.label, by_item(a.url)) for a in item.actions),
        )

    return dataclasses.replace(
        selection, posted=tuple(one(i) for i in selection.posted), upcoming=tuple(one(i) for i in selection.upcoming)
    )


_WORD = re.compile(r"\w+")
# Action labels that only say "go there": to the page the title already links, a second, vaguer link.
GENERIC_LABELS = frozenset(
    {
        "read more",
        "more",
        "learn more",
        "more information",
        "more info",
        "more details",
        "details",
        "find out more",
        "see more",
        "view more",
        "view here",
        "click here",
        "here",
        "continue reading",
    }
)


def shown_actions(item: Item) -> tuple[Action, ...]:
    """The item's actions that deserve a link of their own (see GENERIC_LABELS)."""
    return tuple(
        action
        for action in item.actions
        if not (action.url == item.url and " ".join(_WORD.findall(action.label.lower())) in GENERIC_LABELS)
    )


def action_label(action: Action) -> str:
    """The label as a lead-in ("Learn more & register here: <title>"): a closing stop or colon would double up."""
    return action.label.rstrip(" .,:;!?…")


# Weekday names and joining words say nothing the dates and place beside them do not ("Tuesday,
# November 18" next to "November 18, 2014"; "December 6 - 7, 2015 in Washington, DC").
_SAYS_NOTHING_NEW = frozenset(
    {"monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"}
    | {"mon", "tue", "tues", "wed", "thu", "thur", "thurs", "fri", "sat", "sun", "in", "at", "on", "and"}
)


def event_when(item: Item, words: Words = ENGLISH) -> str:
    """An event's dates, then its `when` text if that says more than the dates and the place.

    "April 2 – 3, 2020" for when="April 2 - 3, 2020, Detroit, MI" (nothing new in it), but
    "March 3, 2020 · Webinar: March 3, 1 – 2pm EST" (the time is news). The source's words are kept
    as written: we only decide whether showing them adds anything.
    """
    event = item.event
    if event is None:
        return ""
    dates = date_range(event.start, event.end, words)
    known = set(_WORD.findall(f"{dates} {event.place}".lower()))
    extra = set(_WORD.findall(event.when.lower())) - known - _SAYS_NOTHING_NEW
    return f"{dates} · {event.when.strip()}" if extra else dates


def event_place(item: Item, words: Words = ENGLISH) -> str:
    """Where an event happens (words.online when it is online with no place), unless the shown when-text says it."""
    event = item.event
    if event is None:
        return ""
    place = event.place or (words.online if event.online else "")
    return "" if place and place in event_when(item, words) else place


def _in_context_words(format_: Callable[..., str]) -> Callable[..., str]:
    """`format_` as a template filter that formats in the context's `words` (English without one)."""

    @jinja2.pass_context
    def filter_(context: jinja2.runtime.Context, *args: Any) -> str:
        return format_(*args, words=context.get("words", ENGLISH))

    return filter_


@jinja2.pass_context
def _calendar_links(context: jinja2.runtime.Context, item: Item) -> CalendarLinks | None:
    """An event item's "Add to calendar" links (None for other items), for _calendar.*.j2."""
    links: dict[str, CalendarLinks] = context.get("calendars", {})
    return links.get(item.id)


def _bytecode_cache() -> jinja2.BytecodeCache | None:
    """Compiled templates on disk: Jinja checks each entry against the template's source, so an edited
    template is recompiled; this only saves re-compiling unchanged ones in every new process."""
    base = cache_dir()
    if base is None:
        return None
    folder = base / "jinja"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return jinja2.FileSystemBytecodeCache(str(folder))


@functools.lru_cache(maxsize=16)
def _environment(templates_dir: str, present: frozenset[str]) -> jinja2.Environment:
    # `present` is part of the cache key so a template added to the newsletter's folder while
    # `digest serve` runs is picked up; edits to existing files are seen through auto_reload.
    del present
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader(
            [jinja2.FileSystemLoader(templates_dir), jinja2.FileSystemLoader(str(PACKAGE_TEMPLATES))]
        ),
        undefined=jinja2.StrictUndefined,
        autoescape=jinja2.select_autoescape(enabled_extensions=_ESCAPED, default_for_string=False, default=False),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
        auto_reload=True,
        bytecode_cache=_bytecode_cache(),
    )
    env.filters["long_date"] = _in_context_words(long_date)
    env.filters["date_range"] = _in_context_words(date_range)
    env.filters["event_when"] = _in_context_words(event_when)
    env.filters["shown_actions"] = shown_actions
    env.filters["action_label"] = action_label
    env.filters["event_place"] = _in_context_words(event_place)
    env.filters["calendar_links"] = _calendar_links
    env.globals["date_range"] = env.filters["date_range"]
    return env


def make_environment(settings: Settings) -> jinja2.Environment:
    """The Jinja environment for a newsletter: its own templates folder first, then the shipped templates."""
    folder = settings.path(settings.templates_dir)
    try:
        present = frozenset(p.name for p in folder.iterdir()) if folder.is_dir() else frozenset()
    except OSError:
        present = frozenset()
    return _environment(str(folder), present)


def _template_frame(tb: TracebackType | None) -> tuple[str, int] | None:
    """The innermost template file:line in a traceback (Jinja rewrites frames to point into templates)."""
    found = None
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename.endswith(".j2") or not (filename.endswith(".py") or filename.startswith("<")):
            found = (filename, tb.tb_lineno)
        tb = tb.tb_next
    return found


def _problem(exc: Exception, name: str, settings: Settings) -> TemplateError:
    """The Jinja error as `file:line: what; fix`, pointing into the template (or partial) at fault."""
    if isinstance(exc, jinja2.TemplateSyntaxError):
        where = exc.filename or exc.name or name
        problem = Problem(where, exc.lineno, f"template syntax error: {exc.message}", f"fix the syntax; {_DOCS}")
        return TemplateError(str(problem))
    frame = _template_frame(exc.__traceback__)
    where, line = frame if frame else (name, None)
    if isinstance(exc, jinja2.TemplateNotFound):
        folder = settings.path(settings.templates_dir)
        missing = str(exc.name)
        message = f"template '{missing}' not found in {folder} or the shipped templates"
        problem = Problem(where, line, message, f"add {folder / missing} or remove the include of it")
    elif isinstance(exc, jinja2.UndefinedError):
        message = f"{exc.message} (while rendering {name})"
        fix = f"use only the variables this template receives, or guard optional ones with 'is defined'; {_DOCS}"
        problem = Problem(where, line, message, fix)
    else:
        problem = Problem(where, line, f"template failed: {exc}", f"fix the template; {_DOCS}")
    return TemplateError(str(problem))


def _render_template(env: jinja2.Environment, name: str, context: Mapping[str, Any], settings: Settings) -> str:
    try:
        return env.get_template(name).render(context)
    except jinja2.TemplateError as exc:
        raise _problem(exc, name, settings) from None
    except (TypeError, ValueError, AttributeError, KeyError, IndexError, ArithmeticError) as exc:
        # Raised from a template expression (a filter given the wrong type, say): still the
        # template's fault, so name its file and line; anything else is our bug and propagates.
        if _template_frame(exc.__traceback__) is None:
            raise
        raise _problem(exc, name, settings) from None


def _one_line(text: str) -> str:
    return " ".join(text.split())


_BLANK_RUNS = re.compile(r"\n{4,}")


def _tidy_text(text: str) -> str:
    """Trailing spaces off, at most two blank lines in a row (before a section), one final newline."""
    lines = "\n".join(line.rstrip() for line in text.splitlines())
    return _BLANK_RUNS.sub("\n\n\n", lines).strip("\n") + "\n"


def prepare_templates(settings: Settings) -> None:
    """Load the edition's templates ahead of rendering (compiling them, on a first build), while the
    content is parsed in another process (pipeline.build_edition). A broken one is left for render() to report."""
    env = make_environment(settings)
    for name in (SUBJECT_TEMPLATE, PREHEADER_TEMPLATE, HTML_TEMPLATE, TEXT_TEMPLATE):
        with contextlib.suppress(jinja2.TemplateError):
            env.get_template(name)


def _template_path(env: jinja2.Environment, name: str) -> str:
    try:
        return env.get_template(name).filename or name
    except jinja2.TemplateError:
        return name


def compile_mjml(source: str, template: str = HTML_TEMPLATE) -> str:
    """MJML -> HTML with mjml-python; no web-font <link> (fonts={}), no template comments."""
    try:
        return mjml.mjml2html(source, disable_comments=True, fonts={})
    except ValueError as exc:
        raise TemplateError(
            f"{template}: the generated MJML is invalid ({exc}); check the MJML markup of the template "
            "(validate the build's email.mjml with 'mjml --validate email.mjml'); nothing was built"
        ) from None


def _context(selection: Selection, settings: Settings, edition: str) -> dict[str, Any]:
    """What every template receives (docs/TEMPLATES.md, "Context")."""
    return {
        "settings": settings,
        "newsletter": settings,
        "edition": edition,
        "window": selection.window,
        "words": settings.words,
        "period": period_title(selection.window, settings.words),
        "selection": selection,
        "sections": group_items(selection, settings.sections, settings.words),
        "items": tuple(chosen.item for chosen in selection.items),
        "posted_count": len(selection.posted),
        "upcoming_count": len(selection.upcoming),
        "postal_lines": tuple(line.strip() for line in settings.postal_address.splitlines() if line.strip()),
        "rtl": settings.direction == "rtl",
    }


def _calendars(selection: Selection, settings: Settings) -> dict[str, CalendarLinks]:
    """Each event's calendar links, from its untagged link: a calendar entry is no click to count."""
    found = ((chosen.item.id, calendar_links(chosen.item, settings)) for chosen in selection.items)
    return {item_id: links for item_id, links in found if links is not None}


def render(selection: Selection, settings: Settings, *, edition: str) -> Rendered:
    """Render the edition once: subject, preheader, MJML, inlined HTML and plain text, with placeholder tokens."""
    env = make_environment(settings)
    tagged = _tagged(selection, utm_for(settings, edition))
    base = {**_context(tagged, settings, edition), "calendars": _calendars(selection, settings)}
    subject = _one_line(_render_template(env, SUBJECT_TEMPLATE, base, settings))
    preheader = _one_line(_render_template(env, PREHEADER_TEMPLATE, {**base, "subject": subject}, settings))
    shared = {**base, "subject": subject, "preheader": preheader}
    source = _render_template(env, HTML_TEMPLATE, {**shared, "placeholders": HTML_TOKENS}, settings)
    html = inline_css(compile_mjml(source, _template_path(env, HTML_TEMPLATE)))
    text = _tidy_text(_render_template(env, TEXT_TEMPLATE, {**shared, "placeholders": TEXT_TOKENS}, settings))
    return Rendered(subject=subject, preheader=preheader, mjml=source, html=html, text=text)
