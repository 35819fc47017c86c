"""Preview server: serves the build on loopback, rebuilds on a change, shows build errors, stops cleanly."""

from __future__ import annotations

import contextlib
import os
import queue
import shutil
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from html import escape
from pathlib import Path

import pytest
from _browser import BrowserError, Chromium

from digest.config import load_settings
from digest.errors import ContentError, Problem, ServeError
from digest.pipeline import build_edition
from digest.selection import SelectionOptions
from digest.serve import serve

REPO = Path(__file__).resolve().parent.parent


def fetch(url: str) -> tuple[int, str]:
    """GET a URL on loopback; HTTP errors are answers too."""
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def wait_for(check: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {seconds} s")
        time.sleep(0.05)


@dataclass
class Newsletter:
    """A tiny newsletter folder whose build turns content/*.md into build/preview.html."""

    root: Path
    builds: int = 0
    messages: list[str] = field(default_factory=list)

    @property
    def content(self) -> Path:
        return self.root / "content"

    @property
    def out(self) -> Path:
        return self.root / "build"

    def build(self) -> Path:
        self.builds += 1
        items = sorted(self.content.glob("*.md"))
        problems = [
            Problem(str(p), 1, "front matter is broken", "close the '---' block")
            for p in items
            if "BROKEN" in p.read_text()
        ]
        if problems:
            raise ContentError(problems)
        bodies = [p.read_text() for p in items]
        self.out.mkdir(exist_ok=True)
        (self.out / "email.html").write_text("<p>" + "</p><p>".join(escape(b) for b in bodies) + "</p>")
        (self.out / "email.txt").write_text("\n".join(bodies))
        page = self.out / "preview.html"
        page.write_text(
            f"<!DOCTYPE html><html><body><h1>Preview</h1>{''.join(escape(b) for b in bodies)}</body></html>"
        )
        return page


@pytest.fixture
def newsletter(tmp_path: Path) -> Newsletter:
    (tmp_path / "content").mkdir()
    (tmp_path / "content" / "2020-01-05-parking.md").write_text("Urban parking reform")
    (tmp_path / "digest.toml").write_text('name = "Test"\n')
    return Newsletter(tmp_path)


@contextlib.contextmanager
def serving(build: Callable[[], Path], watch: list[Path], messages: list[str], interval: float = 0.1) -> Iterator[str]:
    """serve() on port 0 in a thread, its outcomes into `messages`; yields its URL; stops it and checks that."""
    urls: queue.Queue[str] = queue.Queue()
    stop = threading.Event()
    thread = threading.Thread(
        target=serve,
        args=(build, watch),
        kwargs={
            "port": 0,
            "on_ready": urls.put,
            "on_rebuild": messages.append,
            "stop": stop,
            "interval": interval,
        },
        daemon=True,
    )
    thread.start()
    try:
        yield urls.get(timeout=10)
    finally:
        stop.set()
        thread.join(timeout=10)
    assert not thread.is_alive(), "serve() did not stop when asked"


@pytest.fixture
def running(newsletter: Newsletter) -> Iterator[str]:
    """The server over content/ and digest.toml."""
    with serving(newsletter.build, [newsletter.content, newsletter.root / "digest.toml"], newsletter.messages) as url:
        yield url


def version(url: str) -> str:
    return fetch(url + "__version")[1]


def test_serves_the_preview_with_a_reload_script(running: str, newsletter: Newsletter) -> None:
    """/ is the preview plus the reload script; the file on disk has no such script."""
    assert running.startswith("http://127.0.0.1:") and not running.endswith(":0/")
    status, page = fetch(running)
    assert status == 200 and "Urban parking reform" in page
    assert "/__version" in page and page.index("/__version") < page.index("</body>")
    assert "__version" not in (newsletter.out / "preview.html").read_text()
    assert fetch(running + "preview.html")[1] == page


def test_serves_email_parts_of_the_build_folder(running: str) -> None:
    """/email.html and /email.txt are the build's files; other paths are 404 and never touch the disk."""
    assert fetch(running + "email.html") == (200, "<p>Urban parking reform</p>")
    assert fetch(running + "email.txt") == (200, "Urban parking reform")
    assert fetch(running + "../digest.toml")[0] == 404
    assert fetch(running + "build/preview.html")[0] == 404


def test_editing_content_rebuilds_and_bumps_the_version(running: str, newsletter: Newsletter) -> None:
    """After a content file changes, /__version changes and the page shows the new text."""
    before = version(running)
    (newsletter.content / "2020-01-05-parking.md").write_text("Curb management for all")
    wait_for(lambda: version(running) != before)
    status, page = fetch(running)
    assert status == 200 and "Curb management for all" in page and "Urban parking" not in page
    assert fetch(running + "email.txt")[1] == "Curb management for all"
    assert any("2020-01-05-parking.md changed: rebuilt" in m for m in newsletter.messages)


def test_new_file_and_config_change_also_rebuild(running: str, newsletter: Newsletter) -> None:
    """A new content file, and an edit of the config file, each trigger a rebuild."""
    before = version(running)
    (newsletter.content / "2020-01-09-transit.md").write_text("Leading with transit")
    wait_for(lambda: "Leading with transit" in fetch(running)[1])
    middle = version(running)
    assert middle != before
    (newsletter.root / "digest.toml").write_text('name = "Renamed"\n')
    wait_for(lambda: version(running) != middle)


def test_build_error_shows_an_error_page_and_keeps_serving(running: str, newsletter: Newsletter) -> None:
    """A DigestError in a rebuild becomes a 500 page with its message; fixing the file recovers."""
    item = newsletter.content / "2020-01-05-parking.md"
    item.write_text("BROKEN front matter")
    wait_for(lambda: fetch(running)[0] == 500)
    status, page = fetch(running)
    assert "Build failed" in page and "front matter is broken; close the &#x27;---&#x27; block" in page
    assert "/__version" in page  # so the tab reloads itself once the file is fixed
    assert any(m.startswith("2020-01-05-parking.md changed: build failed:") for m in newsletter.messages)
    item.write_text("Fixed and republished")
    wait_for(lambda: fetch(running)[0] == 200)
    assert "Fixed and republished" in fetch(running)[1]


def test_first_build_failing_still_serves(newsletter: Newsletter) -> None:
    """When the very first build fails, the server starts anyway, reports it, and shows the error."""
    (newsletter.content / "2020-01-05-parking.md").write_text("BROKEN")
    with serving(newsletter.build, [newsletter.content], newsletter.messages) as url:
        assert fetch(url)[0] == 500
        assert fetch(url + "email.html")[0] == 404
        assert len(newsletter.messages) == 1 and newsletter.messages[0].startswith("build failed:")


def test_build_folder_inside_the_watched_folder_does_not_loop(newsletter: Newsletter) -> None:
    """Watching the whole newsletter folder (build/ included) rebuilds once per edit, not on its own output."""
    with serving(newsletter.build, [newsletter.root], newsletter.messages, interval=0.05) as url:
        time.sleep(0.5)
        assert newsletter.builds == 1
        (newsletter.content / "2020-01-05-parking.md").write_text("One more edit")
        wait_for(lambda: "One more edit" in fetch(url)[1])
        time.sleep(0.5)
        assert newsletter.builds == 2


def test_stopping_frees_the_port(newsletter: Newsletter) -> None:
    """Once stopped, the port refuses connections and can be bound again."""
    with serving(newsletter.build, [newsletter.content], newsletter.messages) as url:
        assert fetch(url)[0] == 200
    port = int(url.rstrip("/").rsplit(":", 1)[1])
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url, timeout=2)
    with socket.socket() as again:
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as http.server does; TIME_WAIT is fine
        again.bind(("127.0.0.1", port))


def test_port_in_use_is_a_clear_error(newsletter: Newsletter) -> None:
    """A taken port raises ServeError naming the port and --port, before building anything."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ServeError, match=rf"127\.0\.0\.1:{port}: the port is in use.*--port"):
            serve(newsletter.build, [newsletter.content], port=port, stop=threading.Event())
    assert newsletter.builds == 0


def test_real_pipeline_rebuilds_on_content_edit_and_shows_content_errors(tmp_path: Path) -> None:
    """With the real build (content -> email -> preview), an edited title appears and a bad date shows its fix."""
    for name in ("2020-01-21-summer-2020-annual-meeting.md", "2020-01-28-new-mayors-cohort-2020.md"):
        (tmp_path / "content").mkdir(exist_ok=True)
        shutil.copy(REPO / "content" / name, tmp_path / "content" / name)
    shutil.copy(REPO / "digest.toml", tmp_path / "digest.toml")
    item = tmp_path / "content" / "2020-01-28-new-mayors-cohort-2020.md"
    messages: list[str] = []

    def rebuild() -> Path:
        settings = load_settings(tmp_path / "digest.toml", env={})  # re-read: config edits count too
        outcome = build_edition(settings, SelectionOptions(month="2020-01"), tmp_path / "build")
        return outcome.build.folder / "preview.html"

    with serving(rebuild, [tmp_path / "content", tmp_path / "digest.toml"], messages) as url:
        assert "New Mayors Cohort 2020" in fetch(url)[1]
        assert "New Mayors Cohort 2020" in fetch(url + "email.txt")[1]
        item.write_text(item.read_text().replace("title: New Mayors Cohort 2020", "title: Newly Elected Mayors 2020"))
        wait_for(lambda: "Newly Elected Mayors 2020" in fetch(url)[1])
        item.write_text(item.read_text().replace("date: 2020-01-28", "date: 2020-01-40"))
        wait_for(lambda: fetch(url)[0] == 500)
        assert "2020-01-28-new-mayors-cohort-2020.md" in fetch(url)[1]
        assert any("build failed" in m for m in messages)


@pytest.mark.browser
def test_open_tab_reloads_itself_after_an_edit(running: str, newsletter: Newsletter) -> None:
    """In a real browser the served page notices the new version and reloads to show the edit."""
    chromium = Chromium()
    if not chromium.available():
        if os.environ.get("DIGEST_REQUIRE_BROWSER"):
            pytest.fail("Chromium not found and DIGEST_REQUIRE_BROWSER is set")
        pytest.skip("Chromium not found")
    with chromium.open() as tab:
        tab.load(running, 800, 600)
        tab.evaluate("window.untouched = true")  # gone once the page reloads
        (newsletter.content / "2020-01-05-parking.md").write_text("Reloaded without a click")

        def reloaded() -> bool:
            try:
                return bool(tab.evaluate("!window.untouched && document.body.innerText.includes('without a click')"))
            except BrowserError:  # asked mid-reload: the page's context is being replaced
                return False

        wait_for(reloaded)
