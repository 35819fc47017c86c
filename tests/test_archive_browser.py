"""The web archive in headless Chromium at 375 and 1280 px: no sideways scrolling on the index or an edition
page, `main` and `nav` landmarks, headings, and alt text on every image.

Chromium is absent on a bare machine: these tests skip then, unless DIGEST_REQUIRE_BROWSER=1 (CI).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from _browser import OVERFLOW_JS, Chromium, Session
from _factories import copy_newsletter
from click.testing import CliRunner

from digest.cli import main

WIDTHS = (375, 1280)
LANDMARKS_JS = """({
  main: document.querySelectorAll('main').length,
  nav: document.querySelectorAll('nav').length,
  navLinks: document.querySelectorAll('nav a[href]').length,
  h1: document.querySelectorAll('h1').length,
  h2: document.querySelectorAll('h2').length,
  images: document.images.length,
  noAlt: [...document.images].filter(img => !img.hasAttribute('alt')).map(img => img.src),
})"""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The archive of two editions sent to the outbox, with a logo (an image that needs alt text)."""
    folder = copy_newsletter(tmp_path_factory.mktemp("news"))
    (folder / "members.csv").write_text("email,name\nada@example.org,Ada\n", encoding="utf-8")
    runner = CliRunner(env={"DIGEST_LOGO": "https://www.example.org/logo.png", "DIGEST_LOGO_ALT": "MIP"})
    config = ["--config", str(folder / "digest.toml")]
    for month in ("2019-12", "2020-01"):
        args = [*config, "send", "--month", month, "--recipients", str(folder / "members.csv"), "--yes"]
        result = runner.invoke(main, [*args, "--no-spamassassin"], catch_exceptions=False)
        assert result.exit_code == 0, result.stderr
    result = runner.invoke(main, [*config, "archive"], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    return folder / "archive"


@pytest.fixture(scope="module")
def browser() -> Iterator[Session]:
    """One Chromium for the module."""
    chromium = Chromium()
    if not chromium.available():
        if os.environ.get("DIGEST_REQUIRE_BROWSER"):
            pytest.fail("Chromium not found (DIGEST_REQUIRE_BROWSER is set, so this is a failure)")
        pytest.skip("Chromium not found: install Debian's chromium or set DIGEST_CHROMIUM")
    with chromium.open() as session:
        yield session


PAGES = ("index.html", "digest/mayors-innovation-2020-01/index.html")


@pytest.mark.browser
@pytest.mark.parametrize("page", PAGES)
@pytest.mark.parametrize("width", WIDTHS)
def test_no_horizontal_scroll(browser: Session, site: Path, page: str, width: int) -> None:
    """At 375 and 1280 px the page is no wider than the window and nothing sticks out of it."""
    browser.load(site / page, width)
    report = browser.evaluate(OVERFLOW_JS)
    assert report["scrollWidth"] <= report["innerWidth"] == width, report
    assert report["offenders"] == [], report["offenders"]


@pytest.mark.browser
@pytest.mark.parametrize("page", PAGES)
def test_landmarks_headings_and_alt_text(browser: Session, site: Path, page: str) -> None:
    """One main, a nav with links, one h1 and section headings; every image has alt text."""
    browser.load(site / page, 1280)
    found = browser.evaluate(LANDMARKS_JS)
    assert found["main"] == 1 and found["nav"] == 1 and found["navLinks"] >= 1, found
    assert found["h1"] == 1 and found["h2"] >= 2, found
    assert found["noAlt"] == [], found
    if page != "index.html":
        assert found["images"] >= 1  # the logo: the alt check has something to check


@pytest.mark.browser
def test_index_links_reach_the_pages(browser: Session, site: Path) -> None:
    """Following the index's first edition link opens that page, whose nav leads back to the index."""
    browser.load(site / "index.html", 375)
    href = browser.evaluate("document.querySelector('main a').href")
    assert href.endswith("digest/mayors-innovation-2020-01/index.html")
    browser.load(href, 375)
    back = browser.evaluate("document.querySelector('nav a').href")
    assert back == (site / "index.html").as_uri()
