"""What the command line prints: the tables, summaries and JSON of the pipeline's outcomes (no click here)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .models import Item, Selection

if TYPE_CHECKING:  # the import modules load only when `digest import` runs
    from .importer import ImportReport
from .pipeline import BuildOutcome, CheckOutcome


def selection_json(selection: Selection) -> dict[str, Any]:
    """`digest list --json`: the window, the counts and every item with why it was chosen."""
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
    """`digest list`: a line on the window, then one row per item with why it was chosen."""
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


def build_summary(outcome: BuildOutcome) -> str:
    """The closing line of `digest build` and `digest preview`."""
    b = outcome.build
    sizes = b.manifest.get("sizes", {})
    html_bytes = sizes.get("html_bytes", len(b.html.encode())) if isinstance(sizes, dict) else len(b.html.encode())
    sel = outcome.selection
    return (
        f"Built {b.edition}: {len(sel.posted)} posted + {len(sel.upcoming)} upcoming item(s), "
        f"HTML {html_bytes:,} bytes, in {outcome.seconds * 1000:.0f} ms -> {b.folder}"
    )


def check_lines(outcome: CheckOutcome) -> list[str]:
    """`digest check`: one line per check, then the verdict."""
    results = outcome.results
    counts = {s: sum(1 for r in results if r.status == s) for s in ("pass", "warn", "fail", "skip")}
    verdict = "FAILED: fix the failing checks before sending" if outcome.failed else "all checks passed"
    detail = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    return [r.line() for r in results] + [f"{outcome.build.edition}: {verdict} ({detail})"]


def check_json(outcome: CheckOutcome) -> dict[str, Any]:
    """`digest check --json`: the edition, its folder, the verdict and every check."""
    return {
        "edition": outcome.build.edition,
        "folder": str(outcome.build.folder),
        "failed": outcome.failed,
        "checks": [r.to_dict() for r in outcome.results],
    }


def write_report(path: Path, report: Any) -> None:
    """`--report FILE`: the send report as JSON, written atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_suffix(path.suffix + ".tmp")
    temp.write_text(json.dumps(report.to_dict(), indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(temp, path)


SHOWN_ROW_PROBLEMS = 5  # bad list rows printed on screen; the report file holds the rest


def row_problem_lines(report: Any, recipients: Path | None, report_path: Path | None) -> list[str]:
    """The first bad rows of the list (`members.csv:12: 'bob@': not a valid ...`), then where the rest are.

    Suppressed rows are not problems (they unsubscribed), so only invalid and duplicate rows are shown.
    """
    rows = [row for row in report.problems if row.kind != "suppressed"]
    total = report.skipped_invalid + report.duplicates
    if not rows or recipients is None:
        return []
    lines = [
        f"{recipients}:{row.line}: " + (f"{row.email!r}: " if row.email else "") + row.reason
        for row in rows[:SHOWN_ROW_PROBLEMS]
    ]
    hidden = total - len(lines)
    if hidden > 0:
        where = f"the first {len(rows)} are in {report_path}" if report_path else "add --report FILE to list them"
        lines.append(f"... and {hidden:,} more bad row{'s' if hidden != 1 else ''} ({where})")
    return lines


def import_lines(report: ImportReport) -> list[str]:
    """`digest import`: one line per feed, one per file written or left alone, a closing line."""
    if not report.feeds:
        return ["No feeds to import: give a feed URL or file, or add [[feeds]] to digest.toml (docs/IMPORT.md)."]
    lines: list[str] = []
    verb = "would write" if report.dry_run else "wrote"
    for feed in report.feeds:
        if feed.error:
            lines.append(f"{feed.source}: FAILED: {feed.error}")
            continue
        if feed.not_modified:
            lines.append(f"{feed.source}: not modified since the last import (0 new)")
            continue
        counts = f"{len(feed.new)} new, {len(feed.updated)} updated, {feed.unchanged} unchanged"
        extra = f", {len(feed.skipped)} skipped" if feed.skipped else ""
        extra += f", {len(feed.kept)} left alone" if feed.kept else ""
        lines.append(f"{feed.source}: {counts}{extra}")
        lines += [f"  {verb} {name} (new)" for name in feed.new]
        lines += [f"  {verb} {name} (updated)" for name in feed.updated]
        lines += [f"  skipped {s.entry}: {s.reason}" for s in feed.skipped]
        lines += [f"  left alone {k.file}: {k.reason}" for k in feed.kept]
    plural = "s" if len(report.feeds) != 1 else ""
    closing = f"{report.total('new')} new, {report.total('updated')} updated from {len(report.feeds)} feed{plural}."
    if report.failed:
        closing += f" {len(report.failed)} failed."
    if report.dry_run:
        closing += " This was a dry run: nothing was written. Run without --dry-run to import."
    lines.append(closing)
    return lines


def import_json(report: ImportReport) -> dict[str, Any]:
    """`digest import --json`: totals, then per feed what was written, left as it is, skipped or kept."""
    totals = {name: report.total(name) for name in ("new", "updated", "unchanged", "skipped", "kept")}
    feeds = [
        {
            "source": feed.source,
            "format": feed.format,
            "not_modified": feed.not_modified,
            "new": feed.new,
            "updated": feed.updated,
            "unchanged": feed.unchanged,
            "skipped": [{"entry": s.entry, "reason": s.reason} for s in feed.skipped],
            "kept": [{"file": k.file, "reason": k.reason} for k in feed.kept],
            "error": feed.error or None,
        }
        for feed in report.feeds
    ]
    return {"dry_run": report.dry_run, **totals, "failed": len(report.failed), "feeds": feeds}
