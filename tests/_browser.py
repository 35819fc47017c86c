"""Test kit: a headless Chromium driver for the browser tests. Loads a page at an exact viewport, runs JS,
takes screenshots.

    from _browser import Chromium, find_chromium   # tests/ is on sys.path

It speaks the DevTools protocol over `--remote-debugging-pipe` (NUL-separated JSON on fds 3 and 4), with the
standard library only, because `--window-size` cannot make a window narrower than 500 px and only
`Emulation.setDeviceMetricsOverride` gives a true 375 px phone viewport.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

ENV_VAR = "DIGEST_CHROMIUM"
DEFAULT_PATH = "/usr/bin/chromium"
NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

# The background-networking flags matter here: without them Chromium phones home at start-up and the
# closed network refuses it, many times over. --no-sandbox because tests and CI run as root.
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--hide-scrollbars",
    "--mute-audio",
    "--remote-debugging-pipe",
)

# A JS expression for Session.evaluate: how wide the page is against the viewport, and up to 20 visible
# elements whose right edge sticks out of it (the ones that make a phone scroll sideways).
OVERFLOW_JS = """(() => {
  const vw = window.innerWidth;
  const offenders = [];
  for (const el of document.querySelectorAll('body *')) {
    const r = el.getBoundingClientRect();
    if (r.width === 0 || r.height === 0 || r.right <= vw + 0.5) continue;
    const style = getComputedStyle(el);
    if (style.visibility === 'hidden' || style.display === 'none') continue;
    offenders.push({tag: el.tagName.toLowerCase(), cls: String(el.className || ''),
                    right: Math.round(r.right), width: Math.round(r.width),
                    text: (el.textContent || '').trim().slice(0, 60)});
    if (offenders.length >= 20) break;
  }
  return {innerWidth: vw, scrollWidth: document.documentElement.scrollWidth, offenders};
})()"""


class BrowserError(RuntimeError):
    """Chromium is missing, would not start, or a page or script in it failed."""


def find_chromium(env: Mapping[str, str] | None = None) -> str | None:
    """The Chromium to use: $DIGEST_CHROMIUM if set (even when wrong, so a typo is not silently ignored),
    else /usr/bin/chromium, else the first of NAMES on PATH."""
    env = os.environ if env is None else env
    explicit = env.get(ENV_VAR, "").strip()
    if explicit:
        found = shutil.which(explicit)
        return found if found else None
    if os.access(DEFAULT_PATH, os.X_OK):
        return DEFAULT_PATH
    for name in NAMES:
        found = shutil.which(name, path=env.get("PATH"))
        if found:
            return found
    return None


def as_url(url_or_path: str | Path) -> str:
    """A URL as is; a file path as an absolute file:// URL."""
    text = str(url_or_path)
    if isinstance(url_or_path, str) and text.split(":", 1)[0] in {"http", "https", "file", "about", "data"}:
        return text
    return Path(text).resolve().as_uri()


class Chromium:
    """A headless Chromium found on this machine. Each `open()` is one browser process."""

    def __init__(self, executable: str | Path | None = None, *, timeout: float = 30.0) -> None:
        self.executable = str(executable) if executable else find_chromium()
        self.timeout = timeout

    def available(self) -> bool:
        return self.executable is not None and os.access(self.executable, os.X_OK)

    def open(self) -> Session:
        """Start a browser; use as a context manager so the process and its profile are always removed."""
        if not self.available():
            where = os.environ.get(ENV_VAR) or f"{DEFAULT_PATH} or {', '.join(NAMES)} on PATH"
            raise BrowserError(
                f"Chromium not found ({where}); install it (apt-get install chromium) or set {ENV_VAR} to its path"
            )
        assert self.executable is not None
        return Session(self.executable, timeout=self.timeout)

    def evaluate(self, url_or_path: str | Path, js: str, width: int = 800, height: int = 800) -> Any:
        """Load a page at a width x height viewport and return the JSON value of the JS expression."""
        with self.open() as session:
            session.load(url_or_path, width, height)
            return session.evaluate(js)

    def screenshot(
        self, url_or_path: str | Path, out_png: Path, width: int = 800, height: int = 800, *, full_page: bool = True
    ) -> Path:
        """Save a PNG of the page at a width x height viewport (the whole page height when full_page)."""
        with self.open() as session:
            session.load(url_or_path, width, height)
            return session.screenshot(out_png, full_page=full_page)


class Session:
    """One running Chromium with one tab, driven over the DevTools pipe."""

    def __init__(self, executable: str, *, timeout: float = 30.0) -> None:
        self.timeout = timeout
        self._profile = tempfile.mkdtemp(prefix="digest-chromium-")
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the browser; close() closes it
        self._buffer = b""
        self._events: list[dict[str, Any]] = []
        self._next_id = 0
        self._session_id = ""
        to_child, self._out = os.pipe()  # we write commands; Chromium reads them on fd 3
        self._in, from_child = os.pipe()  # Chromium writes answers on fd 4; we read them
        try:
            self._proc = subprocess.Popen(
                [executable, *FLAGS, f"--user-data-dir={self._profile}", "about:blank"],
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=self._log,
                # The pipe protocol wants exactly fds 3 and 4 in the child, which pass_fds cannot
                # renumber; close_fds=False is safe because Python opens every fd close-on-exec.
                preexec_fn=_place_fds(to_child, from_child),
                close_fds=False,
            )
        except OSError as exc:
            self._close_fds(self._out, self._in)
            self._log.close()
            shutil.rmtree(self._profile, ignore_errors=True)
            raise BrowserError(
                f"{executable}: cannot start Chromium ({exc}); check {ENV_VAR} or reinstall it"
            ) from None
        finally:
            self._close_fds(to_child, from_child)  # the child has its copies; ours would hide its exit
        try:
            target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
            self._session_id = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            self.call("Page.enable")
            self.call("Runtime.enable")
        except BaseException:
            self.close()
            raise

    # -- the protocol -------------------------------------------------------------------------------

    def call(self, method: str, params: dict[str, Any] | None = None, *, timeout: float | None = None) -> Any:
        """Send one command (to the tab once attached) and return its result."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if self._session_id:
            message["sessionId"] = self._session_id
        try:
            os.write(self._out, json.dumps(message).encode() + b"\0")
        except OSError as exc:
            raise self._died(f"could not send {method} ({exc})") from None
        wanted = self._next_id
        reply = self._receive(lambda m: m.get("id") == wanted, what=method, timeout=timeout)
        if "error" in reply:
            raise BrowserError(f"Chromium refused {method}: {reply['error'].get('message', reply['error'])}")
        return reply.get("result", {})

    def wait_event(self, method: str, *, timeout: float | None = None) -> dict[str, Any]:
        """Wait for the next event of that name (events that came before the wait are kept and count)."""
        for n, event in enumerate(self._events):
            if event.get("method") == method:
                del self._events[n]
                return event
        return self._receive(lambda m: m.get("method") == method, what=method, timeout=timeout)

    def _receive(self, wanted: Callable[[dict[str, Any]], bool], *, what: str, timeout: float | None) -> dict[str, Any]:
        """Read messages until one is wanted; events read on the way are kept for wait_event."""
        limit = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        while True:
            while b"\0" in self._buffer:
                raw, self._buffer = self._buffer.split(b"\0", 1)
                message: dict[str, Any] = json.loads(raw)
                if wanted(message):
                    return message
                if "method" in message:
                    self._events.append(message)
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrowserError(
                    f"Chromium did not answer {what} within {limit:g} s; "
                    "the page may hang (a remote resource?) or Chromium is overloaded"
                )
            ready, _, _ = select.select([self._in], [], [], left)
            if not ready:
                continue
            chunk = os.read(self._in, 1 << 16)
            if not chunk:
                raise self._died(f"exited while waiting for {what}")
            self._buffer += chunk

    def _died(self, what: str) -> BrowserError:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._proc.wait(timeout=2)
        self._log.seek(0)
        tail = self._log.read().decode("utf-8", "replace").strip().splitlines()[-5:]
        detail = ("; its last words: " + " | ".join(tail)) if tail else ""
        return BrowserError(f"Chromium {what} (exit code {self._proc.returncode}){detail}")

    # -- what tests and checks use ------------------------------------------------------------------

    def load(self, url_or_path: str | Path, width: int = 800, height: int = 800) -> None:
        """Show a page in a width x height CSS-pixel viewport (desktop mode: no meta-viewport zoom)."""
        self.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )
        self._events = [e for e in self._events if e.get("method") != "Page.loadEventFired"]
        url = as_url(url_or_path)
        result = self.call("Page.navigate", {"url": url})
        if result.get("errorText"):
            raise BrowserError(f"{url}: Chromium could not load it ({result['errorText']}); check the path or server")
        self.wait_event("Page.loadEventFired")

    def evaluate(self, js: str) -> Any:
        """The JSON value of a JS expression in the loaded page (promises are awaited)."""
        result = self.call(
            "Runtime.evaluate", {"expression": js, "returnByValue": True, "awaitPromise": True, "userGesture": True}
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text", "error")
            raise BrowserError(f"script failed in the page: {text}")
        return result.get("result", {}).get("value")

    def screenshot(self, out_png: Path, *, full_page: bool = True) -> Path:
        """Save a PNG of the viewport, or of the whole page height at the viewport width."""
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            metrics = self.call("Page.getLayoutMetrics")
            viewport = metrics["cssLayoutViewport"]
            content = metrics["cssContentSize"]
            params["captureBeyondViewport"] = True
            params["clip"] = {
                "x": 0,
                "y": 0,
                "width": viewport["clientWidth"],
                "height": max(content["height"], viewport["clientHeight"]),
                "scale": 1,
            }
        data = self.call("Page.captureScreenshot", params)["data"]
        out_png.parent.mkdir(parents=True, exist_ok=True)
        out_png.write_bytes(base64.b64decode(data))
        return out_png

    # -- cleanup ------------------------------------------------------------------------------------

    def close(self) -> None:
        if self._proc.poll() is None:
            self._session_id = ""
            with contextlib.suppress(BrowserError, OSError):
                self.call("Browser.close", timeout=5)
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=5)
        self._close_fds(self._out, self._in)
        self._log.close()
        # ignore_errors: Chromium's helpers may still be writing into the profile as it exits.
        shutil.rmtree(self._profile, ignore_errors=True)

    @staticmethod
    def _close_fds(*fds: int) -> None:
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)

    def __enter__(self) -> Session:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def _place_fds(to_child: int, from_child: int) -> Callable[[], None]:
    """In the child, before exec: put the command pipe on fd 3 and the answer pipe on fd 4."""

    def place() -> None:
        # Copy both out of the way first: either could already sit on fd 3 or 4.
        high_in = fcntl.fcntl(to_child, fcntl.F_DUPFD_CLOEXEC, 10)
        high_out = fcntl.fcntl(from_child, fcntl.F_DUPFD_CLOEXEC, 10)
        os.dup2(high_in, 3)  # dup2 clears close-on-exec, so 3 and 4 survive the exec and nothing else does
        os.dup2(high_out, 4)

    return place
