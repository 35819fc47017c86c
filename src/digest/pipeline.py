"""Order: the one module that knows the order of the stages (load -> choose -> render -> build -> send)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import Settings
from .errors import Problem
from .models import Build, Item, Selection
from .personalize import sample_values
from .selection import SelectionOptions, require_items, resolve_window, select


@dataclass(frozen=True)
class Chosen:
    selection: Selection
    warnings: tuple[Problem, ...]


@dataclass(frozen=True)
class BuildOutcome:
    build: Build
    selection: Selection
    warnings: tuple[Problem, ...]
    seconds: float


def load_items(settings: Settings) -> tuple[tuple[Item, ...], tuple[Problem, ...]]:
    from .content import load_content

    loaded = load_content(settings.path(settings.content_dir), settings)
    return loaded.items, tuple(loaded.warnings)


def apply_selection_settings(settings: Settings, opts: SelectionOptions) -> Settings:
    """Flags that are also settings (--tz, --upcoming-days) win over the config, as the top layer."""
    changes: dict[str, Any] = {}
    if opts.tz:
        changes["timezone"] = opts.tz
    if opts.upcoming_days is not None:
        changes["upcoming_days"] = opts.upcoming_days
    if not changes:
        return settings
    from .config import validate

    updated = dataclasses.replace(settings, **changes)
    validate(updated)
    return updated


def choose(settings: Settings, opts: SelectionOptions, *, allow_empty: bool = False) -> Chosen:
    settings = apply_selection_settings(settings, opts)
    items, warnings = load_items(settings)
    window = resolve_window(opts, settings.timezone)
    selection = select(items, window, opts, settings.upcoming_days)
    if not allow_empty:
        require_items(selection)
    return Chosen(selection, warnings)


def selection_json(selection: Selection) -> dict[str, Any]:
    w = selection.window
    rows = []
    for chosen in selection.items:
        item = chosen.item
        row: dict[str, Any] = {
            "id": item.id,
            "title": item.title,
            "subtitle": item.subtitle,
            "date": item.date.isoformat(),
            "kind": item.kind,
            "tags": list(item.tags),
            "url": item.url,
            "reason": chosen.reason,
            "why": _why(chosen.reason, item, selection),
            "source": str(item.source),
        }
        if item.event:
            row["event"] = {
                "start": item.event.start.isoformat(),
                "end": item.event.end.isoformat() if item.event.end else None,
                "when": item.event.when,
                "place": item.event.place,
            }
        rows.append(row)
    return {
        "window": {"since": w.since.isoformat(), "until": w.until.isoformat(), "tz": w.tz, "label": w.label},
        "upcoming_until": selection.upcoming_until.isoformat(),
        "filters": selection.filters,
        "count": len(selection),
        "posted": len(selection.posted),
        "upcoming": len(selection.upcoming),
        "items": rows,
    }


def _why(reason: str, item: Item, selection: Selection) -> str:
    if reason == "posted":
        return f"posted {item.date.isoformat()}, in the window"
    start = item.event.start.isoformat() if item.event else "?"
    days = (selection.upcoming_until - selection.window.until).days
    return f"upcoming event on {start}, within {days} days after the window"


def selection_table(selection: Selection) -> list[str]:
    w = selection.window
    lines = [
        f"Window {w.since.isoformat()} .. {w.until.isoformat()} ({w.tz}): {len(selection.posted)} posted, "
        f"{len(selection.upcoming)} upcoming event(s) until {selection.upcoming_until.isoformat()}"
    ]
    if not len(selection):
        lines.append("No items selected.")
        return lines
    width = min(60, max(len(c.item.title) for c in selection.items))
    lines.append(f"{'DATE':<10}  {'KIND':<8}  {'TITLE':<{width}}  WHY")
    for chosen in selection.items:
        item = chosen.item
        title = item.title if len(item.title) <= width else item.title[: width - 1] + "…"
        lines.append(
            f"{item.date.isoformat():<10}  {item.kind:<8}  {title:<{width}}  {_why(chosen.reason, item, selection)}"
        )
    return lines


def build(settings: Settings, opts: SelectionOptions, out_dir: Path | None) -> BuildOutcome:
    import time

    from . import build as build_mod
    from .preview import render_preview
    from .render import edition_id, render
    from .unsubscribe import list_unsubscribe_headers

    started = time.perf_counter()
    chosen = choose(settings, opts)
    settings = apply_selection_settings(settings, opts)
    edition = edition_id(settings, chosen.selection.window)
    rendered = render(chosen.selection, settings, edition=edition)
    sample = sample_values(settings, edition)
    headers = {"From": settings.sender, "To": f"{sample['name']} <{sample['email']}>", "Subject": rendered.subject}
    if settings.reply_to:
        headers["Reply-To"] = settings.reply_to
    headers.update(list_unsubscribe_headers(sample["unsubscribe_url"], settings.unsubscribe_mailto))
    page = render_preview(
        html=rendered.html,
        text=rendered.text,
        subject=rendered.subject,
        preheader=rendered.preheader,
        headers=headers,
        sample=sample,
    )
    folder = out_dir or settings.path(settings.build_dir)
    built = build_mod.write_build(folder, rendered, chosen.selection, settings, edition=edition, preview_html=page)
    return BuildOutcome(built, chosen.selection, chosen.warnings, time.perf_counter() - started)


def build_summary(outcome: BuildOutcome) -> str:
    b = outcome.build
    sizes = b.manifest.get("sizes", {})
    html_bytes = sizes.get("html_bytes", len(b.html.encode())) if isinstance(sizes, dict) else len(b.html.encode())
    sel = outcome.selection
    return (
        f"Built {b.edition}: {len(sel.posted)} posted + {len(sel.upcoming)} upcoming item(s), "
        f"HTML {html_bytes:,} bytes, in {outcome.seconds * 1000:.0f} ms -> {b.folder}"
    )


def serve(
    settings: Settings,
    opts: SelectionOptions,
    out_dir: Path | None,
    *,
    port: int,
    on_ready: Callable[[str], None] | None = None,
    on_rebuild: Callable[[str], None] | None = None,
    stop: threading.Event | None = None,
) -> None:
    from .config import load_settings
    from .serve import serve as serve_forever

    config_file = settings.config_file

    def rebuild() -> Path:
        # Re-read the config too: editing digest.toml must show up like editing content.
        fresh = load_settings(config_file) if config_file else settings
        return build(fresh, opts, out_dir).build.folder / "preview.html"

    watch = [settings.path(settings.content_dir), settings.path(settings.templates_dir)]
    if config_file:
        watch.append(config_file)
    serve_forever(rebuild, watch, host="127.0.0.1", port=port, on_ready=on_ready, on_rebuild=on_rebuild, stop=stop)


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class CheckOutcome:
    build: Build
    results: tuple[Any, ...]  # checks.CheckResult

    @property
    def failed(self) -> bool:
        return any(r.status == "fail" for r in self.results)

    def lines(self) -> list[str]:
        return [r.line() for r in self.results]

    def summary(self) -> str:
        counts = {s: sum(1 for r in self.results if r.status == s) for s in ("pass", "warn", "fail", "skip")}
        verdict = "FAILED: fix the failing checks before sending" if self.failed else "all checks passed"
        detail = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
        return f"{self.build.edition}: {verdict} ({detail})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "edition": self.build.edition,
            "folder": str(self.build.folder),
            "failed": self.failed,
            "checks": [r.to_dict() for r in self.results],
        }


def check(
    settings: Settings, opts: SelectionOptions, from_build: Path | None, *, spamassassin: bool = True
) -> CheckOutcome:
    """Build (or read a build) and run every quality check over what a subscriber would get."""
    from .build import read_build
    from .checks import check_build

    built = read_build(from_build) if from_build else build(settings, opts, None).build
    results = check_build(built, settings, spamassassin=None if spamassassin else False)
    return CheckOutcome(built, tuple(results))
