"""What the command line prints: the tables, summaries and JSON of the pipeline's outcomes (no click here)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .models import Item, Selection
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
