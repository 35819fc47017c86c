"""Preview page: both widths as srcdoc frames, text part, headers, sample values filled, nothing external."""

from __future__ import annotations

import webbrowser
from collections.abc import Callable
from pathlib import Path

import lxml.html
import pytest

from digest import preview
from digest.preview import DESKTOP_WIDTH, MOBILE_WIDTH, open_in_browser, render_preview

EMAIL_HTML = """<!doctype html>
<html lang="fr" dir="ltr"><head><title>Digest</title>
<style>@media only screen and (max-width:480px) { .col { width: 100% !important; } }</style></head>
<body><p>Bonjour %%name%%,</p><p>Tom &amp; Jerry say "hi"</p>
<a href="%%unsubscribe_url%%">Unsubscribe</a> <a href="%%view_url%%">View online</a></body></html>"""
EMAIL_TEXT = "Hello %%name:text%%,\n<b>not markup</b> & more\nUnsubscribe: %%unsubscribe_url:text%%\n"
SAMPLE = {
    "name": "Alex <Ex> & Co",
    "email": "member@example.org",
    "unsubscribe_url": "https://example.org/unsubscribe?token=abc&list=1",
    "view_url": "https://example.org/digest/mayors-2020-01",
}
HEADERS = {
    "From": "Mayors Innovation Project <news@example.org>",
    "To": "Alex Example <member@example.org>",
    "Subject": "January news",
    "Reply-To": "info@example.org",
    "List-Unsubscribe": "<%%unsubscribe_url:text%%>",
}


@pytest.fixture
def page() -> str:
    return render_preview(
        html=EMAIL_HTML,
        text=EMAIL_TEXT,
        subject="January news",
        preheader="Five stories and two events",
        headers=HEADERS,
        sample=SAMPLE,
    )


def frames(page: str) -> list[lxml.html.HtmlElement]:
    return list(lxml.html.document_fromstring(page).iter("iframe"))


def test_two_frames_at_desktop_and_phone_width(page: str) -> None:
    """The email appears twice, in frames 800 and 375 px wide, each with a title."""
    found = frames(page)
    assert [f.get("width") for f in found] == [str(DESKTOP_WIDTH), str(MOBILE_WIDTH)]
    assert (DESKTOP_WIDTH, MOBILE_WIDTH) == (800, 375)
    assert all(f.get("title") for f in found)


def test_frames_hold_the_email_with_placeholders_filled(page: str) -> None:
    """Each srcdoc unescapes to the email with HTML tokens replaced by escaped sample values."""
    for frame in frames(page):
        email = frame.get("srcdoc")
        assert "Bonjour Alex &lt;Ex&gt; &amp; Co," in email
        assert 'href="https://example.org/unsubscribe?token=abc&amp;list=1"' in email
        assert "Tom &amp; Jerry" in email and "%%" not in email
        assert "@media only screen and (max-width:480px)" in email


def test_frames_run_no_email_scripts_and_open_links_in_a_tab(page: str) -> None:
    """Frames are sandboxed without allow-scripts; links inside them target a new tab."""
    for frame in frames(page):
        assert "allow-scripts" not in frame.get("sandbox", "allow-scripts")
        assert '<base target="_blank">' in frame.get("srcdoc")


def test_text_part_is_shown_escaped_and_filled(page: str) -> None:
    """The plain-text part is in a <pre>, escaped, with text tokens replaced by plain values."""
    doc = lxml.html.document_fromstring(page)
    (pre,) = doc.iter("pre")
    assert pre.text_content() == (
        "Hello Alex <Ex> & Co,\n<b>not markup</b> & more\nUnsubscribe: https://example.org/unsubscribe?token=abc&list=1\n"
    )
    assert "<b>not markup</b>" not in page


def test_subject_preheader_and_headers_are_shown(page: str) -> None:
    """Title and h1 carry the subject; the preheader and every header (filled) are on the page."""
    doc = lxml.html.document_fromstring(page)
    assert doc.findtext(".//title") == "Preview: January news"
    assert doc.findtext(".//h1") == "January news"
    assert "Five stories and two events" in doc.text_content()
    terms = [dt.text_content() for dt in doc.iter("dt")]
    assert terms == [f"{name}:" for name in HEADERS]
    values = [dd.text_content() for dd in doc.iter("dd")]
    assert "<https://example.org/unsubscribe?token=abc&list=1>" in values


def test_page_is_accessible_and_self_contained(page: str) -> None:
    """lang from the email, h1/h2 headings, and no external resource or script source."""
    doc = lxml.html.document_fromstring(page)
    assert doc.get("lang") == "fr"
    assert len(list(doc.iter("h1"))) == 1 and len(list(doc.iter("h2"))) >= 3
    assert not doc.xpath("//link | //img | //script[@src] | //iframe[@src] | //object | //embed")
    assert "@import" not in page and "url(" not in "".join(doc.xpath("//style/text()"))


def test_email_without_head_still_gets_a_base() -> None:
    """A fragment without <head> still gets the new-tab base, before its content."""
    page = render_preview(html="<p>hi</p>", text="hi", subject="s", preheader="p", headers={}, sample={})
    assert all(f.get("srcdoc").startswith('<base target="_blank">') for f in frames(page))


def recorder(calls: list[str]) -> Callable[[str], bool]:
    """A stand-in for webbrowser.open that notes the URL and says it opened it."""

    def open_url(url: str) -> bool:
        calls.append(url)
        return True

    return open_url


def test_open_in_browser_without_a_desktop_opens_nothing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """With no display and no $BROWSER it returns False without calling webbrowser (no lynx takeover)."""
    for var in ("DISPLAY", "WAYLAND_DISPLAY", "BROWSER"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(preview.sys, "platform", "linux")
    calls: list[str] = []
    monkeypatch.setattr(webbrowser, "open", recorder(calls))
    assert open_in_browser(tmp_path / "preview.html") is False
    assert calls == []


def test_open_in_browser_opens_the_file_uri(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """With a display it hands webbrowser the file:// URI and reports what webbrowser answered."""
    monkeypatch.setenv("DISPLAY", ":0")
    calls: list[str] = []
    monkeypatch.setattr(webbrowser, "open", recorder(calls))
    target = tmp_path / "build" / "preview.html"
    assert open_in_browser(target) is True
    assert calls == [target.resolve().as_uri()]
    monkeypatch.setattr(webbrowser, "open", lambda url: False)
    assert open_in_browser(target) is False
