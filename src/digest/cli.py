"""Command line: a thin adapter. Parse options, load settings, call one pipeline function, print the outcome.

Heavy modules (premailer, sendgrid, aiosmtpd) are imported inside the commands that need them, so
`digest list` and `digest --help` start fast.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from . import __version__
from .deliver import BACKENDS
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
            label = "Nothing to do" if code in (0, 3) else "Error"
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
@click.option("-v", "--verbose", count=True, help="Also show debug details (caches, retries).")
@click.option("-q", "--quiet", count=True, help="Hide notices: warnings and errors only (-qq: errors only).")
@click.pass_context
def main(ctx: click.Context, config: str | None, verbose: int, quiet: int) -> None:
    """Turn a folder of dated content into an email digest, preview it, and send it exactly once.

    \b
    Example:
      digest list --month 2020-01
      digest preview --month 2020-01
      digest send --period previous-month --recipients members.csv --yes
    """
    from .logs import configure

    configure(verbose - quiet)
    ctx.ensure_object(dict)
    ctx.obj["config"] = config


@main.command()
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


@main.command("list")
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

    chosen = choose(_settings(ctx), _selection(kw))
    _warn(chosen.warnings)
    if as_json:
        click.echo(json.dumps(selection_json(chosen.selection), indent=2, ensure_ascii=False))
        return
    for line in selection_table(chosen.selection):
        click.echo(line)


@main.command("import")
@click.argument("sources", nargs=-1, metavar="[SOURCE]...")
@click.option("--dry-run", is_flag=True, help="Show what would be written; write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON per feed: new, updated, unchanged, skipped, kept.")
@click.option("--today", callback=_date, metavar="DATE", help="Pin 'today' (recurring events, undated events).")
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

    settings = _settings(ctx)
    report = importer.import_feeds(settings, sources, dry_run=dry_run, today=today, timeout=timeout)
    if as_json:
        click.echo(json.dumps(import_json(report), indent=2, ensure_ascii=False))
    else:
        for line in import_lines(report):
            click.echo(line)
    if report.failed:
        raise importer.failure(report)


@main.command()
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

    outcome = build_edition(_settings(ctx), _selection(kw), Path(out) if out else None)
    _warn(outcome.warnings)
    click.echo(build_summary(outcome))


@main.command()
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

    outcome = build_edition(_settings(ctx), _selection(kw), Path(out) if out else None)
    _warn(outcome.warnings)
    click.echo(build_summary(outcome))
    page = outcome.build.folder / "preview.html"
    if open_ and open_in_browser(page):
        click.echo(f"Opened {page} in your browser.")
    else:
        click.echo(f"Preview: {page}")


@main.command()
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

    settings = _settings(ctx)
    if archive:
        from .serve import serve_folder

        folder = Path(out) if out else settings.path(settings.archive_dir)
        serve_folder(folder, port=port, on_ready=lambda url: click.echo(f"Serving {folder} at {url} (Ctrl+C to stop)"))
        return
    serve_preview(
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
        _settings(ctx), _selection(kw), Path(from_build) if from_build else None, spamassassin=not no_spamassassin
    )
    if as_json:
        click.echo(json.dumps(check_json(outcome), indent=2))
    else:
        for line in check_lines(outcome):
            click.echo(line)
    if outcome.failed:
        ctx.exit(6)


def _hooks(yes: bool, quiet_progress: bool = False) -> Any:
    from collections.abc import Iterator
    from contextlib import contextmanager

    from .pipeline import SendHooks

    def notice(message: str) -> None:
        click.echo(message, err=True)

    def confirm(plan: Any) -> bool:
        click.echo(plan.summary())
        if yes:
            return True
        if not sys.stdin.isatty():
            click.echo("No terminal to confirm on: add --yes for unattended runs (cron, CI).", err=True)
            return False
        return click.confirm("Send now?", default=False)

    class _Silent:
        def update(self, n: int) -> None:
            pass

    @contextmanager
    def progress(total: int) -> Iterator[Any]:
        # A bar only where someone watches a long send; cron logs get the closing line only.
        if quiet_progress or total < 200 or not sys.stderr.isatty():
            yield _Silent()
            return
        with click.progressbar(length=total, label="Sending", file=sys.stderr) as bar:
            yield bar

    return SendHooks(notice=notice, confirm=confirm, progress=progress)


def _finish_send(ctx: click.Context, report: Any, report_path: str | None, recipients: str | None = None) -> None:
    from .cli_output import row_problem_lines, write_report

    if report is None:
        return
    if report_path:
        write_report(Path(report_path), report)
        click.echo(f"Report: {report_path}", err=True)
    shown = Path(recipients) if recipients else None
    for line in row_problem_lines(report, shown, Path(report_path) if report_path else None):
        click.echo(line, err=True)
    click.echo(report.message)
    if report.exit_code:
        ctx.exit(report.exit_code)


def delivery_options(func: F) -> F:
    options = [
        click.option("--backend", type=click.Choice(BACKENDS), help="Default: config backend."),
        click.option("--yes", is_flag=True, help="Do not ask for confirmation (cron, CI)."),
        click.option("--report", "report_path", type=click.Path(dir_okay=False), help="Write a JSON report here."),
        click.option("--resend-unknown", is_flag=True, help="Send again to recipients whose outcome is unknown."),
        click.option("--mark-unknown-sent", is_flag=True, help="Count recipients whose outcome is unknown as sent."),
        click.option("--skip-checks", is_flag=True, help="Send even if a quality check fails."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _unknown_policy(resend: bool, mark: bool) -> str:
    if resend and mark:
        raise click.UsageError("--resend-unknown and --mark-unknown-sent cannot be combined; choose one")
    return "resend" if resend else "mark-sent" if mark else "stop"


@main.command()
@selection_options
@click.option("--recipients", type=click.Path(dir_okay=False), help="CSV with an 'email' column (and 'name').")
@click.option("--to", "to", multiple=True, metavar="ADDR", help="A test send to ADDR (repeatable): '[TEST]' subject.")
@click.option("--from-build", type=click.Path(file_okay=False), help="Send a folder built earlier by digest build.")
@delivery_options
@click.option("--dry-run", is_flag=True, help="Show what would be sent; send nothing.")
@click.option("--if-new", is_flag=True, help="Skip the run when nothing is new since the last edition sent.")
@click.option("--allow-changed", is_flag=True, help="Send changed content of an edition already partly sent.")
@click.option("--no-spamassassin", is_flag=True, help="Skip the SpamAssassin check before sending.")
@click.option("--worker", is_flag=True, help="One of several runs sending this edition together (PostgreSQL ledger).")
@click.pass_context
def send(
    ctx: click.Context,
    /,
    recipients: str | None,
    to: tuple[str, ...],
    from_build: str | None,
    backend: str | None,
    yes: bool,
    report_path: str | None,
    resend_unknown: bool,
    mark_unknown_sent: bool,
    skip_checks: bool,
    dry_run: bool,
    if_new: bool,
    allow_changed: bool,
    no_spamassassin: bool,
    worker: bool,
    **kw: Any,
) -> None:
    """Send the digest: a test send (--to), or the edition to a list, exactly once per recipient.

    A send to a list shows the count and the backend and asks first (--yes skips the question).
    Every send is recorded in the ledger: re-running sends only to those not yet sent.

    \b
    Example:
      digest send --month 2020-01 --to me@example.org
      digest send --period previous-month --recipients members.csv --yes
      digest send --from-build build/x --recipients members.csv --backend sendgrid --dry-run
    """
    from . import pipeline

    settings = _settings(ctx)
    request = pipeline.SendRequest(
        opts=_selection(kw),
        from_build=Path(from_build) if from_build else None,
        recipients=Path(recipients) if recipients else None,
        to=to,
        backend=backend,
        dry_run=dry_run,
        unknown=_unknown_policy(resend_unknown, mark_unknown_sent),
        allow_changed=allow_changed,
        if_new=if_new,
        skip_checks=skip_checks,
        spamassassin=not no_spamassassin,
        worker=worker,
    )
    _finish_send(ctx, pipeline.send_edition(settings, request, _hooks(yes)), report_path, recipients)


@main.command()
@click.argument("edition", required=False)
@click.option("--from-build", type=click.Path(file_okay=False), help="The edition's build folder (default: as sent).")
@delivery_options
@click.pass_context
def retry(
    ctx: click.Context,
    /,
    edition: str | None,
    from_build: str | None,
    backend: str | None,
    yes: bool,
    report_path: str | None,
    resend_unknown: bool,
    mark_unknown_sent: bool,
    skip_checks: bool,
) -> None:
    """Send an edition again to its recipients whose send failed (the latest edition by default).

    \b
    Example:
      digest retry
      digest retry mayors-innovation-2020-01 --backend sendgrid --yes
    """
    from . import pipeline
    from .selection import SelectionOptions

    settings = _settings(ctx)
    request = pipeline.SendRequest(
        opts=SelectionOptions(),
        from_build=Path(from_build) if from_build else None,
        backend=backend,
        unknown=_unknown_policy(resend_unknown, mark_unknown_sent),
        skip_checks=skip_checks,
        retry_edition=edition or pipeline.latest_edition(settings),
    )
    _finish_send(ctx, pipeline.send_edition(settings, request, _hooks(yes)), report_path)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_context
def history(ctx: click.Context, /, as_json: bool) -> None:
    """List the editions sent, newest first: period, date and recipients per state.

    \b
    Example:
      digest history
    """
    from . import pipeline

    editions = pipeline.history(_settings(ctx))
    if as_json:
        click.echo(json.dumps([e.to_dict() for e in editions], indent=2))
        return
    if not editions:
        click.echo("No editions sent yet.")
        return
    click.echo(
        f"{'EDITION':<40} {'PERIOD':<24} {'STARTED':<20} {'SENT':>7} {'FAILED':>7} {'UNKNOWN':>7} {'PENDING':>7}"
    )
    for e in editions:
        c = e.counts
        click.echo(
            f"{e.edition:<40} {e.period:<24} {e.created_at[:19]:<20} {c.get('sent', 0):>7} "
            f"{c.get('failed', 0):>7} {c.get('unknown', 0):>7} {c.get('pending', 0):>7}"
        )


@main.command()
@click.argument("edition", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON: counts per state under their names.")
@click.pass_context
def status(ctx: click.Context, /, edition: str | None, as_json: bool) -> None:
    """Show an edition's recipients per state, its failures and unknowns (the latest edition by default).

    \b
    Example:
      digest status
      digest status mayors-innovation-2020-01 --json
    """
    from . import pipeline
    from .errors import NothingSentYet

    try:
        data = pipeline.status(_settings(ctx), edition)
    except NothingSentYet:
        # The same answer and exit code as digest history: nothing sent is a state, not a failure.
        click.echo("{}" if as_json else "No editions sent yet.")
        return
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    counts = data.get("counts", {})
    click.echo(f"{data['edition']} ({data['subject']})")
    click.echo("  " + ", ".join(f"{state} {n:,}" for state, n in counts.items()))
    for batch in data.get("unknown_batches", []):
        click.echo(
            f"  unknown: batch {batch['id']} ({batch['size']} recipients via {batch['backend']}"
            f"{', provider id ' + batch['provider_id'] if batch['provider_id'] else ''}): {batch['error']}"
        )
    for failure in data.get("failures", []):
        click.echo(f"  failed: {failure['email']}: {failure['error']}")
    ev = data.get("evidence", {})
    if any(ev.values()):
        click.echo(
            f"  settled by evidence: {ev['settled_sent']:,} sent, {ev['settled_failed']:,} failed, "
            f"{ev['settled_resend']:,} never accepted (sent again); still open: {counts.get('unknown', 0):,}; "
            f"bounces {ev['bounces']:,}, spam complaints {ev['complaints']:,}"
        )
    if counts.get("unknown"):
        click.echo(
            "Settle the unknown ones with SendGrid's events (the webhook, or digest reconcile --events FILE), "
            "or decide: digest send ... --mark-unknown-sent, or --resend-unknown."
        )
    elif counts.get("failed"):
        click.echo(f"Send the failed ones again: digest retry {data['edition']}")


@main.command()
@click.option(
    "--events",
    "events_file",
    required=True,
    type=click.Path(dir_okay=False, exists=True),
    help="SendGrid events: the JSON array the webhook posts, or one event per line.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON.")
@click.pass_context
def reconcile(ctx: click.Context, /, events_file: str, as_json: bool) -> None:
    """Apply a file of SendGrid events to the ledger, as the webhook does (for exported events).

    Unknown outcomes are settled by the events of their batch, bounces and complaints join the
    suppression list; applying the same file twice changes nothing.

    \b
    Example:
      digest reconcile --events events.json
    """
    from . import pipeline

    counts = pipeline.reconcile(_settings(ctx), Path(events_file))
    if as_json:
        click.echo(json.dumps(counts, indent=2))
        return
    click.echo(
        f"{counts['received']:,} events read, {counts['stored']:,} new ({counts['duplicates']:,} already known, "
        f"{counts['ignored']:,} for editions this ledger does not know); settled {counts['settled_sent']:,} sent, "
        f"{counts['settled_failed']:,} failed, {counts['settled_resend']:,} to send again; "
        f"{counts['suppressed']:,} added to the suppression list."
    )


@main.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_context
def suppressions(ctx: click.Context, /, as_json: bool) -> None:
    """List the addresses no send reaches: bounces, complaints, unsubscribes (reason and date).

    \b
    Example:
      digest suppressions
      digest suppressions add ann@example.org --reason "asked by phone"
      digest suppressions remove ann@example.org --reason "re-subscribed on the website"
    """
    if ctx.invoked_subcommand is not None:
        return
    from . import suppressions as listing

    entries = listing.entries(_settings(ctx))
    if as_json:
        click.echo(json.dumps([e.to_dict() for e in entries], indent=2))
        return
    for e in entries:
        click.echo(f"{e.email:<40} {e.created_at[:10]:<10} {e.source:<6} {e.reason}")
    click.echo(f"{len(entries):,} suppressed address{'es' if len(entries) != 1 else ''}.")


@suppressions.command("add")
@click.argument("address")
@click.option("--reason", required=True, help="Why, kept with the entry.")
@click.pass_context
def suppressions_add(ctx: click.Context, /, address: str, reason: str) -> None:
    """Add ADDRESS to the suppression list: no later send reaches it."""
    from . import suppressions as listing

    added = listing.add(_settings(ctx), address, reason)
    click.echo(f"{address}: {'added to' if added else 'already on'} the suppression list.")


@suppressions.command("remove")
@click.argument("address")
@click.option("--reason", required=True, help="Why, kept on record.")
@click.option("--yes", is_flag=True, help="Confirm removing a spam complaint.")
@click.pass_context
def suppressions_remove(ctx: click.Context, /, address: str, reason: str, yes: bool) -> None:
    """Take ADDRESS off the suppression list (a spam complaint also needs --yes)."""
    from . import suppressions as listing

    entry = listing.remove(_settings(ctx), address, reason, yes=yes)
    click.echo(f"{entry.email}: removed from the suppression list (it was: {entry.reason}).")


@main.group("ledger")
def ledger_group() -> None:
    """Look after the ledger, the file that records every send.

    \b
    Example:
      digest ledger vacuum
    """


@ledger_group.command()
@click.pass_context
def vacuum(ctx: click.Context, /) -> None:
    """Give the ledger's free space back to the disk; prints its size before and after. Run it between sends.

    \b
    Example:
      digest ledger vacuum
    """
    from .ledger import lookup

    settings = _settings(ctx)
    path = settings.ledger_location()
    before, after = lookup.vacuum(path)
    click.echo(f"Vacuumed {path}: {before / 1e6:,.1f} MB -> {after / 1e6:,.1f} MB.")


@main.command()
@click.option("--out", type=click.Path(file_okay=False), help="Archive folder (default: config archive_dir).")
@click.option("--include-unsent", is_flag=True, help="Add the editions built but not sent yet (a preview).")
@click.pass_context
def archive(ctx: click.Context, /, out: str | None, include_unsent: bool) -> None:
    """Write the web archive: a page per edition sent (where "View in browser" points), index, feed, .ics files.

    Everything comes from the ledger, so deleting the build folder loses nothing. The same ledger gives
    the same bytes, and the folder is replaced whole: publish it with any static host.

    \b
    Example:
      digest archive
      digest archive --out public && digest serve --archive --out public
    """
    from .archive import write_archive

    outcome = write_archive(_settings(ctx), Path(out) if out else None, include_unsent=include_unsent)
    _warn(outcome.warnings)
    click.echo(outcome.summary())


@ledger_group.command("export")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@click.pass_context
def ledger_export(ctx: click.Context, /, file: str) -> None:
    """Write every record of the ledger to FILE (JSON lines; - for standard output).

    \b
    Example:
      digest ledger export ledger.jsonl
    """
    from .ledger import lookup

    settings = _settings(ctx)
    with click.open_file(file, "w", encoding="utf-8") as out:
        counts = lookup.export(settings.ledger_location(), out)
    click.echo(f"Exported {_records(counts)}.", err=file == "-")


@ledger_group.command("import")
@click.argument("file", type=click.Path(dir_okay=False, exists=True))
@click.pass_context
def ledger_import(ctx: click.Context, /, file: str) -> None:
    """Load a file written by 'digest ledger export' into the configured ledger, which must be new.

    \b
    Example:
      DIGEST_LEDGER_URL=postgresql://digest@db/news digest ledger import ledger.jsonl
    """
    from .ledger import lookup

    settings = _settings(ctx)
    counts = lookup.import_file(settings.ledger_location(), Path(file))
    click.echo(f"Imported {_records(counts)} into {settings.ledger_location()}.")


@ledger_group.command("migrate")
@click.option("--to", "target", required=True, metavar="PATH|URL", help="The new ledger: a SQLite file or a URL.")
@click.pass_context
def ledger_migrate(ctx: click.Context, /, target: str) -> None:
    """Copy the configured ledger into a new one (SQLite file <-> PostgreSQL), every row; then point
    ledger_path or DIGEST_LEDGER_URL at it.

    \b
    Example:
      digest ledger migrate --to postgresql://digest@db.example.org/news
    """
    from .ledger import lookup

    settings = _settings(ctx)
    counts = lookup.migrate(settings.ledger_location(), target)
    click.echo(f"Copied {_records(counts)}. Point ledger_path or DIGEST_LEDGER_URL at the new ledger.")


def _records(counts: dict[str, int]) -> str:
    plural = {"batch": "batches", "address": "addresses"}
    return ", ".join(f"{n:,} {kind if n == 1 else plural.get(kind, kind + 's')}" for kind, n in counts.items())


@main.command("unsubscribe-server")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8025, show_default=True, help="Port.")
@click.pass_context
def unsubscribe_server(ctx: click.Context, /, host: str, port: int) -> None:
    """Run the one-click unsubscribe endpoint (RFC 8058) that the unsubscribe links point at.

    Needs DIGEST_UNSUBSCRIBE_SECRET (the one the sends used). After rotating it, put the earlier
    secrets in DIGEST_UNSUBSCRIBE_OLD_SECRETS (comma-separated) so links already sent keep working.
    Unsubscribed addresses go to the suppression file, which every later send honours. With
    DIGEST_SENDGRID_WEBHOOK_KEY (SendGrid's verification key) it also receives SendGrid's signed
    events on /webhooks/sendgrid and applies them to the ledger. In
    production, run the WSGI application digest.unsubscribe:app_from_env() behind any WSGI server.

    \b
    Example:
      DIGEST_UNSUBSCRIBE_SECRET=... digest unsubscribe-server --port 8025
    """
    from .unsubscribe import make_app, serve
    from .unsubscribe_tokens import old_secrets_from_env, secret_from_env
    from .webhook import KEY_VAR, PATH, key_from_env

    settings = _settings(ctx)
    listed = settings.path(settings.suppression_file)
    key = key_from_env()
    app = make_app(
        settings, secret_from_env(required=True), listed, old_secrets=old_secrets_from_env(), webhook_key=key
    )

    def ready(url: str) -> None:
        click.echo(f"Unsubscribe endpoint at {url} -> {listed} (Ctrl+C to stop)")
        if key is None:
            click.echo(f"SendGrid events: off (set {KEY_VAR} to receive them on {PATH})")
        else:
            click.echo(f"SendGrid events: {url}{PATH} -> {settings.ledger_location()}")

    serve(app, host=host, port=port, on_ready=ready)
