"""The command line's shared pieces: the option sets spelled the same on every command, settings, warnings."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any, TypeVar

import click

from .deliver import BACKENDS

F = TypeVar("F", bound=Callable[..., Any])


def date_value(ctx: click.Context, param: click.Parameter, value: str | None) -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"'{value}' is not a date; use YYYY-MM-DD") from None


def selection_options(func: F) -> F:
    """The shared selection flags, spelled the same on every command that selects."""
    options = [
        click.option("--since", callback=date_value, metavar="DATE", help="First posted date (inclusive), YYYY-MM-DD."),
        click.option("--until", callback=date_value, metavar="DATE", help="Last posted date (inclusive), YYYY-MM-DD."),
        click.option("--month", metavar="YYYY-MM", help="A calendar month, e.g. 2020-01."),
        click.option(
            "--period",
            metavar="PERIOD",
            help="previous-month (the default), this-month or last-N-days, relative to today.",
        ),
        click.option("--today", callback=date_value, metavar="DATE", help="Pin 'today' for reproducible runs."),
        click.option("--tz", metavar="ZONE", help="Time zone for today and the window (default: config timezone)."),
        click.option("--kind", "kinds", multiple=True, metavar="KIND", help="Only items of this kind (repeatable)."),
        click.option("--tag", "tags", multiple=True, metavar="TAG", help="Only items with this tag (repeatable)."),
        click.option("--limit", type=click.IntRange(min=1), help="At most this many posted items (newest first)."),
        click.option("--upcoming-days", type=click.IntRange(min=0), help="Days after the window for upcoming events."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def selection_of(kw: dict[str, Any]) -> Any:
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


def settings_of(ctx: click.Context, **overrides: Any) -> Any:
    from .config import load_settings

    return load_settings(ctx.obj.get("config"), overrides=overrides)


def warn(warnings: Any) -> None:
    for warning in warnings:
        click.echo(f"Warning: {warning}", err=True)


def delivery_options(func: F) -> F:
    """The delivery flags, spelled the same on every command that sends."""
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
