"""Command line: a thin adapter. Parse options, load settings, call one pipeline function, print the outcome.

Heavy modules (premailer, sendgrid, aiosmtpd) are imported inside the commands that need them, so
`digest list` and `digest --help` start fast.
"""

from __future__ import annotations

from typing import Any

import click

from . import __version__
from .cli_build import build, check, import_cmd, init, list_cmd, preview, serve
from .cli_ledger import ledger_group, reconcile, suppressions
from .cli_send import history, retry, send, status
from .cli_site import archive, unsubscribe_server
from .errors import DigestError

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


for _command in (
    init,
    list_cmd,
    import_cmd,
    build,
    preview,
    serve,
    check,
    send,
    retry,
    history,
    status,
    reconcile,
    suppressions,
    ledger_group,
    archive,
    unsubscribe_server,
):
    main.add_command(_command)
