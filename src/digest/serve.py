"""Preview server: serve the built preview on loopback, rebuild when a watched file changes, reload the page."""

from __future__ import annotations

import errno
import logging
import stat
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from html import escape
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from .errors import DigestError, ServeError

log = logging.getLogger(__name__)

POLL_SECONDS = 0.3

# Build-folder files worth looking at from the browser, with their types. A fixed list, so no
# request path ever reaches the file system.
FILES = {
    "email.html": "text/html; charset=utf-8",
    "email.txt": "text/plain; charset=utf-8",
    "email.mjml": "text/plain; charset=utf-8",
    "email.eml": "text/plain; charset=utf-8",  # shown, not downloaded
    "manifest.json": "application/json",
}

# Injected into the served page only; polling survives server restarts and holds no connection open per tab.
_RELOAD_SCRIPT = """<script>
(() => {
  const seen = %s;
  const poll = async () => {
    try {
      const answer = await fetch('/__version', {cache: 'no-store'});
      if ((await answer.text()).trim() !== seen) { location.reload(); return; }
    } catch (e) { /* server stopped or restarting: keep asking */ }
    setTimeout(poll, 400);
  };
  setTimeout(poll, 400);
})();
</script>"""


@dataclass
class _State:
    """What the server shows now; replaced as a whole under the lock after each build."""

    version: str
    page: str  # preview HTML, or the error page
    ok: bool
    files: dict[str, bytes] = field(default_factory=dict)
    folder: Path | None = None


class _Site:
    def __init__(self, build: Callable[[], Path]) -> None:
        self._build = build
        self._lock = threading.Lock()
        # The start time makes versions unique across restarts, so an open tab reloads after one.
        self._run = f"{time.time_ns():x}"
        self._count = 0
        self.state = _State(version=self._version(), page="", ok=False)

    def _version(self) -> str:
        self._count += 1
        return f"{self._run}-{self._count}"

    def rebuild(self) -> str:
        """Build once; on failure show the error in the page instead. Returns a one-line outcome."""
        started = time.perf_counter()
        try:
            preview = self._build()
            page = preview.read_text(encoding="utf-8")
            files = {name: (preview.parent / name).read_bytes() for name in FILES if (preview.parent / name).is_file()}
        except DigestError as exc:
            self._set(_State(self._version(), _error_page(str(exc)), ok=False, folder=self.state.folder))
            return f"build failed: {exc}"
        except Exception as exc:  # a bug, not the user's doing: log it, but keep serving and watching
            log.exception("preview build crashed")
            message = f"internal error: {type(exc).__name__}: {exc} (a bug in digest; please report it)"
            self._set(_State(self._version(), _error_page(message), ok=False, folder=self.state.folder))
            return f"build failed: {message}"
        self._set(_State(self._version(), page, ok=True, files=files, folder=preview.parent))
        return f"rebuilt {preview} in {time.perf_counter() - started:.2f} s"

    def _set(self, state: _State) -> None:
        with self._lock:
            self.state = state

    def snapshot(self) -> _State:
        with self._lock:
            return self.state


def _error_page(message: str) -> str:
    return f"""<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>Build failed</title>
<style>body {{ font: 15px/1.5 system-ui, sans-serif; margin: 24px; color: #1f2933; }}
pre {{ background: #fff4f4; border: 1px solid #e5a3a3; padding: 16px; white-space: pre-wrap; }}</style></head>
<body>
<main>
<h1>Build failed</h1>
<pre>{escape(message)}</pre>
<p>Fix it and save: this page reloads by itself.</p>
</main>
</body>
</html>
"""


def _inject(page: str, version: str) -> str:
    script = _RELOAD_SCRIPT % f'"{version}"'
    cut = page.lower().rfind("</body>")
    return page + script if cut < 0 else page[:cut] + script + page[cut:]


def _handler(site: _Site) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "digest-preview"

        def do_GET(self) -> None:  # noqa: N802 - the name http.server dispatches to
            path = self.path.split("?", 1)[0]
            state = site.snapshot()
            if path in {"/", "/preview.html"}:
                status = HTTPStatus.OK if state.ok else HTTPStatus.INTERNAL_SERVER_ERROR
                self._send(status, "text/html; charset=utf-8", _inject(state.page, state.version).encode())
            elif path == "/__version":
                self._send(HTTPStatus.OK, "text/plain; charset=utf-8", state.version.encode())
            elif path.lstrip("/") in state.files:
                name = path.lstrip("/")
                self._send(HTTPStatus.OK, FILES[name], state.files[name])
            else:
                known = ", ".join(["/", *(f"/{n}" for n in state.files)])
                self._send(HTTPStatus.NOT_FOUND, "text/plain; charset=utf-8", f"Not here; try {known}\n".encode())

        def _send(self, status: HTTPStatus, kind: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
            log.debug("%s " + format, self.address_string(), *args)

    return Handler


def _mtimes(paths: Iterable[Path], skip: Path | None) -> dict[Path, tuple[int, int]]:
    """(mtime, size) of every file under the watched paths, except the build folder and hidden files."""
    seen: dict[Path, tuple[int, int]] = {}
    for root in paths:
        candidates = [root] if root.is_file() else (root.rglob("*") if root.is_dir() else [])
        for path in candidates:
            if any(part.startswith(".") or part == "__pycache__" for part in path.relative_to(root).parts):
                continue  # editor swap files, .git: not content
            try:
                info = path.stat()
            except OSError:
                continue  # deleted between listing and stat; the next poll sees it gone
            if stat.S_ISREG(info.st_mode):
                seen[path] = (info.st_mtime_ns, info.st_size)
    return _outside(seen, skip)


def _outside(snapshot: dict[Path, tuple[int, int]], folder: Path | None) -> dict[Path, tuple[int, int]]:
    """The build folder may sit inside a watched folder; watching our own output would rebuild forever."""
    if folder is None:
        return snapshot
    return {path: stamp for path, stamp in snapshot.items() if not path.is_relative_to(folder)}


def _changed(before: dict[Path, tuple[int, int]], after: dict[Path, tuple[int, int]]) -> list[Path]:
    return sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))


def serve(
    build: Callable[[], Path],
    watch: list[Path],
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    on_ready: Callable[[str], None] | None = None,
    on_rebuild: Callable[[str], None] | None = None,
    stop: threading.Event | None = None,
    interval: float = POLL_SECONDS,
) -> None:
    """Serve `build()`'s preview.html at http://host:port/ until `stop` is set or Ctrl-C.

    `build` (re)builds and returns the preview.html path; it runs once now and again whenever a file
    under `watch` changes. Port 0 takes a free port; `on_ready` gets the URL once the first build is
    done. `on_rebuild` gets a one-line outcome after every rebuild, and after a failing first build.
    """
    stop = stop or threading.Event()
    site = _Site(build)
    server = _listen(host, port, _handler(site))
    watcher: threading.Thread | None = None
    try:
        # Snapshot before the build: a save during the first build still triggers a rebuild.
        before = _mtimes(watch, None)
        outcome = site.rebuild()
        before = _outside(before, site.snapshot().folder)
        if not site.snapshot().ok and on_rebuild:
            on_rebuild(outcome)
        watcher = threading.Thread(
            target=_watch, args=(site, watch, before, stop, interval, on_rebuild), name="digest-watch", daemon=True
        )
        watcher.start()
        _run(server, stop, on_ready)
    except KeyboardInterrupt:
        pass  # Ctrl-C during the first build: the same normal end
    finally:
        stop.set()
        server.server_close()
        if watcher is not None and watcher.is_alive():
            watcher.join(timeout=5)


def _listen(host: str, port: int, handler: Callable[..., BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
    """A server bound to host:port (not serving yet), or a ServeError that says how to free or pick a port."""
    try:
        server = ThreadingHTTPServer((host, port), handler)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise ServeError(
                f"{host}:{port}: the port is in use; stop the other server or pick another with --port"
            ) from None
        raise ServeError(f"{host}:{port}: cannot listen ({exc.strerror or exc}); use --port with a free port") from None
    server.daemon_threads = True
    return server


def _run(server: ThreadingHTTPServer, stop: threading.Event, on_ready: Callable[[str], None] | None) -> None:
    """Serve on a daemon thread until `stop` is set or Ctrl-C, then close the server; `on_ready` gets the URL."""
    listener = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="digest-http", daemon=True
    )
    try:
        listener.start()
        bound_host, bound_port = server.server_address[:2]
        if on_ready:
            on_ready(f"http://{bound_host!s}:{bound_port}/")
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass  # Ctrl-C is how a user stops serving: a normal end, not an error
    finally:
        stop.set()
        if listener.is_alive():
            server.shutdown()  # waits for serve_forever to return; it would wait forever if never started
        server.server_close()


def _watch(
    site: _Site,
    watch: list[Path],
    before: dict[Path, tuple[int, int]],
    stop: threading.Event,
    interval: float,
    on_rebuild: Callable[[str], None] | None,
) -> None:
    while not stop.wait(interval):
        skip = site.snapshot().folder
        now = _mtimes(watch, skip)
        changed = _changed(_outside(before, skip), now)
        if not changed:
            continue
        before = now
        outcome = site.rebuild()
        if on_rebuild:
            shown = ", ".join(p.name for p in changed[:3]) + (
                f" and {len(changed) - 3} more" if len(changed) > 3 else ""
            )
            on_rebuild(f"{shown} changed: {outcome}")


def serve_folder(
    folder: Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    on_ready: Callable[[str], None] | None = None,
    stop: threading.Event | None = None,
) -> None:
    """Serve the static files under `folder` (the web archive) at http://host:port/ until `stop` or Ctrl-C."""
    import functools
    from http.server import SimpleHTTPRequestHandler

    if not folder.is_dir():
        raise ServeError(f"{folder}: no archive here yet; run 'digest archive' first")

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
            log.debug("%s " + format, self.address_string(), *args)

    server = _listen(host, port, functools.partial(Quiet, directory=str(folder)))
    _run(server, stop or threading.Event(), on_ready)
