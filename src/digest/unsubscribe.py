"""Unsubscribe: the RFC 8058 one-click WSGI endpoint (which also mounts SendGrid's Event Webhook) and its server.

The endpoint (`make_app`) answers `POST <unsubscribe path>?token=...` at once with 200 and no redirect
(RFC 8058), and shows a one-button page for GET, so link scanners that prefetch URLs cannot
unsubscribe anyone. Every page is tiny, self-contained and reveals nothing about the token.
"""

from __future__ import annotations

import html
import logging
import os
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlencode

from .config import Settings, load_settings
from .errors import BadToken, ConfigError, DigestError
from .unsubscribe_links import unsubscribe_path
from .unsubscribe_tokens import (
    MAKE_SECRET,
    MIN_SECRET_BYTES,
    OLD_SECRETS_VAR,
    SECRET_VAR,
    old_secrets_from_env,
    secret_from_env,
    verify_token,
)
from .webhook import PATH as WEBHOOK_PATH

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer
    from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

# The server side (wsgiref, the email parser, the suppression file) is imported where it is used: a build
# imports this module through pipeline.py.

log = logging.getLogger(__name__)

_MAX_BODY = 64 * 1024  # a one-click body is 26 bytes; anything huge is not a mail client

_PAGE = """<!doctype html>
<html lang="{lang}" dir="{dir}">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex"><title>{title}</title>
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem;color:#222}}
button{{font:inherit;padding:.6rem 1.2rem;border:0;border-radius:4px;background:#1d4f91;color:#fff}}</style>
</head>
<body>
<h1>{title}</h1>
{body}
</body>
</html>
"""

_SECURITY_HEADERS = [
    ("Cache-Control", "no-store"),
    # The token is in the URL: never let it leak to another site through the Referer header.
    ("Referrer-Policy", "no-referrer"),
    ("X-Content-Type-Options", "nosniff"),
    ("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'"),
]


def _page(settings: Settings, title: str, body: str) -> bytes:
    return _PAGE.format(
        lang=html.escape(settings.language, quote=True),
        dir=html.escape(settings.direction, quote=True),
        title=html.escape(title),
        body=body,
    ).encode("utf-8")


def make_app(
    settings: Settings,
    secret: bytes,
    suppression_path: Path,
    *,
    old_secrets: Sequence[bytes] = (),
    webhook_key: Any | None = None,
) -> WSGIApplication:
    """The one-click unsubscribe endpoint for one list (settings.slug), recording to `suppression_path`.

    Tokens signed with `secret` or with any of `old_secrets` (the secrets of earlier sends, after a
    rotation) are accepted. With `webhook_key` (webhook.key_from_env), the same application answers
    SendGrid's signed Event Webhook on /webhooks/sendgrid, into settings.ledger_path."""
    if len(secret) < MIN_SECRET_BYTES:
        raise ConfigError(f"environment: {SECRET_VAR} is too short; make one with `{MAKE_SECRET}`")
    if any(len(old) < MIN_SECRET_BYTES for old in old_secrets):
        raise ConfigError(f"environment: a secret in {OLD_SECRETS_VAR} is shorter than {MIN_SECRET_BYTES} bytes")
    keys = (secret, *old_secrets)  # keys[n] is old secret number n, as the log says
    paths = {unsubscribe_path(settings), "/unsubscribe"}
    name = html.escape(settings.name)

    def respond(
        start_response: StartResponse, status: str, body: bytes, method: str, extra: list[tuple[str, str]] | None = None
    ) -> list[bytes]:
        headers = [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(body)))]
        start_response(status, headers + _SECURITY_HEADERS + (extra or []))
        return [] if method == "HEAD" else [body]

    def invalid(start_response: StartResponse, method: str) -> list[bytes]:
        # One answer for every failure: a prober learns nothing about which part of a token was wrong.
        body = _page(settings, "This link is not valid", "<p>This unsubscribe link is not valid.</p>")
        return respond(start_response, "400 Bad Request", body, method)

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        method = str(environ.get("REQUEST_METHOD", "GET")).upper()
        path = str(environ.get("PATH_INFO", "")) or "/"
        if path == WEBHOOK_PATH and webhook_key is not None:
            from .webhook import handle

            return handle(environ, start_response, key=webhook_key, ledger_path=settings.path(settings.ledger_path))
        if path == "/healthz" and method in {"GET", "HEAD"}:
            start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", "3")])
            return [] if method == "HEAD" else [b"ok\n"]
        if path not in paths:
            body = _page(settings, "Not found", "<p>There is nothing here.</p>")
            return respond(start_response, "404 Not Found", body, method)
        if method not in {"GET", "HEAD", "POST"}:
            body = _page(settings, "Method not allowed", "<p>Use the link from your email.</p>")
            return respond(start_response, "405 Method Not Allowed", body, method, [("Allow", "GET, HEAD, POST")])
        query = parse_qs(str(environ.get("QUERY_STRING", "")))
        form = _read_form(environ) if method == "POST" else {}
        token = (query.get("token") or form.get("token") or [""])[0]
        try:
            address, list_id = _verify(token, keys)
        except BadToken:
            log.info("unsubscribe: rejected an invalid token (%s %s)", method, path)
            return invalid(start_response, method)
        if list_id != settings.slug:
            log.info("unsubscribe: rejected a token of another list (%s)", list_id)
            return invalid(start_response, method)
        if method in {"GET", "HEAD"}:
            # GET never unsubscribes: mail scanners and link previews fetch every URL in a message.
            # A query-only action posts back to this very URL, whatever prefix a proxy mounted us under.
            action = html.escape("?" + urlencode({"token": token}), quote=True)
            body = _page(
                settings,
                f"Unsubscribe from {settings.name}",
                f'<form method="post" action="{action}">'
                f'<input type="hidden" name="token" value="{html.escape(token, quote=True)}">'
                f'<input type="hidden" name="List-Unsubscribe" value="One-Click">'
                f"<p>Stop receiving {name} by email?</p>"
                f'<p><button type="submit">Unsubscribe</button></p></form>',
            )
            return respond(start_response, "200 OK", body, method)
        from .suppressions import add_to_file

        try:
            added = add_to_file(suppression_path, address)
        except (OSError, ValueError, DigestError):
            log.exception("unsubscribe: could not record an unsubscribe in %s", suppression_path)
            body = _page(settings, "Please try again", "<p>We could not record your request. Try again later.</p>")
            return respond(start_response, "503 Service Unavailable", body, method, [("Retry-After", "60")])
        log.info("unsubscribe: %s from %s (%s)", address, list_id, "added" if added else "already suppressed")
        body = _page(settings, "You are unsubscribed", f"<p>You will receive no more {name} emails.</p>")
        return respond(start_response, "200 OK", body, method)

    return app


def _verify(token: str, keys: Sequence[bytes]) -> tuple[str, str]:
    """verify_token with the current secret, then each old one (keys[1:]); BadToken if none signed it."""
    for number, key in enumerate(keys):
        try:
            found = verify_token(token, key)
        except BadToken:
            continue
        if number:
            log.info("unsubscribe: accepted a link signed with old secret number %d in %s", number, OLD_SECRETS_VAR)
        return found
    raise BadToken("this unsubscribe link is not valid; use the link from a recent email")


def _read_form(environ: WSGIEnvironment) -> dict[str, list[str]]:
    """Fields of a POST body, urlencoded or multipart (RFC 8058 allows both); {} for anything else."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length <= 0:
        return {}
    body: bytes = environ["wsgi.input"].read(min(length, _MAX_BODY))
    ctype = str(environ.get("CONTENT_TYPE", ""))
    kind = ctype.split(";", 1)[0].strip().lower()
    if kind == "application/x-www-form-urlencoded":
        return parse_qs(body.decode("latin-1"))
    if kind == "multipart/form-data":
        # The email parser reads MIME multipart bodies; the cgi module that used to do this is gone in 3.13.
        import email.parser
        import email.policy

        raw = b"Content-Type: " + ctype.encode("latin-1") + b"\r\n\r\n" + body
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(raw)
        fields: dict[str, list[str]] = {}
        if message.is_multipart():
            for part in message.iter_parts():
                field = part.get_param("name", header="content-disposition")
                payload = part.get_payload(decode=True)
                if isinstance(field, str) and isinstance(payload, bytes):
                    fields.setdefault(field, []).append(payload.decode("utf-8", errors="replace"))
        return fields
    return {}


def make_wsgi_server(app: WSGIApplication, host: str = "127.0.0.1", port: int = 8025) -> WSGIServer:
    """A wsgiref server for `app` that keeps tokens out of its request log (port 0 picks a free one)."""
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    class QuietHandler(WSGIRequestHandler):
        """wsgiref logs the full request line to stderr, token included; log method and path only."""

        def log_message(self, format: str, *args: object) -> None:
            return

        def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
            path = self.path.split("?", 1)[0]
            log.info("%s %s %s", self.command, path, code)

    return make_server(host, port, app, handler_class=QuietHandler)


def server_url(server: WSGIServer) -> str:
    raw_host, port = server.server_address[:2]
    host = raw_host.decode() if isinstance(raw_host, bytes) else str(raw_host)
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def serve(
    app: WSGIApplication,
    host: str = "127.0.0.1",
    port: int = 8025,
    *,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Run `app` on wsgiref until interrupted (Ctrl+C), for `digest unsubscribe-server`.
    `on_ready` gets the bound URL.

    wsgiref handles one request at a time, which is plenty for unsubscribes; behind a public https
    name, prefer a real WSGI server (see docs/CHECKS.md).
    """
    server = make_wsgi_server(app, host, port)
    # Requests are served on a worker thread: wsgiref's handler swallows any exception raised while
    # it handles a request (KeyboardInterrupt included), so Ctrl+C landing mid-request would be lost.
    # Signals always reach the main thread, which here only waits.
    worker = threading.Thread(target=server.serve_forever, name="unsubscribe-server", daemon=True)
    worker.start()
    try:
        if on_ready:
            on_ready(server_url(server))
        while worker.is_alive():
            worker.join(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
        worker.join()
        server.server_close()


def app_from_env(env: Mapping[str, str] | None = None) -> WSGIApplication:
    """The app for any WSGI server: settings from DIGEST_CONFIG (or ./digest.toml), the secret from
    DIGEST_UNSUBSCRIBE_SECRET (and earlier ones from DIGEST_UNSUBSCRIBE_OLD_SECRETS), suppressions into
    settings.suppression_file; with DIGEST_SENDGRID_WEBHOOK_KEY, also SendGrid's events on /webhooks/sendgrid.
    Example: gunicorn 'digest.unsubscribe:app_from_env()'"""
    from .webhook import key_from_env

    env = os.environ if env is None else env
    settings = load_settings(env=env)
    secret = secret_from_env(env, required=True)
    old = old_secrets_from_env(env)
    key = key_from_env(env)
    return make_app(settings, secret, settings.path(settings.suppression_file), old_secrets=old, webhook_key=key)
