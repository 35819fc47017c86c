"""Command line: a thin adapter. Parse options, load settings, call one pipeline function, print the outcome.

Heavy modules (premailer, sendgrid, aiosmtpd) are imported inside the commands that need them, so
`digest list` and `digest --help` start fast.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from . import __version__
from .errors import DigestError

F = TypeVar("F", bound=Callable[..., Any])

EXIT_CODES = """\b
Exit codes: 0 done (or nothing to do), 1 error, 2 usage error, 3 empty selection,
4 partial failure (some recipients failed or unknown), 5 locked (another run), 6 check failed."""


class DigestGroup(click.Group):
    """Translate the one error family once: a message, the error's exit code, no traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DigestError as exc:
            code = exc.exit_code
            label = "Nothing to do" if code == 3 else "Error"
            click.echo(f"{label}: {exc}", err=True)
            ctx.exit(code)
        except KeyboardInterrupt:
            click.echo("Interrupted. Run the same command again to resume.", err=True)
            ctx.exit(130)


def _date(ctx: click.Context, param: click.Parameter, value: str | None) -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"'{value}' is not a date; use YYYY-MM-DD") from None


def selection_options(func: F) -> F:
    """The shared selection flags, spelled the same on every command that selects."""
    options = [
        click.option("--since", callback=_date, metavar="DATE", help="First posted date (inclusive), YYYY-MM-DD."),
        click.option("--until", callback=_date, metavar="DATE", help="Last posted date (inclusive), YYYY-MM-DD."),
        click.option("--month", metavar="YYYY-MM", help="A calendar month, e.g. 2020-01."),
        click.option(
            "--period",
            metavar="PERIOD",
            help="previous-month (the default), this-month or last-N-days, relative to today.",
        ),
        click.option("--today", callback=_date, metavar="DATE", help="Pin 'today' for reproducible runs."),
        click.option("--tz", metavar="ZONE", help="Time zone for today and the window (default: config timezone)."),
        click.option("--kind", "kinds", multiple=True, metavar="KIND", help="Only items of this kind (repeatable)."),
        click.option("--tag", "tags", multiple=True, metavar="TAG", help="Only items with this tag (repeatable)."),
        click.option("--limit", type=click.IntRange(min=1), help="At most this many posted items (newest first)."),
        click.option("--upcoming-days", type=click.IntRange(min=0), help="Days after the window for upcoming events."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _selection(kw: dict[str, Any]) -> Any:
    from .selection import SelectionOptions

    return SelectionOptions(
        since=kw.pop("since"),
        until=kw.pop("until"),
        month=kw.pop("month"),
        period=kw.pop("period"),
        today=kw.pop("today"),
        tz=kw.pop("tz"),
        kinds=tuple(kw.pop("kinds")),
        tags=tuple(kw.pop("tags")),
        limit=kw.pop("limit"),
        upcoming_days=kw.pop("upcoming_days"),
    )


def _settings(ctx: click.Context, **overrides: Any) -> Any:
    from .config import load_settings

    return load_settings(ctx.obj.get("config"), overrides=overrides)


def _warn(warnings: Any) -> None:
    for warning in warnings:
        click.echo(f"Warning: {warning}", err=True)


@click.group(cls=DigestGroup, epilog=EXIT_CODES)
@click.version_option(__version__, prog_name="digest")
@click.option(
    "--config",
    "config",
    type=click.Path(dir_okay=False),
    envvar="DIGEST_CONFIG",
    help="Path to digest.toml (default: ./digest.toml).",
)
@click.pass_context
def main(ctx: click.Context, config: str | None) -> None:
    """Turn a folder of dated content into an email digest, preview it, and send it exactly once.

    \b
    Example:
      digest list --month 2020-01
      digest preview --month 2020-01
      digest send --period previous-month --recipients members.csv --yes
    """
    ctx.ensure_object(dict)
    ctx.obj["config"] = config


@main.command()
@click.argument("folder", type=click.Path(file_okay=False), default=".")
def init(folder: str) -> None:
    """Scaffold a new newsletter in FOLDER: digest.toml, one example item, the templates.

    Refuses to overwrite anything that exists.

    \b
    Example:
      digest init my-newsletter && cd my-newsletter && digest list --since 2020-01-01
    """
    from .scaffold import init_newsletter

    created = init_newsletter(Path(folder))
    for path in created:
        click.echo(f"created {path}")
    click.echo(f"New newsletter in {folder}. Next: edit {Path(folder) / 'digest.toml'}, then 'digest preview'.")


@main.command("list")
@selection_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_context
def list_cmd(ctx: click.Context, as_json: bool, **kw: Any) -> None:
    """List the items a digest would hold, and why each was selected.

    \b
    Example:
      digest list --month 2020-01
      digest list --since 2012-01-01 --json
    """
    from . import pipeline

    opts = _selection(kw)
    settings = _settings(ctx)
    chosen = pipeline.choose(settings, opts)
    _warn(chosen.warnings)
    if as_json:
        click.echo(json.dumps(pipeline.selection_json(chosen.selection), indent=2, ensure_ascii=False))
        return
    for line in pipeline.selection_table(chosen.selection):
        click.echo(line)


@main.command()
@selection_options
@click.option("--out", type=click.Path(file_okay=False), help="Build folder (default: config build_dir).")
@click.pass_context
def build(ctx: click.Context, out: str | None, **kw: Any) -> None:
    """Render the digest into a build folder: email.html/.txt/.eml/.mjml, preview.html, manifest.json.

    The folder is what a later 'digest send --from-build DIR' sends: render once, send many.

    \b
    Example:
      digest build --month 2020-01 --out build/2020-01
    """
    from . import pipeline

    settings = _settings(ctx)
    outcome = pipeline.build(settings, _selection(kw), Path(out) if out else None)
    _warn(outcome.warnings)
    click.echo(pipeline.build_summary(outcome))


@main.command()
@selection_options
@click.option("--out", type=click.Path(file_okay=False), help="Build folder (default: config build_dir).")
@click.option("--open/--no-open", "open_", default=True, help="Open the preview in a browser (default: open).")
@click.pass_context
def preview(ctx: click.Context, out: str | None, open_: bool, **kw: Any) -> None:
    """Build the digest and open preview.html: desktop, mobile and text side by side.

    \b
    Example:
      digest preview --month 2020-01
      digest preview --since 2012-01-01 --no-open
    """
    from . import pipeline
    from .preview import open_in_browser

    settings = _settings(ctx)
    outcome = pipeline.build(settings, _selection(kw), Path(out) if out else None)
    _warn(outcome.warnings)
    click.echo(pipeline.build_summary(outcome))
    page = outcome.build.folder / "preview.html"
    if open_ and open_in_browser(page):
        click.echo(f"Opened {page} in your browser.")
    else:
        click.echo(f"Preview: {page}")


@main.command()
@selection_options
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="Port on 127.0.0.1.")
@click.option("--out", type=click.Path(file_okay=False), help="Build folder (default: config build_dir).")
@click.pass_context
def serve(ctx: click.Context, port: int, out: str | None, **kw: Any) -> None:
    """Serve the preview on 127.0.0.1 and reload it when content, templates or config change.

    \b
    Example:
      digest serve --month 2020-01 --port 8000
    """
    from . import pipeline

    settings = _settings(ctx)
    pipeline.serve(
        settings,
        _selection(kw),
        Path(out) if out else None,
        port=port,
        on_ready=lambda url: click.echo(f"Serving the preview at {url} (Ctrl+C to stop)"),
        on_rebuild=lambda msg: click.echo(msg, err=True),
    )


@main.command()
@selection_options
@click.option("--from-build", type=click.Path(file_okay=False, exists=True), help="Check a folder built earlier.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for CI.")
@click.option("--no-spamassassin", is_flag=True, help="Skip the SpamAssassin score even when installed.")
@click.pass_context
def check(ctx: click.Context, from_build: str | None, as_json: bool, no_spamassassin: bool, **kw: Any) -> None:
    """Build the digest and run the quality checks: size, styles, MIME, headers, accessibility, spam score.

    Exits 6 when any check fails.

    \b
    Example:
      digest check --month 2020-01
      digest check --since 2012-01-01 --json
    """
    from . import pipeline

    settings = _settings(ctx)
    outcome = pipeline.check(
        settings, _selection(kw), Path(from_build) if from_build else None, spamassassin=not no_spamassassin
    )
    if as_json:
        click.echo(json.dumps(outcome.to_dict(), indent=2))
    else:
        for line in outcome.lines():
            click.echo(line)
        click.echo(outcome.summary())
    if outcome.failed:
        ctx.exit(6)
