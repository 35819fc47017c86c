"""Links: UTM tagging of content URLs, and what is never tagged."""

from __future__ import annotations

import pytest
from _factories import make_settings

from digest.links import is_taggable, tag_html, tag_url, utm_for

UTM = {"source": "digest", "medium": "email", "campaign": "mayors-innovation-2020-01", "content": "item-1"}
TAIL = "utm_source=digest&utm_medium=email&utm_campaign=mayors-innovation-2020-01&utm_content=item-1"


def test_plain_url_gets_all_four_parameters() -> None:
    """A URL without a query gets source, medium, campaign and content in that order."""
    assert tag_url("https://example.org/news/a", **UTM) == f"https://example.org/news/a?{TAIL}"


def test_existing_query_and_fragment_are_kept_verbatim() -> None:
    """Parameters already there keep their exact spelling; the fragment stays at the end."""
    url = "https://example.org/p?id=7&q=a%20b&empty=#part-2"
    assert tag_url(url, **UTM) == f"https://example.org/p?id=7&q=a%20b&empty=&{TAIL}#part-2"
    assert tag_url("https://example.org/p?x=1&", **UTM) == f"https://example.org/p?x=1&{TAIL}"
    assert tag_url("https://example.org/p?", **UTM) == f"https://example.org/p?{TAIL}"


def test_existing_utm_is_never_overridden() -> None:
    """A utm_* the author set (any case) stays; only the missing ones are added."""
    url = "https://example.org/p?UTM_Source=partner&utm_campaign=spring"
    tagged = tag_url(url, **UTM)
    assert tagged == url + "&utm_medium=email&utm_content=item-1"
    full = f"https://example.org/p?{TAIL}"
    assert tag_url(full, source="x", medium="y", campaign="z", content="w") == full


@pytest.mark.parametrize(
    "url",
    [
        "mailto:info@example.org",
        "tel:+16085551234",
        "#section-news",
        "%%unsubscribe_url%%",
        "https://example.org/unsubscribe?token=%%token%%",
        "/news/relative",
        "//example.org/protocol-relative",
        "",
        "javascript:alert(1)",
        "http://[::1",
    ],
)
def test_untaggable_urls_are_returned_unchanged(url: str) -> None:
    """mailto:, tel:, anchors, placeholders, relative and odd URLs pass through untouched."""
    assert not is_taggable(url)
    assert tag_url(url, **UTM) == url


def test_values_are_url_encoded_and_empty_ones_left_out() -> None:
    """Spaces and & in values are percent-encoded; an empty content adds no parameter."""
    tagged = tag_url("http://example.org/", source="news letter", medium="e&mail", campaign="c", content="")
    assert tagged == "http://example.org/?utm_source=news%20letter&utm_medium=e%26mail&utm_campaign=c"


def test_utm_for_uses_edition_and_item_id() -> None:
    """The renderer's tagger sets campaign to the edition and content to the item id."""
    tag = utm_for(make_settings(utm_source="mip", utm_medium="newsletter"), "mayors-innovation-2020-01")
    assert tag("https://example.org/a", "cities-at-work") == (
        "https://example.org/a?utm_source=mip&utm_medium=newsletter"
        "&utm_campaign=mayors-innovation-2020-01&utm_content=cities-at-work"
    )
    assert tag("mailto:a@example.org", "x") == "mailto:a@example.org"


def test_utm_off_is_the_identity() -> None:
    """With utm = false in the settings no URL changes."""
    tag = utm_for(make_settings(utm=False), "e")
    assert tag("https://example.org/a", "i") == "https://example.org/a"


def test_tag_html_rewrites_hrefs_and_keeps_entities_right() -> None:
    """Hrefs in a summary are tagged; &amp; stays escaped; mailto and anchors stay as they are."""
    fragment = (
        '<p>See <a href="https://example.org/r?a=1&amp;b=2" rel="noopener">the report</a>, '
        "<a href='https://example.org/x'>x</a>, <a href=\"mailto:a@example.org\">mail</a> "
        'and <a href="#top">top</a>.</p>'
    )
    tag = utm_for(make_settings(), "ed")
    out = tag_html(fragment, lambda url: tag(url, "item"))
    assert 'href="https://example.org/r?a=1&amp;b=2&amp;utm_source=digest&amp;utm_medium=email' in out
    assert "href='https://example.org/x?utm_source=digest&amp;utm_medium=email&amp;utm_campaign=ed" in out
    assert 'href="mailto:a@example.org"' in out and 'href="#top"' in out
    assert out.count("utm_source") == 2
