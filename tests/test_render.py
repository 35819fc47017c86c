"""Render: Selection -> MJML -> HTML, text, subject, preheader; email-quality rules on the result.

Golden snapshots: tests/golden/digest-2020-01.html (one tag per line) and digest-2020-01.txt, from
_factories.golden_selection(). After an intended template change, regenerate them with

    DIGEST_UPDATE_GOLDEN=1 pytest tests/test_render.py -k golden

and review the diff before committing.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import re
import socket
import sys
from pathlib import Path
from typing import Any

import lxml.html
import mjml
import pytest
from _factories import (
    POSTAL_ADDRESS,
    fresh_python,
    golden_selection,
    make_event,
    make_item,
    make_selection,
    make_settings,
    month_window,
    realistic_selection,
)

from digest.config import Section, Settings
from digest.css import style_blocks
from digest.errors import TemplateError
from digest.inline import inline_css, strip_remote_css
from digest.models import Selection, Window
from digest.render import (
    compile_mjml,
    date_range,
    edition_id,
    event_when,
    group_items,
    make_environment,
    period_title,
    render,
    shown_actions,
)

GOLDEN = Path(__file__).parent / "golden"
CONTENT = Path(__file__).resolve().parent.parent / "content"
EDITION = "mayors-innovation-2020-01"
GENERIC = re.compile(r"^\s*(click here|here|read more|more|learn more)[\s.!:…»→]*$", re.IGNORECASE)


# --- fixtures -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A newsletter folder without templates of its own: the shipped templates render."""
    return make_settings(tmp_path_factory.mktemp("newsletter"))


def _all_content(settings: Settings) -> Selection:
    """Every shipped content item in one selection, or 47 realistic factory items until content/ has them."""
    if len(list(CONTENT.glob("*.md"))) >= 47:
        from digest.content import load_content

        items = load_content(CONTENT, settings).items
        window = Window(dt.date(2000, 1, 1), dt.date(2030, 12, 31), "America/Chicago", "2000-01-01..2030-12-31")
        return make_selection(items, window=window)
    return realistic_selection(47)


@pytest.fixture(scope="module")
def golden_html(settings: Settings) -> str:
    return render(golden_selection(), settings, edition=EDITION).html


@pytest.fixture(scope="module", params=["golden", "all-content", "factory-47"])
def html(request: pytest.FixtureRequest, settings: Settings) -> str:
    """The rendered HTML of the golden edition, of all shipped content, and of 47 heavy factory items."""
    selection = {
        "golden": golden_selection,
        "all-content": lambda: _all_content(settings),
        "factory-47": lambda: realistic_selection(47),
    }[request.param]()
    return render(selection, settings, edition=EDITION).html


def _doc(html: str) -> Any:
    return lxml.html.document_fromstring(html)


def _media_blocks(css: str) -> list[str]:
    """The `@media ... { ... }` blocks of a stylesheet, braces balanced."""
    blocks = []
    for match in re.finditer(r"@media[^{]*\{", css):
        depth, i = 1, match.end()
        while depth and i < len(css):
            depth += {"{": 1, "}": -1}.get(css[i], 0)
            i += 1
        blocks.append(css[match.start() : i])
    return blocks


# --- accessibility and client rules (EMAIL-QUALITY rows 1-3, 9-24) ---------------------------------


def test_html_has_lang_and_dir(html: str) -> None:
    """<html> carries the newsletter's lang and dir."""
    root = _doc(html)
    assert (root.get("lang"), root.get("dir")) == ("en", "ltr")


def test_every_body_child_has_lang_and_dir(html: str) -> None:
    """Each element directly in <body> has lang and dir (EMC rules 1 and 2)."""
    children = [c for c in _doc(html).body if isinstance(c.tag, str)]
    assert children
    assert all(c.get("lang") == "en" and c.get("dir") == "ltr" for c in children), [c.attrib for c in children]


def test_layout_tables_are_presentation(html: str) -> None:
    """Every table without <th> has role=presentation."""
    tables = _doc(html).iter("table")
    bad = [t for t in tables if not t.findall(".//th") and t.get("role") not in ("presentation", "none")]
    assert not bad


def test_images_have_alt(settings: Settings) -> None:
    """The logo and item images have alt; an item image without image_alt is decorative (alt="")."""
    with_logo = dataclasses.replace(settings, logo="https://example.org/logo.png", logo_alt="MIP logo")
    item = make_item("pic", image="https://example.org/p.jpg")
    html = render(make_selection([item, *golden_selection().posted]), with_logo, edition=EDITION).html
    images = list(_doc(html).iter("img"))
    assert len(images) == 3
    assert all(img.get("alt") is not None for img in images)
    assert {img.get("alt") for img in images} == {"MIP logo", "Six mayors on a stage", ""}


def test_links_have_descriptive_names(html: str) -> None:
    """Every link has a non-empty accessible name that is not just "read more", "here" or "click here"."""
    for a in _doc(html).iter("a"):
        name = (a.get("aria-label") or a.text_content() or a.get("title") or "").strip()
        assert name, lxml.html.tostring(a)
        assert not GENERIC.match(name), name


def test_actions_are_named_after_their_item(settings: Settings) -> None:
    """An action link's aria-label names the item; a generic action to the title's own page is left out."""
    item = make_item(
        "x", title="Water Report", actions=[("Read More", None), ("Register Now", "https://example.org/r")]
    )
    assert [a.label for a in shown_actions(item)] == ["Register Now"]
    html = render(make_selection([item]), dataclasses.replace(settings, utm=False), edition=EDITION).html
    links = {a.text_content(): a.get("aria-label") for a in _doc(html).iter("a")}
    assert links["Register Now"] == "Register Now: Water Report"
    assert "Read More" not in links


def test_both_parts_show_the_same_actions(settings: Settings) -> None:
    """An action to the item's own page with a label of its own is in both parts; a generic one in neither."""
    item = make_item("x", title="Water Report", actions=[("Read More", None), ("Register Now", None)])
    out = render(make_selection([item]), dataclasses.replace(settings, utm=False), edition=EDITION)
    links = {a.text_content(): a.get("href") for a in _doc(out.html).iter("a")}
    assert links["Register Now"] == item.url and "Read More" not in links
    assert f"Register Now: {item.url}\n" in out.text and "Read More" not in out.text


def test_an_action_label_leads_in_once_escaped_and_without_its_stop(settings: Settings) -> None:
    """An action label's closing stop is dropped in its aria-label and text line, and its '&' escaped once."""
    item = make_item("m", title="Summer 2017 Meeting", actions=[("Learn more & register here.", None)])
    out = render(make_selection([item]), dataclasses.replace(settings, utm=False), edition=EDITION)
    (link,) = [a for a in _doc(out.html).iter("a") if a.get("aria-label", "").startswith("Learn")]
    assert link.get("aria-label") == "Learn more & register here: Summer 2017 Meeting"
    assert link.text_content() == "Learn more & register here."
    assert 'aria-label="Learn more &amp; register here: Summer 2017 Meeting"' in out.html
    assert "&amp;amp;" not in out.html
    assert f"\nLearn more & register here: {item.url}\n" in out.text


@pytest.mark.parametrize(
    ("start", "end", "when", "shown"),
    [
        (dt.date(2014, 11, 18), None, "Tuesday, November 18", "November 18, 2014"),
        (dt.date(2018, 3, 7), None, "Wed, March 7, 2018", "March 7, 2018"),
        (dt.date(2015, 12, 6), dt.date(2015, 12, 7), "December 6 - 7, 2015 in Boston, MA", "December 6 – 7, 2015"),
        (
            dt.date(2017, 8, 16),
            dt.date(2017, 8, 18),
            "Wednesday, August 16 - Friday, August 18",
            "August 16 – 18, 2017",
        ),
        (
            dt.date(2019, 5, 15),
            None,
            "Wednesday, May 15, 1 - 2pm CST",
            "May 15, 2019 · Wednesday, May 15, 1 - 2pm CST",
        ),
    ],
)
def test_an_event_date_is_shown_once(
    settings: Settings, start: dt.date, end: dt.date | None, when: str, shown: str
) -> None:
    """A `when` that adds only weekday names or "in" to the dates and place is not shown again; a time is."""
    item = make_event("e", title="Workshop", start=start, end=end, when=when, place="Boston, MA")
    assert event_when(item) == shown
    out = render(make_selection([], upcoming=[item]), settings, edition=EDITION)
    assert f"When: {shown}\n" in out.text
    assert f"<b>When:</b> {shown}<br>" in out.html


def test_title_is_the_subject_and_one_h1(html: str) -> None:
    """<title> is non-empty and there is exactly one <h1> (name and period)."""
    doc = _doc(html)
    assert doc.findtext(".//title").strip()
    h1 = doc.findall(".//h1")
    assert len(h1) == 1 and "Mayors Innovation Project" in h1[0].text_content()


def test_color_scheme_metas_and_root_rule(html: str) -> None:
    """Both color-scheme metas say "light dark" and :root declares color-scheme."""
    doc = _doc(html)
    metas = {m.get("name"): m.get("content") for m in doc.iter("meta") if m.get("name")}
    assert metas["color-scheme"] == "light dark"
    assert metas["supported-color-schemes"] == "light dark"
    assert re.search(r":root\s*\{[^}]*color-scheme:\s*light dark", html)


def test_dark_mode_block_with_important(html: str) -> None:
    """A prefers-color-scheme: dark block exists and every declaration in it is !important."""
    css = "".join(style_blocks(html))
    dark = [b for b in _media_blocks(css) if "prefers-color-scheme" in b]
    assert len(dark) == 1
    declarations = re.findall(r"[\w-]+\s*:\s*[^;{}]+", dark[0].split("{", 1)[1])
    assert declarations and all(d.rstrip().endswith("!important") for d in declarations), declarations


def test_responsive_media_queries_keep_important(html: str) -> None:
    """MJML's column widths and our phone rules keep !important after premailer."""
    css = "".join(style_blocks(html))
    assert re.search(
        r"@media only screen and \(min-width:480px\)\s*\{\s*\.mj-column-per-\d+\s*\{\s*width:\d+%\s*!important", css
    )
    phone = [b for b in _media_blocks(css) if "max-width:479px" in b]
    assert phone and "!important" in phone[0]


def test_viewport_allows_zoom(html: str) -> None:
    """The viewport meta does not disable zoom."""
    viewport = [m.get("content") for m in _doc(html).iter("meta") if m.get("name") == "viewport"]
    assert viewport == ["width=device-width, initial-scale=1"]
    assert "user-scalable=no" not in html and "maximum-scale=1" not in html


def test_font_sizes_are_at_least_14px(html: str) -> None:
    """Every font-size is >= 14px, except 0 on MJML's layout cells, which hold no text of their own."""
    sizes = [float(n) for n in re.findall(r"font-size:\s*(\d+(?:\.\d+)?)(?:px)?\b", html)]
    assert sizes
    assert all(s == 0 or s >= 14 for s in sizes), sorted(set(sizes))
    assert not re.search(r"font-size:\s*[\d.]+(em|rem|pt|%)", html)


def test_preheader_is_first_and_hidden(golden_html: str) -> None:
    """The preheader is the first element of the article wrapper, hidden, with the preheader text."""
    wrapper = next(c for c in _doc(golden_html).body if isinstance(c.tag, str))
    first = wrapper[0]
    assert first.get("class") == "preheader" and "display:none" in first.get("style")
    assert first.text_content().startswith("4 new items from January 2020")


def test_view_in_browser_link(html: str) -> None:
    """The header links "View in browser" to the %%view_url%% token."""
    links = [a for a in _doc(html).iter("a") if a.get("href") == "%%view_url%%"]
    assert [a.text_content() for a in links] == ["View in browser"]


def test_footer_has_address_and_unsubscribe(golden_html: str) -> None:
    """The last section holds the postal address and a visible Unsubscribe link to %%unsubscribe_url%%."""
    doc = _doc(golden_html)
    footer = doc.find_class("card")[-1]
    assert POSTAL_ADDRESS in footer.text_content()
    links = [(a.get("href"), a.text_content()) for a in footer.iter("a")]
    assert ("%%unsubscribe_url%%", "Unsubscribe") in links


def test_style_bytes_within_gmail_limit(html: str) -> None:
    """All <style> content together stays under Gmail's 16,384 bytes."""
    assert sum(len(s.encode()) for s in style_blocks(html)) <= 16_384


def test_no_style_block_mixes_nested_at_rule_with_media(html: str) -> None:
    """No <style> block has an at-rule nested in an at-rule next to @media (Gmail drops such blocks)."""
    styles = style_blocks(html)
    assert not any("@media" in s and re.search(r"@[\w-]+\s*\{[^{}]*@", s) for s in styles)


def test_no_web_fonts(html: str) -> None:
    """No stylesheet <link>, no @import, no Google Fonts."""
    assert not re.search(r"<link\b", html, re.IGNORECASE)
    assert "@import" not in html and "googleapis" not in html


def test_doctype_kept(html: str) -> None:
    """The HTML starts with <!doctype html> (premailer drops it; inline.py puts it back)."""
    assert html.startswith("<!doctype html><html ")


def test_has_multi_column_section(golden_html: str) -> None:
    """At least one section has columns side by side on desktop that stack below 480px."""
    assert "mj-column-per-50" in golden_html and "mj-column-per-70" in golden_html
    assert "@media only screen and (min-width:480px)" in golden_html


def test_size_budget_for_47_items(settings: Settings) -> None:
    """The 47-item digest stays under 90,000 bytes (Gmail clips at ~102 KB; room for click tracking)."""
    for selection in (_all_content(settings), realistic_selection(47)):
        assert len(selection) == 47
        size = len(render(selection, settings, edition=EDITION).html.encode())
        assert size <= 90_000, size


def test_bytes_per_item_well_under_2kb(settings: Settings) -> None:
    """Each extra item costs well under 2 KB of HTML (measured from 10 to 47 items)."""
    sizes = {n: len(render(realistic_selection(n), settings, edition=EDITION).html.encode()) for n in (10, 47)}
    assert (sizes[47] - sizes[10]) / 37 < 1_600, sizes


# --- content of the parts ---------------------------------------------------------------------------


def test_sections_group_items_in_configured_order(settings: Settings) -> None:
    """Featured first, upcoming events next, the rest by kind; empty sections are left out."""
    views = group_items(golden_selection(), settings.sections)
    assert [(v.id, [i.id for i in v.items]) for v in views] == [
        ("featured", ["new-mayors-cohort-2020", "from-seed-to-root"]),
        ("upcoming", ["summer-2020-annual-meeting", "data-driven-fire-department"]),
        ("news", ["women-mayors-network"]),
        ("events", ["winter-2020-policy-meeting"]),
    ]
    assert [len(v.columns) for v in views] == [2, 2, 1, 1]
    only_news = make_selection([make_item("a"), make_item("b", kind="report")])
    assert [v.id for v in group_items(only_news, settings.sections)] == ["news"]


def test_item_no_section_takes_goes_to_more(settings: Settings) -> None:
    """An item whose kind no configured section takes is shown under "More", never dropped."""
    sections = (Section("jobs", "Jobs", kinds=("job",)),)
    views = group_items(make_selection([make_item("a"), make_item("j", kind="job")]), sections)
    assert [(v.title, [i.id for i in v.items]) for v in views] == [("Jobs", ["j"]), ("More", ["a"])]


def test_text_part_has_every_item_and_the_footer(settings: Settings) -> None:
    """The text part lists every title, URL and event detail, the view URL, address and unsubscribe URL."""
    selection = golden_selection()
    text = render(selection, settings, edition=EDITION).text
    for chosen in selection.items:
        assert chosen.item.title in text
        assert chosen.item.url + "?utm_source=digest" in text
    assert "When: January 24 – 25, 2020\nWhere: Washington, DC" in text
    assert "When: March 3, 2020 · Webinar: March 3, 1 – 2pm EST\nWhere: Online" in text
    assert "View this email in your browser: %%view_url:text%%" in text
    assert POSTAL_ADDRESS in text
    assert text.rstrip().endswith("Unsubscribe: %%unsubscribe_url:text%%")


def test_each_part_uses_its_own_tokens(golden_html: str, settings: Settings) -> None:
    """HTML carries only HTML tokens, text only :text tokens (they are escaped differently)."""
    text = render(golden_selection(), settings, edition=EDITION).text
    assert ":text%%" not in golden_html and "%%unsubscribe_url%%" in golden_html
    assert re.findall(r"%%\w+%%", text) == []


def test_html_is_escaped_and_text_is_not(golden_html: str, settings: Settings) -> None:
    """A title with <...> is escaped in the HTML and kept as written in the text part."""
    assert "Women Mayors’ Network &lt;kickoff&gt;" in golden_html
    assert "Women Mayors’ Network <kickoff>" in render(golden_selection(), settings, edition=EDITION).text


def test_item_links_are_utm_tagged_placeholders_not(golden_html: str) -> None:
    """Item links carry utm_* for this edition; the view, unsubscribe and calendar links are left alone."""
    hrefs = [a.get("href") for a in _doc(golden_html).iter("a")]
    tagged = [h for h in hrefs if "utm_campaign=mayors-innovation-2020-01" in h]
    calendar = [h for h in hrefs if h.startswith("https://calendar.google.com/") or h.endswith(".ics")]
    assert calendar and not set(calendar) & set(tagged)
    assert len(tagged) == len(hrefs) - 2 - len(calendar)
    assert "https://example.org/register?event=winter-2020&src=mail&utm_source=digest" in "".join(hrefs)


def test_subject_and_preheader_are_one_line(settings: Settings) -> None:
    """Subject names the newsletter, period and lead story; preheader is one line with the first titles."""
    out = render(golden_selection(), settings, edition=EDITION)
    assert out.subject == "Mayors Innovation Project, January 2020: New Mayors Cohort 2020 and 5 more"
    assert "\n" not in out.preheader and "From Seed to Root" in out.preheader


def test_event_shows_dates_when_and_place(settings: Settings) -> None:
    """An event shows its dates; its when-text only when it adds something; its place or Online."""
    ev = make_event(
        "e",
        start=dt.date(2020, 4, 2),
        end=dt.date(2020, 4, 3),
        when="April 2 - 3, 2020, Detroit, MI",
        place="Detroit, MI",
    )
    web = make_event("w", start=dt.date(2020, 3, 3), when="Webinar: March 3, 1 – 2pm EST", online=True)
    html = render(make_selection([ev, web]), settings, edition=EDITION).html
    meta = [" ".join(" ".join(p.itertext()).split()) for p in _doc(html).find_class("m") if "When" in p.text_content()]
    assert meta == [
        "When: April 2 – 3, 2020 Where: Detroit, MI Posted January 15, 2020",
        "When: March 3, 2020 · Webinar: March 3, 1 – 2pm EST Where: Online Posted January 15, 2020",
    ]


def test_rtl_newsletter(settings: Settings) -> None:
    """direction=rtl reaches <html dir>, the body's children and the text alignment."""
    rtl = dataclasses.replace(settings, language="ar", direction="rtl")
    html = render(golden_selection(), rtl, edition=EDITION).html
    doc = _doc(html)
    assert (doc.get("lang"), doc.get("dir")) == ("ar", "rtl")
    assert all(c.get("dir") == "rtl" for c in doc.body if isinstance(c.tag, str))
    assert "text-align:right" in html


# --- dates and ids ----------------------------------------------------------------------------------


def test_period_title() -> None:
    """A whole month reads "January 2020"; other windows read as a date range."""
    assert period_title(month_window(2020, 1)) == "January 2020"
    assert period_title(month_window(2020, 2)) == "February 2020"
    tz = "America/Chicago"
    assert period_title(Window(dt.date(2020, 1, 1), dt.date(2020, 1, 15), tz, "x")) == "January 1 – 15, 2020"
    assert period_title(Window(dt.date(2020, 1, 25), dt.date(2020, 2, 5), tz, "x")) == "January 25 – February 5, 2020"
    assert (
        period_title(Window(dt.date(2019, 12, 20), dt.date(2020, 1, 5), tz, "x"))
        == "December 20, 2019 – January 5, 2020"
    )
    assert date_range(dt.date(2020, 3, 3)) == "March 3, 2020"


def test_edition_id(settings: Settings) -> None:
    """The edition id is the slug plus the window label."""
    assert edition_id(settings, month_window(2020, 1)) == "mayors-innovation-2020-01"


# --- templates: overrides and errors -----------------------------------------------------------------


def _newsletter(tmp_path: Path, **templates: str) -> Settings:
    folder = tmp_path / "templates"
    folder.mkdir()
    for name, body in templates.items():
        (folder / name.replace("__", ".")).write_text(body, encoding="utf-8")
    return make_settings(tmp_path)


def test_newsletter_template_overrides_shipped_one(tmp_path: Path) -> None:
    """A subject.txt.j2 in the newsletter's templates folder wins; other templates still come from the package."""
    settings = _newsletter(tmp_path, subject__txt__j2="{{ settings.name }} digest for {{ period }}")
    out = render(golden_selection(), settings, edition=EDITION)
    assert out.subject == "Mayors Innovation Project digest for January 2020"
    assert "View in browser" in out.html


def test_override_added_later_is_picked_up(tmp_path: Path) -> None:
    """A template file added after the first render is used by the next one (as under `digest serve`)."""
    settings = _newsletter(tmp_path)
    first = render(golden_selection(), settings, edition=EDITION).subject
    (tmp_path / "templates" / "subject.txt.j2").write_text("Changed", encoding="utf-8")
    second = render(golden_selection(), settings, edition=EDITION).subject
    assert (first.startswith("Mayors Innovation Project"), second) == (True, "Changed")


def test_undefined_variable_names_template_and_variable(tmp_path: Path) -> None:
    """StrictUndefined: an unknown variable is a TemplateError naming the file:line and the variable."""
    settings = _newsletter(tmp_path, preheader__txt__j2="Hello\n{{ newsletter_tagline }}")
    with pytest.raises(TemplateError) as err:
        render(golden_selection(), settings, edition=EDITION)
    message = str(err.value)
    assert f"{tmp_path / 'templates' / 'preheader.txt.j2'}:2:" in message
    assert "newsletter_tagline" in message and "TEMPLATES.md" in message


def test_error_in_a_partial_names_the_partial(tmp_path: Path) -> None:
    """An error inside an included partial points at the partial's file:line; a missing include is named."""
    settings = _newsletter(tmp_path, _item__mjml__j2="<h3>{{ item.title }}</h3>\n{{ item.tagline }}")
    with pytest.raises(TemplateError, match=r"_item\.mjml\.j2:2: .*has no attribute 'tagline'"):
        render(golden_selection(), settings, edition=EDITION)
    (tmp_path / "templates" / "_item.mjml.j2").write_text('{% include "_card.mjml.j2" %}', encoding="utf-8")
    with pytest.raises(TemplateError, match=r"_item\.mjml\.j2:1: template '_card\.mjml\.j2' not found"):
        render(golden_selection(), settings, edition=EDITION)


def test_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    """A Jinja syntax error is a TemplateError with file:line and the fix."""
    settings = _newsletter(tmp_path, subject__txt__j2="line one\n{% if %}")
    with pytest.raises(TemplateError, match=r"subject\.txt\.j2:2: template syntax error: .*; fix the syntax"):
        render(golden_selection(), settings, edition=EDITION)


def test_invalid_mjml_is_a_template_error(tmp_path: Path) -> None:
    """MJML that mjml-python cannot parse is a TemplateError naming the template, not a ValueError."""
    settings = _newsletter(tmp_path, digest__mjml__j2="<mjml><mj-body><mj-section>")
    with pytest.raises(TemplateError, match=r"digest\.mjml\.j2: the generated MJML is invalid"):
        render(golden_selection(), settings, edition=EDITION)


def test_autoescape_on_for_markup_off_for_text(settings: Settings) -> None:
    """Autoescape is on for .mjml.j2/.html.j2 templates and off for .txt.j2."""
    env = make_environment(settings)
    assert env.autoescape("digest.mjml.j2") and env.autoescape("_item.mjml.j2") and env.autoescape("page.html.j2")  # type: ignore[operator]
    assert not env.autoescape("digest.txt.j2")  # type: ignore[operator]


# --- inline.py ------------------------------------------------------------------------------------


def _mrml(body: str = "<mj-text>Hi</mj-text>", font: str = "Helvetica") -> str:
    return mjml.mjml2html(
        f'<mjml lang="en" dir="ltr"><mj-head><mj-attributes><mj-all font-family="{font}, Arial" /></mj-attributes>'
        "<mj-style>.x{color:red} @media (prefers-color-scheme:dark){.x{color:blue !important}}</mj-style></mj-head>"
        f"<mj-body><mj-section><mj-column>{body}</mj-column><mj-column>{body}</mj-column></mj-section></mj-body></mjml>",
        disable_comments=True,
        fonts=None,  # mjml-python's default font map: Roboto brings a Google Fonts <link> and @import
    )


def test_outlook_conditional_comments_survive_inlining(golden_html: str, settings: Settings) -> None:
    """Every Outlook conditional comment MRML wrote is still there after premailer."""
    source = render(golden_selection(), settings, edition=EDITION).mjml
    compiled = compile_mjml(source)
    assert compiled.count("<!--[if") == golden_html.count("<!--[if") > 10
    assert compiled.count("<![endif]-->") == golden_html.count("<![endif]-->")


def test_inline_css_puts_rules_on_elements_and_keeps_style_blocks() -> None:
    """Class rules become style attributes; <style> blocks stay verbatim, media queries included."""
    compiled = _mrml('<mj-text css-class="x"><p class="x">Hi</p></mj-text>')
    out = inline_css(compiled)
    assert 'class="x" style="display:block; margin:13px 0; color:red"' in out
    assert style_blocks(compiled) == style_blocks(out)
    assert "@media (prefers-color-scheme:dark){.x{color:blue !important}}" in out


def test_inline_css_strips_remote_css_and_never_touches_the_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Google Fonts <link> and @import are removed before premailer; no socket is ever opened."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    compiled = _mrml(font="Roboto")
    assert "fonts.googleapis.com" in compiled and "@import" in compiled
    out = inline_css(compiled)
    assert "googleapis" not in out and "@import" not in out and "<link" not in out
    assert "<!--[if !mso]><!-->" in out  # the font block's own conditional stays balanced


def test_cssutils_cannot_fetch_an_import_that_slipped_through() -> None:
    """An @import that reaches cssutils directly fails at its stand-in fetcher; urllib is never loaded."""
    import cssutils

    parser = cssutils.CSSParser(fetcher=None, raiseExceptions=True)
    with pytest.raises(RuntimeError, match="without network access"):
        parser.parseString('@import url("https://fonts.example.org/a.css"); a{color:red}', href="https://x.org/")
    assert "cssutils._fetch" not in sys.modules


def test_premailer_is_imported_without_urllib_request_and_cssutils_still_cannot_fetch() -> None:
    """A fresh interpreter inlines without importing urllib.request, and cssutils still cannot read an @import."""
    script = (
        "import sys\n"
        "from digest.inline import inline_css\n"
        "out = inline_css('<html><head><style>p{color:red}</style></head><body><p>x</p></body></html>')\n"
        "assert 'style=\"color:red\"' in out, out\n"
        "assert 'urllib.request' not in sys.modules and 'http.client' not in sys.modules\n"
        "import cssutils\n"
        "parser = cssutils.CSSParser(fetcher=None, raiseExceptions=True)\n"
        "try:\n"
        "    parser.parseString('@import url(\"local.css\"); a{color:red}')\n"
        "except AttributeError as exc:\n"
        "    assert 'request' in str(exc), exc\n"
        "else:\n"
        "    raise SystemExit('the @import was resolved')\n"
        "print('ok')\n"
    )
    done = fresh_python(script)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_strip_remote_css_keeps_other_rules() -> None:
    """Only the @import goes; the rest of that <style> block stays."""
    html = '<style>@import url("https://x.org/a.css"); .a{color:red}</style><link rel="stylesheet" href="b.css">'
    assert strip_remote_css(html) == "<style> .a{color:red}</style>"


def test_inline_css_adds_lang_dir_to_bare_body_children() -> None:
    """A raw block directly in <body> (mj-preview, say) gets the document's lang and dir."""
    out = inline_css('<!doctype html><html lang="fr" dir="rtl"><head></head><body><div>x</div><!-- c --></body></html>')
    assert '<body><div lang="fr" dir="rtl">x</div><!-- c --></body>' in out


def test_mjml_python_emits_no_font_link_with_empty_font_map() -> None:
    """fonts={} keeps MRML from adding a Google Fonts <link>, even for a font in its default map."""
    text = '<mj-text font-family="Roboto">x</mj-text>'
    source = f"<mjml><mj-body><mj-section><mj-column>{text}</mj-column></mj-section></mj-body></mjml>"
    assert "googleapis" in mjml.mjml2html(source)
    assert "googleapis" not in compile_mjml(source)


# --- golden snapshots -----------------------------------------------------------------------------


def _normalise_html(html: str) -> str:
    """One tag per line so a diff points at the change; nothing in the output is volatile."""
    return re.sub(r">\s*<", ">\n<", html).strip() + "\n"


def _check_golden(name: str, actual: str) -> None:
    path = GOLDEN / name
    if os.environ.get("DIGEST_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(exist_ok=True)
        path.write_text(actual, encoding="utf-8", newline="")
        pytest.skip(f"updated {path}")
    assert path.is_file(), f"{path} missing; run DIGEST_UPDATE_GOLDEN=1 pytest tests/test_render.py -k golden"
    expected = path.read_text(encoding="utf-8")
    assert actual == expected, (
        f"{name} differs; if intended, regenerate with DIGEST_UPDATE_GOLDEN=1 pytest tests/test_render.py -k golden"
    )


def test_golden_html(golden_html: str) -> None:
    """The golden edition's HTML is exactly the committed snapshot (one tag per line)."""
    _check_golden("digest-2020-01.html", _normalise_html(golden_html))


def test_golden_text(settings: Settings) -> None:
    """The golden edition's text part is exactly the committed snapshot."""
    _check_golden("digest-2020-01.txt", render(golden_selection(), settings, edition=EDITION).text)


def test_unvalidated_style_parsing_changes_nothing(settings: Settings) -> None:
    """inline.py skips cssutils validation of style attributes for speed; the output is byte-identical."""
    from premailer import merge_style

    from digest import inline

    compiled = compile_mjml(render(realistic_selection(12), settings, edition=EDITION).mjml)
    fast = inline.inline_css(compiled)
    try:
        merge_style.csstext_to_pairs = inline._validated_pairs
        slow = inline.inline_css(compiled)
    finally:
        merge_style.csstext_to_pairs = inline._pairs_unvalidated
    assert fast == slow
