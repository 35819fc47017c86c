"""Commands that make an edition: init, list, import, build, preview, serve, check."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import click

from .cli_options import date_value, selection_of, selection_options, settings_of, warn


@click.command()
@click.argument("folder", type=click.Path(file_okay=False), default=".")
def init(folder: str) -> None:
    """Scaffold a new newsletter in FOLDER: digest.toml, one example item, the templates.

    Refuses to overwrite anything that exists.

    \b
    Example:
      digest init my-newsletter      (then run the next step it prints)
    """
    import shlex

    from .scaffold import init_newsletter

    made = init_newsletter(Path(folder), dt.date.today())
    for path in made.created:
        click.echo(f"created {path}")
    click.echo(f"New newsletter in {folder}. Edit {Path(folder) / 'digest.toml'} (name, sender, postal address).")
    click.echo(f"Next: cd {shlex.quote(folder)} && digest preview --month {made.month}")


@click.command("list")
@selection_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_context
def list_cmd(ctx: click.Context, /, as_json: bool, **kw: Any) -> None:
    """List the items a digest would hold, and why each was selected.

    \b
    Example:
      digest list --month 2020-01
      digest list --since 2012-01-01 --json
    """
    from .cli_output import selection_json, selection_table
    from .pipeline import choose

    chosen = choose(settings_of(ctx), selection_of(kw))
    warn(chosen.warnings)
    if as_json:
        click.echo(json.dumps(selection_json(chosen.selection), indent=2, ensure_ascii=False))
        return
    for line in selection_table(chosen.selection):
        click.echo(line)


@click.command("import")
@click.argument("sources", nargs=-1, metavar="[SOURCE]...")
@click.option("--dry-run", is_flag=True, help="Show what would be written; write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON per feed: new, updated, unchanged, skipped, kept.")
@click.option("--today", callback=date_value, metavar="DATE", help="Pin 'today' (recurring events, undated events).")
@click.option("--timeout", type=click.FloatRange(min=0.1), default=30.0, show_default=True, help="Seconds per request.")
@click.pass_context
def import_cmd(
    ctx: click.Context, /, sources: tuple[str, ...], dry_run: bool, as_json: bool, today: dt.date | None, timeout: float
) -> None:
    """Import site feeds and calendars (RSS, Atom, JSON Feed, iCalendar) as content files.

    Each SOURCE is an http(s) URL or a file; without one, every [[feeds]] of digest.toml. Entries
    already imported are left alone unless they changed upstream; files edited by hand are never
    overwritten. Exit 1 when a feed failed (the others are still imported).

    \b
    Example:
      digest import https://www.example.org/feed/ https://www.example.org/events.ics
      digest import && digest send --period previous-month --recipients members.csv --yes --if-new
    """
    from . import importer
    from .cli_output import import_json, import_lines

    settings = settings_of(ctx)
    report = importer.import_feeds(settings, sources, dry_run=dry_run, today=today, timeout=timeout)
    if as_json:
        click.echo(json.dumps(import_json(report), indent=2, ensure_ascii=False))
    else:
        for line in import_lines(report):
            click.echo(line)
    if report.failed:
        raise importer.failure(report)


@click.command()
@selection_options
@click.option("--out", type=click.Path(file_okay=False), help="Build folder (default: config build_dir).")
@click.pass_context
def build(ctx: click.Context, /, out: str | None, **kw: Any) -> None:
    """Render the digest into a build folder: email.html/.txt/.eml/.mjml, preview.html, manifest.json.

    The folder is what a later 'digest send --from-build DIR' sends: render once, send many.

    \b
    Example:
      digest build --month 2020-01 --out build/2020-01
    """
    from .cli_output import build_summary
    from .pipeline import build_edition

    outcome = build_edition(settings_of(ctx), selection_of(kw), Path(out) if out else None)
    warn(outcome.warnings)
    click.echo(build_summary(outcome))


@click.command()
@selection_options
@click.option("--out", type=click.Path(file_okay=False), help="Build folder (default: config build_dir).")
@click.option("--open/--no-open", "open_", default=True, help="Open the preview in a browser (default: open).")
@click.pass_context
def preview(ctx: click.Context, /, out: str | None, open_: bool, **kw: Any) -> None:
    """Build the digest and open preview.html: desktop, mobile and text side by side.

    \b
    Example:
      digest preview --month 2020-01
      digest preview --since 2012-01-01 --no-open
    """
    from .cli_output import build_summary
    from .pipeline import build_edition
    from .preview import open_in_browser

    outcome = build_edition(settings_of(ctx), selection_of(kw), Path(out) if out else None)
    warn(outcome.warnings)
    click.echo(build_summary(outcome))
    page = outcome.build.folder / "preview.html"
    if open_ and open_in_browser(page):
        click.echo(f"Opened {page} in your browser.")
    else:
        click.echo(f"Preview: {page}")


@click.command()
@selection_options
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="Port on 127.0.0.1.")
@click.option("--out", type=click.Path(file_okay=False), help="Build folder (default: config build_dir).")
@click.option("--archive", "archive", is_flag=True, help="Serve the web archive (digest archive) instead.")
@click.pass_context
def serve(ctx: click.Context, /, port: int, out: str | None, archive: bool, **kw: Any) -> None:
    """Serve the preview on 127.0.0.1 and reload it when content, templates or config change.

    With --archive, serve the web archive that 'digest archive' wrote (--out: its folder).

    \b
    Example:
      digest serve --month 2020-01 --port 8000
      digest serve --archive
    """
    from .pipeline import serve_preview

    settings = settings_of(ctx)
    if archive:
        from .serve import serve_folder

        folder = Path(out) if out else settings.path(settings.archive_dir)
        serve_folder(folder, port=port, on_ready=lambda url: click.echo(f"Serving {folder} at {url} (Ctrl+C to stop)"))
        return
    serve_preview(
        settings,
        selection_of(kw),
        Path(out) if out else None,
        port=port,
        on_ready=lambda url: click.echo(f"Serving the preview at {url} (Ctrl+C to stop)"),
        on_rebuild=lambda msg: click.echo(msg, err=True),
    )


@click.command()
@selection_options
@click.option("--from-build", type=click.Path(file_okay=False, exists=True), help="Check a folder built earlier.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for CI.")
@click.option("--no-spamassassin", is_flag=True, help="Skip the SpamAssassin score even when installed.")
@click.pass_context
def check(ctx: click.Context, /, from_build: str | None, as_json: bool, no_spamassassin: bool, **kw: Any) -> None:
    """Build the digest and run the quality checks: size, styles, MIME, headers, accessibility, spam score.

    Exits 6 when any check fails.

    \b
    Example:
      digest check --month 2020-01
      digest check --since 2012-01-01 --json
    """
    from .cli_output import check_json, check_lines
    from .pipeline import check_edition

    outcome = check_edition(
        settings_of(ctx), selection_of(kw), Path(from_build) if from_build else None, spamassassin=not no_spamassassin
    )
    if as_json:
        click.echo(json.dumps(check_json(outcome), indent=2))
    else:
        for line in check_lines(outcome):
            click.echo(line)
    if outcome.failed:
        ctx.exit(6)
