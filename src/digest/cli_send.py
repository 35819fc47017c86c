"""Commands that send an edition and show what was sent: send, retry, history, status."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from .cli_options import delivery_options, selection_of, selection_options, settings_of


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


def _unknown_policy(resend: bool, mark: bool) -> str:
    if resend and mark:
        raise click.UsageError("--resend-unknown and --mark-unknown-sent cannot be combined; choose one")
    return "resend" if resend else "mark-sent" if mark else "stop"


@click.command()
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

    settings = settings_of(ctx)
    request = pipeline.SendRequest(
        opts=selection_of(kw),
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


@click.command()
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

    settings = settings_of(ctx)
    request = pipeline.SendRequest(
        opts=SelectionOptions(),
        from_build=Path(from_build) if from_build else None,
        backend=backend,
        unknown=_unknown_policy(resend_unknown, mark_unknown_sent),
        skip_checks=skip_checks,
        retry_edition=edition or pipeline.latest_edition(settings),
    )
    _finish_send(ctx, pipeline.send_edition(settings, request, _hooks(yes)), report_path)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_context
def history(ctx: click.Context, /, as_json: bool) -> None:
    """List the editions sent, newest first: period, date and recipients per state.

    \b
    Example:
      digest history
    """
    from . import pipeline

    editions = pipeline.history(settings_of(ctx))
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


@click.command()
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
        data = pipeline.status(settings_of(ctx), edition)
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
