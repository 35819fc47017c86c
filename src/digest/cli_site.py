"""Commands for what readers reach on the web: archive, unsubscribe-server."""

from __future__ import annotations

from pathlib import Path

import click

from .cli_options import settings_of, warn


@click.command()
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

    outcome = write_archive(settings_of(ctx), Path(out) if out else None, include_unsent=include_unsent)
    warn(outcome.warnings)
    click.echo(outcome.summary())


@click.command("unsubscribe-server")
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

    settings = settings_of(ctx)
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
