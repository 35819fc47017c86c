"""The built email in headless Chromium: no sideways scrolling on a phone, columns side by side on desktop and
stacked on a phone, screenshots; the preview page shows the email at both widths. Plus the driver's own errors.

Chromium is absent on a bare machine: these tests skip then, unless DIGEST_REQUIRE_BROWSER=1 (CI), where a
missing Chromium fails them.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _browser import OVERFLOW_JS, BrowserError, Chromium, Session, as_url, find_chromium

from digest.config import load_settings
from digest.models import Build
from digest.pipeline import build_edition
from digest.preview import DESKTOP_WIDTH, MOBILE_WIDTH
from digest.selection import SelectionOptions

REPO = Path(__file__).resolve().parent.parent
PHONE, DESKTOP = MOBILE_WIDTH, DESKTOP_WIDTH

# Every multi-column mj-section, as groups of its columns' boxes. mjml names each column by its width
# (mj-column-per-50 for two equal columns, -70/-30 for the header); `doc` is the document to measure,
# so the same probe runs on the email itself and inside the preview's frames.
COLUMNS_JS = """((doc) => {
  const groups = new Map();
  for (const el of doc.querySelectorAll('[class*="mj-column-per-"]')) {
    if (!groups.has(el.parentElement)) groups.set(el.parentElement, []);
    groups.get(el.parentElement).push(el);
  }
  return [...groups.values()].filter(g => g.length > 1).map(g => g.map(el => {
    const r = el.getBoundingClientRect();
    return {cls: el.className.match(/mj-column-per-\\d+/)[0], left: r.left, right: r.right, top: r.top,
            bottom: r.bottom, width: r.width};
  }));
})(%s)"""


def require_chromium() -> Chromium:
    chromium = Chromium()
    if not chromium.available():
        message = "Chromium not found: install Debian's chromium or set DIGEST_CHROMIUM"
        if os.environ.get("DIGEST_REQUIRE_BROWSER"):
            pytest.fail(message + " (DIGEST_REQUIRE_BROWSER is set, so this is a failure)")
        pytest.skip(message)
    return chromium


@pytest.fixture(scope="module")
def browser() -> Iterator[Session]:
    """One Chromium for the module: each launch costs about a second."""
    with require_chromium().open() as session:
        yield session


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Build:
    """The shipped content, all 47 items, built by the real pipeline into a temporary build folder."""
    settings = load_settings(REPO / "digest.toml", env={})
    opts = SelectionOptions(since=dt.date(2012, 1, 1), until=dt.date(2030, 12, 31))
    return build_edition(settings, opts, tmp_path_factory.mktemp("build")).build


def column_groups(browser: Session, document: str = "document") -> list[list[dict[str, Any]]]:
    groups: list[list[dict[str, Any]]] = browser.evaluate(COLUMNS_JS % document)
    return groups


def halves(groups: list[list[dict[str, Any]]]) -> list[list[dict[str, Any]]]:
    """The two-column sections the template makes for featured and upcoming items."""
    return [g for g in groups if [c["cls"] for c in g] == ["mj-column-per-50", "mj-column-per-50"]]


@pytest.mark.browser
def test_viewport_is_exactly_the_asked_width(browser: Session, built: Build) -> None:
    """Chromium's viewport is 375 px wide when asked (the phone media query applies), 800 px likewise."""
    for width, phone in ((PHONE, True), (DESKTOP, False)):
        browser.load(built.folder / "email.html", width)
        seen = browser.evaluate("[innerWidth, matchMedia('(max-width: 479px)').matches]")
        assert seen == [width, phone]


@pytest.mark.browser
def test_no_horizontal_overflow_on_a_phone(browser: Session, built: Build) -> None:
    """At 375 px the page is no wider than the screen and no visible element sticks out of it."""
    browser.load(built.folder / "email.html", PHONE)
    report = browser.evaluate(OVERFLOW_JS)
    assert report["scrollWidth"] <= report["innerWidth"] == PHONE, report
    assert report["offenders"] == [], f"elements past the right edge at {PHONE} px: {report['offenders']}"


@pytest.mark.browser
def test_columns_side_by_side_on_desktop(browser: Session, built: Build) -> None:
    """At 800 px each multi-column section's columns share a top and sit left to right."""
    browser.load(built.folder / "email.html", DESKTOP)
    groups = column_groups(browser)
    assert halves(groups), f"no two-column (featured/upcoming) section in the email: {groups}"
    for group in groups:
        first, second = group[0], group[1]
        assert abs(first["top"] - second["top"]) < 1, group
        assert second["left"] >= first["right"] - 1, group


@pytest.mark.browser
def test_columns_stack_on_a_phone(browser: Session, built: Build) -> None:
    """At 375 px the same columns share a left edge, each below the one before, at full width."""
    browser.load(built.folder / "email.html", PHONE)
    groups = column_groups(browser)
    assert halves(groups)
    for group in groups:
        for upper, lower in zip(group, group[1:], strict=False):
            assert abs(upper["left"] - lower["left"]) < 1, group
            assert lower["top"] >= upper["bottom"] - 1, group
        assert all(c["right"] <= PHONE for c in group), group


@pytest.mark.browser
def test_screenshots_at_both_widths(browser: Session, built: Build, tmp_path: Path) -> None:
    """Full-page PNGs at 375 and 800 px are written, real images, and the phone one is the taller."""
    shots = {}
    for width in (PHONE, DESKTOP):
        browser.load(built.folder / "email.html", width)
        shots[width] = browser.screenshot(tmp_path / f"email-{width}.png")
    for width, png in shots.items():
        data = png.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000, (png, len(data))
        assert int.from_bytes(data[16:20], "big") == width  # the IHDR width
    phone_height = int.from_bytes(shots[PHONE].read_bytes()[20:24], "big")
    desktop_height = int.from_bytes(shots[DESKTOP].read_bytes()[20:24], "big")
    assert phone_height > desktop_height


@pytest.mark.browser
def test_preview_page_shows_the_email_in_both_frames(browser: Session, built: Build) -> None:
    """preview.html's two frames render the email at 800 and 375 px, phone layout only in the narrow one."""
    browser.load(built.folder / "preview.html", 1300, 900)
    frames = browser.evaluate(
        """[...document.querySelectorAll('iframe')].map(f => ({
             width: f.contentWindow.innerWidth, title: f.contentDocument.title,
             phone: f.contentWindow.matchMedia('(max-width: 479px)').matches,
             scrollWidth: f.contentDocument.documentElement.scrollWidth,
             placeholders: f.contentDocument.body.innerHTML.includes('%%')}))"""
    )
    assert [(f["width"], f["phone"]) for f in frames] == [(DESKTOP, False), (PHONE, True)]
    for frame in frames:
        assert frame["title"] == built.subject and not frame["placeholders"]
        assert frame["scrollWidth"] <= frame["width"]
    desktop, phone = (
        column_groups(browser, f"document.querySelectorAll('iframe')[{n}].contentDocument") for n in (0, 1)
    )
    pair_desktop, pair_phone = halves(desktop)[0], halves(phone)[0]
    assert abs(pair_desktop[0]["top"] - pair_desktop[1]["top"]) < 1  # side by side
    assert pair_phone[1]["top"] >= pair_phone[0]["bottom"] - 1  # stacked


@pytest.mark.browser
def test_script_errors_and_missing_pages_are_browser_errors(browser: Session, tmp_path: Path) -> None:
    """A throwing script and a missing file raise BrowserError with the cause, and the session lives on."""
    with pytest.raises(BrowserError, match="ERR_FILE_NOT_FOUND"):
        browser.load(tmp_path / "missing.html")
    browser.load("about:blank")
    with pytest.raises(BrowserError, match="ReferenceError: nope"):
        browser.evaluate("nope()")
    assert browser.evaluate("Promise.resolve({a: [1, 'two']})") == {"a": [1, "two"]}


@pytest.mark.browser
def test_one_shot_helpers(tmp_path: Path) -> None:
    """Chromium.evaluate and Chromium.screenshot each run a browser of their own and clean up."""
    chromium = require_chromium()
    page = tmp_path / "page.html"
    page.write_text("<!doctype html><title>t</title><p style='width:2000px'>wide</p>")
    assert chromium.evaluate(page, "[innerWidth, document.documentElement.scrollWidth]", 500, 300) == [500, 2008]
    png = chromium.screenshot(page, tmp_path / "shot.png", 400, 300, full_page=False)
    assert png.read_bytes()[:4] == b"\x89PNG" and int.from_bytes(png.read_bytes()[16:20], "big") == 400


# The driver's errors: no Chromium needed, so not marked `browser`.


def test_missing_chromium_is_a_clear_error(tmp_path: Path) -> None:
    """An executable that is not there: available() is False and open() names DIGEST_CHROMIUM and the fix."""
    chromium = Chromium(tmp_path / "no-chromium")
    assert not chromium.available()
    with pytest.raises(BrowserError, match=r"Chromium not found.*apt-get install chromium.*DIGEST_CHROMIUM"):
        chromium.open()


def test_digest_chromium_variable_wins_even_when_wrong(tmp_path: Path) -> None:
    """$DIGEST_CHROMIUM is used as given; a wrong value finds nothing rather than a silent fallback."""
    fake = tmp_path / "my-chrome"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    assert find_chromium({"DIGEST_CHROMIUM": str(fake), "PATH": ""}) == str(fake)
    assert find_chromium({"DIGEST_CHROMIUM": str(tmp_path / "nothing"), "PATH": ""}) is None


def test_a_chromium_that_dies_is_reported(tmp_path: Path) -> None:
    """A 'Chromium' that exits at once gives a BrowserError with its exit code and last words."""
    fake = tmp_path / "broken-chrome"
    fake.write_text("#!/bin/sh\necho 'cannot open display' >&2\nexit 3\n")
    fake.chmod(0o755)
    with pytest.raises(BrowserError, match=r"exit code 3.*cannot open display"):
        Chromium(fake, timeout=10).open()


def test_as_url() -> None:
    """URLs pass through; paths become absolute file:// URLs."""
    assert as_url("http://127.0.0.1:8000/") == "http://127.0.0.1:8000/"
    assert as_url(Path("/tmp/a b.html")) == "file:///tmp/a%20b.html"
    assert as_url("relative.html") == (Path.cwd() / "relative.html").as_uri()
