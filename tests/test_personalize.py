"""Personalize: placeholder tokens, escaping, which tokens a content uses, values shared by everyone."""

from __future__ import annotations

from pathlib import Path

import _factories as factories
import pytest

from digest.personalize import (
    FIELDS,
    HTML_TOKENS,
    TEXT_TOKENS,
    fill,
    html_value,
    sample_values,
    substitutions,
    tokens_used,
    with_shared_values,
)


def test_html_value_escapes_exactly_what_html_escape_does() -> None:
    """The fast path (nothing to escape) and the slow path agree with html.escape(quote=True)."""
    import html

    for value in ("", "ann@example.org", "https://x.org/u?t=a.b", "O'Neil & <Sons>", 'say "hi"', "Zoë"):
        assert html_value(value) == html.escape(value, quote=True)


def test_substitutions_cover_every_field_and_blank_the_missing_ones() -> None:
    """Both token kinds for every field; HTML escaped, text plain; a field not given is empty."""
    subs = substitutions({"name": "Ann & Bo", "email": "ann@example.org"})
    assert set(subs) == set(HTML_TOKENS.values()) | set(TEXT_TOKENS.values())
    assert subs["%%name%%"] == "Ann &amp; Bo" and subs["%%name:text%%"] == "Ann & Bo"
    assert subs["%%view_url%%"] == subs["%%view_url:text%%"] == ""


def test_tokens_used_lists_only_placeholders_present() -> None:
    """A field appears when either of its tokens is in the content, with "" for the kind that is absent."""
    used = tokens_used(html='<a href="%%unsubscribe_url%%">x</a> %%name%%', text="Hi %%name:text%%")
    assert used == (("name", "%%name%%", "%%name:text%%"), ("unsubscribe_url", "%%unsubscribe_url%%", ""))
    assert tokens_used(html="", text="") == ()
    everything = " ".join([*HTML_TOKENS.values(), *TEXT_TOKENS.values()])
    assert [field for field, _, _ in tokens_used(html=everything, text=everything)] == list(FIELDS)


def test_with_shared_values_fills_once_and_leaves_the_personal_tokens() -> None:
    """The view URL goes into both parts (escaped in HTML) and the subject; personal tokens stay for delivery."""
    build = factories.make_build(
        '<a href="%%view_url%%">view</a> %%name%%',
        "View: %%view_url:text%%\nHi %%name:text%%\n",
        subject="S %%view_url:text%%",
    )
    url = "https://x.org/digest/2020-01?a=1&b=2"
    shared = with_shared_values(build, {"view_url": url})
    assert shared.html == '<a href="https://x.org/digest/2020-01?a=1&amp;b=2">view</a> %%name%%'
    assert shared.text == f"View: {url}\nHi %%name:text%%\n" and shared.subject == f"S {url}"
    assert fill(shared.html, {"name": "Ann"}) == fill(build.html, {"name": "Ann", "view_url": url})
    assert shared.content_hash == build.content_hash  # the ledger still knows the edition by its build


def test_sample_values_use_the_edition_given_and_no_other() -> None:
    """The sample view URL names the edition being built, never a fixed month."""
    settings = factories.make_settings(view_url="{base_url}/digest/{edition}")
    assert sample_values(settings, "mayors-innovation-2031-07")["view_url"].endswith(
        "/digest/mayors-innovation-2031-07"
    )
    assert "2020-01" not in sample_values(settings, "")["view_url"]


def test_the_sample_token_from_the_cache_is_the_one_make_token_makes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sample token is kept per list in the cache folder and equals a fresh make_token, with caches on or off."""
    from digest.personalize import _SAMPLE_SECRET, SAMPLE_EMAIL
    from digest.unsubscribe_tokens import make_token, verify_token

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    settings = factories.make_settings(slug="river-city")
    made = sample_values(settings, "")["unsubscribe_url"]
    assert list((tmp_path / "digest" / "sample-tokens").iterdir())
    again = sample_values(settings, "")["unsubscribe_url"]
    monkeypatch.setenv("DIGEST_NO_CACHE", "1")
    uncached = sample_values(settings, "")["unsubscribe_url"]
    token = make_token(SAMPLE_EMAIL, "river-city", _SAMPLE_SECRET)
    assert made == again == uncached and token in made
    assert verify_token(token, _SAMPLE_SECRET) == (SAMPLE_EMAIL, "river-city")
    other = factories.make_settings(slug="lake-town")
    assert make_token(SAMPLE_EMAIL, "lake-town", _SAMPLE_SECRET) in sample_values(other, "")["unsubscribe_url"]
