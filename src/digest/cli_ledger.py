"""The ledger's commands: reconcile, suppressions, ledger vacuum/export/import/migrate."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .cli_options import settings_of


@click.command()
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

    counts = pipeline.reconcile(settings_of(ctx), Path(events_file))
    if as_json:
        click.echo(json.dumps(counts, indent=2))
        return
    click.echo(
        f"{counts['received']:,} events read, {counts['stored']:,} new ({counts['duplicates']:,} already known, "
        f"{counts['ignored']:,} for editions this ledger does not know); settled {counts['settled_sent']:,} sent, "
        f"{counts['settled_failed']:,} failed, {counts['settled_resend']:,} to send again; "
        f"{counts['suppressed']:,} added to the suppression list."
    )


@click.group(invoke_without_command=True)
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

    entries = listing.entries(settings_of(ctx))
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

    added = listing.add(settings_of(ctx), address, reason)
    click.echo(f"{address}: {'added to' if added else 'already on'} the suppression list.")


@suppressions.command("remove")
@click.argument("address")
@click.option("--reason", required=True, help="Why, kept on record.")
@click.option("--yes", is_flag=True, help="Confirm removing a spam complaint.")
@click.pass_context
def suppressions_remove(ctx: click.Context, /, address: str, reason: str, yes: bool) -> None:
    """Take ADDRESS off the suppression list (a spam complaint also needs --yes)."""
    from . import suppressions as listing

    entry = listing.remove(settings_of(ctx), address, reason, yes=yes)
    click.echo(f"{entry.email}: removed from the suppression list (it was: {entry.reason}).")


@click.group("ledger")
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

    settings = settings_of(ctx)
    path = settings.ledger_location()
    before, after = lookup.vacuum(path)
    click.echo(f"Vacuumed {path}: {before / 1e6:,.1f} MB -> {after / 1e6:,.1f} MB.")


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

    settings = settings_of(ctx)
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

    settings = settings_of(ctx)
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

    settings = settings_of(ctx)
    counts = lookup.migrate(settings.ledger_location(), target)
    click.echo(f"Copied {_records(counts)}. Point ledger_path or DIGEST_LEDGER_URL at the new ledger.")


def _records(counts: dict[str, int]) -> str:
    plural = {"batch": "batches", "address": "addresses"}
    return ", ".join(f"{n:,} {kind if n == 1 else plural.get(kind, kind + 's')}" for kind, n in counts.items())
