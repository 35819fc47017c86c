"""Load stage: content/*.md -> Items, and every problem of a broken folder reported at once."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest

from digest.config import Settings
from digest.content import load_content
from digest.errors import ContentError
from digest.markup import markdown_html, markdown_text
from digest.models import LoadResult

ROOT = Path(__file__).resolve().parents[1]
CONTENT = ROOT / "content"
SETTINGS = Settings(root=ROOT)
SEED = Path(__file__).parent / "data" / "news-page.txt"  # the news page the shipped content was copied from

# The 47 items of the source news page (title, posted date), newest first as the page lists them.
PAGE = [
    ("What Mayors Need to Know Now", "2020-03-17"),
    ("From Seed to Root", "2020-02-05"),
    ("New Mayors Cohort 2020", "2020-01-28"),
    ("Summer 2020 Annual Meeting", "2020-01-21"),
    ("A Public Water Utility Workshop on Affordability", "2019-12-19"),
    ("Setting the Agenda", "2019-12-04"),
    ("Actionable Solutions for Public Water", "2019-11-21"),
    ("Women Mayors’ Network", "2019-11-21"),
    ("Winter 2020 Policy Meeting", "2019-10-24"),
    ("Member City Spotlight", "2019-10-23"),
    ("Webinar: The Data-Driven Fire Department", "2019-04-30"),
    ("Defense Against the Dark Arts", "2019-01-22"),
    ("Leading with Transit", "2018-11-08"),
    ("Modernizing Mitigation", "2018-10-22"),
    ("Private Capital for Green Infrastructure", "2018-08-19"),
    ("Winter 2019 Meeting", "2018-08-17"),
    ("Building Immigrant-friendly Cities", "2018-05-10"),
    ("Join us: Advancing Racial Equity", "2018-02-16"),
    ("Behavioral Science Cohort", "2018-01-29"),
    ("Investing In The Age of Climate Change", "2017-08-30"),
    ("Preserving Local Control", "2017-08-03"),
    ("We’re Hiring!", "2017-05-17"),
    ("Summer 2017 Meeting", "2017-02-13"),
    ("Immigration Enforcement", "2017-02-03"),
    ("Fostering Resilience", "2016-08-11"),
    ("2016 Summer Meeting", "2016-06-15"),
    ("Integrated Water Management", "2016-06-15"),
    ("A Pittsburgh that Works for Working People", "2016-05-23"),
    ("Local Control Workshop", "2015-10-16"),
    ("2016 Winter Meeting", "2015-08-27"),
    ("A District That Works", "2015-07-22"),
    ("Summer Meeting in Des Moines", "2015-03-25"),
    ("Urban Parking", "2015-03-18"),
    ("Winter 2015 Meeting", "2014-11-04"),
    ("Building Livable Communities", "2014-10-21"),
    ("Workshop: State Preemption of Local Authority", "2014-09-29"),
    ("Boston Carbon Risk Forum 2014", "2014-08-08"),
    ("A Boston That Works", "2014-07-11"),
    ("Summer 2014 Meeting", "2014-07-03"),
    ("Urban Freight Transportation", "2014-05-02"),
    ("Local Food and Economic Development", "2014-04-15"),
    ("Winter 2014 Meeting", "2014-02-26"),
    ("Re-Thinking the Urban Freeway", "2014-02-26"),
    ("Divestment from Fossil Fuels", "2014-02-26"),
    ("Cities at Work", "2014-02-06"),
    ("Local Living Wage Ordinances", "2013-11-19"),
    ("Promoting Access to Healthy Local Food", "2012-10-22"),
]
CTA_LABELS = {"Read More", "Read more", "Learn more.", "Learn More", "Register Now", "More Information", "View Here"}


@pytest.fixture(scope="module")
def shipped() -> LoadResult:
    return load_content(CONTENT, SETTINGS)


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def item_file(title: str = "An item", date: str = "2020-01-15", extra: str = "", body: str = "Body.") -> str:
    return f"---\ntitle: {title}\ndate: {date}\n{extra}---\n\n{body}\n"


def problems(folder: Path) -> list[str]:
    with pytest.raises(ContentError) as caught:
        load_content(folder, SETTINGS)
    return [str(p) for p in caught.value.problems]


# --- the shipped content ---------------------------------------------------------------------------------------------


def test_all_page_items_are_shipped_with_their_titles_and_dates(shipped: LoadResult) -> None:
    """Every item of the news page is a content file with the page's exact title and posted date."""
    loaded = sorted((item.title, item.date.isoformat()) for item in shipped.items)
    assert len(PAGE) == 47
    assert loaded == sorted(PAGE)
    assert shipped.warnings == ()


def test_expected_list_and_texts_come_from_the_seed_page(shipped: LoadResult) -> None:
    """PAGE matches the seed page, and subtitles, event lines and summaries are copied from it verbatim."""
    seed = SEED.read_text(encoding="utf-8")
    lines = [line for line in seed.split("\n") if line.strip()]
    dated = [n for n, line in enumerate(lines) if re.fullmatch(r"[A-Z][a-z]+ \d{1,2}, \d{4}", line)]
    assert len(dated) == 47
    for (title, date), n in zip(PAGE, dated, strict=True):
        # The title is the line before the date, or the one before that when an optional second line sits between.
        assert title in (lines[n - 1], lines[n - 2])
        assert dt.datetime.strptime(lines[n], "%B %d, %Y").date().isoformat() == date
    for item in shipped.items:
        body = item.source.read_text(encoding="utf-8").split("\n---\n", 1)[1].strip()
        assert body in seed, item.id
        for text in (item.subtitle, item.event.when if item.event else ""):
            assert text in seed, item.id


def test_posted_dates_span_the_page(shipped: LoadResult) -> None:
    """Items run from 2020-03-17 down to 2012-10-22, newest first."""
    dates = [item.date for item in shipped.items]
    assert dates[0] == dt.date(2020, 3, 17)
    assert dates[-1] == dt.date(2012, 10, 22)
    assert dates == sorted(dates, reverse=True)


def test_ids_are_unique_and_match_file_names(shipped: LoadResult) -> None:
    """Ids are unique and each file is named YYYY-MM-DD-<id>.md."""
    ids = [item.id for item in shipped.items]
    assert len(set(ids)) == 47
    for item in shipped.items:
        assert item.source.name == f"{item.date.isoformat()}-{item.id}.md"


def test_first_three_items_are_featured(shipped: LoadResult) -> None:
    """Only the three items under the page's "Featured News" heading are featured."""
    featured = [item.title for item in shipped.items if item.featured]
    assert featured == [title for title, _ in PAGE[:3]]


def test_event_dates_places_and_online(shipped: LoadResult) -> None:
    """Event lines become start/end dates, the verbatim `when`, the place, and online for webinars."""
    by_id = {item.id: item for item in shipped.items}
    annual = by_id["summer-2020-annual-meeting"].event
    assert annual is not None
    assert (annual.start, annual.end) == (dt.date(2020, 8, 20), dt.date(2020, 8, 22))
    assert (annual.when, annual.place, annual.online) == ("August 20 - 22, Tacoma, WA", "Tacoma, WA", False)
    webinar = by_id["private-capital-for-green-infrastructure"].event
    assert webinar is not None
    assert (webinar.start, webinar.when, webinar.online) == (
        dt.date(2018, 9, 27),
        "Webinar: September 27, 1 – 2pm EST",
        True,
    )
    policy = by_id["winter-2020-policy-meeting"].event  # dates only in the summary text
    assert policy is not None
    assert (policy.start, policy.end, policy.place) == (dt.date(2020, 1, 24), dt.date(2020, 1, 25), "Washington, DC")
    for item in shipped.items:
        if item.event:
            assert item.event.end is None or item.event.end >= item.event.start
            assert item.event.online == (item.kind == "webinar")


def test_kinds_follow_the_page_wording(shipped: LoadResult) -> None:
    """Webinars, guides, the job ad and meetings get their kinds."""
    kinds = {item.id: item.kind for item in shipped.items}
    assert kinds["webinar-the-data-driven-fire-department"] == "webinar"
    assert kinds["setting-the-agenda"] == "report"
    assert kinds["were-hiring"] == "job"
    assert kinds["winter-2014-meeting"] == "meeting"
    assert kinds["local-control-workshop"] == "workshop"
    assert kinds["what-mayors-need-to-know-now"] == "news"


def test_calls_to_action_are_moved_out_of_summaries(shipped: LoadResult) -> None:
    """Labels like "Read More" become actions pointing at the item's link, not words left in the summary."""
    by_id = {item.id: item for item in shipped.items}
    for item in shipped.items:
        assert not any(item.summary_text.endswith(label) for label in CTA_LABELS), item.id
        assert all(action.url == item.url for action in item.actions)
    hiring = by_id["were-hiring"]
    assert [a.label for a in hiring.actions] == ["Read More"]
    assert hiring.url == "https://example.org/news/were-hiring"
    assert hiring.summary_text.endswith("cities across the country.")
    assert [a.label for a in by_id["summer-meeting-in-des-moines"].actions] == [
        "View Presentations",
        "View Briefing Book",
    ]
    assert [a.label for a in by_id["winter-2020-policy-meeting"].actions] == ["Learn more."]


def test_truncated_items_keep_their_ellipsis(shipped: LoadResult) -> None:
    """Items cut off on the page keep "..." and are flagged truncated; whole ones are not."""
    by_id = {item.id: item for item in shipped.items}
    cut = by_id["new-mayors-cohort-2020"]
    assert cut.truncated and cut.summary_text.endswith("agendas while...")
    assert not by_id["what-mayors-need-to-know-now"].truncated
    assert all(item.truncated == item.summary_text.endswith("...") for item in shipped.items)


# --- broken input ----------------------------------------------------------------------------------------------------


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # so messages show paths relative to it, like a user's run
    return Path("content")


def test_bad_date_names_file_line_and_fix(folder: Path) -> None:
    """A date that is not a date is reported at its line, with the value and the expected format."""
    write(folder, "x.md", item_file(date="March 40, 2020"))
    assert problems(folder) == ["content/x.md:3: 'date' is not a date (got \"March 40, 2020\"); use YYYY-MM-DD"]


def test_impossible_iso_date_is_rejected(folder: Path) -> None:
    """2020-02-30 looks like a date but is not one."""
    write(folder, "x.md", item_file(date="2020-02-30"))
    assert problems(folder) == ["content/x.md:3: 'date' is not a date (got \"2020-02-30\"); use YYYY-MM-DD"]


def test_missing_title(folder: Path) -> None:
    """A file without a title is reported with its name."""
    write(folder, "untitled.md", "---\ndate: 2020-01-15\n---\n\nBody.\n")
    [problem] = problems(folder)
    assert problem.startswith("content/untitled.md:1: missing 'title'")


def test_event_end_before_start(folder: Path) -> None:
    """An event ending before it starts is reported at the `end:` line."""
    write(folder, "e.md", item_file(extra="kind: meeting\nevent:\n  start: 2020-08-22\n  end: 2020-08-20\n"))
    [problem] = problems(folder)
    assert problem.startswith("content/e.md:7: event 'end' (2020-08-20) is before its 'start' (2020-08-22)")


def test_duplicate_ids_name_both_files(folder: Path) -> None:
    """Two files with one id: the message names both files."""
    write(folder, "2020-01-01-a.md", item_file(extra="id: same\n"))
    write(folder, "2020-01-02-b.md", item_file(extra="id: same\n"))
    [problem] = problems(folder)
    assert problem.startswith("content/2020-01-02-b.md:4: id 'same' is also used by content/2020-01-01-a.md:4")


def test_file_name_gives_the_id_when_none_is_written(folder: Path) -> None:
    """Without `id`, the file name minus its date is the id, so duplicates are still caught."""
    write(folder, "2020-01-01-same.md", item_file())
    write(folder, "2020-02-01-same.md", item_file())
    [problem] = problems(folder)
    assert "content/2020-02-01-same.md:1: id 'same' is also used by content/2020-01-01-same.md" in problem


def test_non_utf8_file(folder: Path) -> None:
    """A Latin-1 file is reported with the line of the first bad byte."""
    folder.mkdir()
    (folder / "latin.md").write_bytes(b"---\ntitle: Caf\xe9\ndate: 2020-01-15\n---\n")
    [problem] = problems(folder)
    assert problem.startswith("content/latin.md:2: not UTF-8 text (byte 0xe9)")
    assert "save the file as UTF-8" in problem


def test_empty_file(folder: Path) -> None:
    """An empty (or blank) file is an error, not a silent skip."""
    write(folder, "empty.md", "\n  \n")
    assert problems(folder)[0].startswith("content/empty.md:1: the file is empty")


def test_broken_yaml_reports_the_file_line(folder: Path) -> None:
    """A YAML syntax error is reported at its line in the file (counting the opening ---)."""
    write(folder, "y.md", "---\ndate: 2020-01-15\ntitle: Webinar: Data\n---\n")
    [problem] = problems(folder)
    # libyaml and pure-Python PyYAML word the end of this message differently
    assert problem.startswith("content/y.md:3: front matter is not valid YAML (mapping values are not allowed")


def test_unknown_kind_suggests_the_closest(folder: Path) -> None:
    """An unknown kind is reported at its line with the known kinds."""
    write(folder, "k.md", item_file(extra="kind: webinars\n"))
    [problem] = problems(folder)
    assert problem.startswith("content/k.md:4: unknown kind \"webinars\"; did you mean 'webinar'? use one of news,")


def test_front_matter_that_is_not_a_mapping(folder: Path) -> None:
    """Front matter written as a list is reported."""
    write(folder, "l.md", "---\n- title\n- date\n---\nBody\n")
    [problem] = problems(folder)
    assert problem.startswith("content/l.md:2: front matter must be 'key: value' lines (got a list)")


def test_missing_front_matter_and_unclosed_front_matter(folder: Path) -> None:
    """A file without '---' front matter, or never closing it, is reported."""
    write(folder, "plain.md", "# Just Markdown\n")
    write(folder, "open.md", "---\ntitle: X\ndate: 2020-01-15\n")
    found = problems(folder)
    assert found[0].startswith("content/open.md:1: the front matter is never closed")
    assert found[1].startswith("content/plain.md:1: no front matter")


def test_every_problem_is_reported_at_once(folder: Path) -> None:
    """One run lists the problems of every broken file, and the error's message counts them."""
    write(folder, "a.md", item_file(date="March 40, 2020"))
    write(folder, "b.md", "---\ndate: 2020-01-15\n---\n")
    write(folder, "c.md", "")
    write(folder, "d.md", item_file(extra="kind: podcast\nfeatured: maybe\n"))
    write(folder, "ok.md", item_file())
    with pytest.raises(ContentError) as caught:
        load_content(folder, SETTINGS)
    places = [f"{p.path}:{p.line}" for p in caught.value.problems]
    assert places == ["content/a.md:3", "content/b.md:1", "content/c.md:1", "content/d.md:4", "content/d.md:5"]
    assert str(caught.value).endswith("5 problems in the content folder; nothing was built.")


def test_unknown_field_is_a_warning_with_a_suggestion(folder: Path) -> None:
    """An unknown field does not stop the load; the warning suggests the closest known field."""
    write(folder, "w.md", item_file(extra="subtitel: Typo\n"))
    result = load_content(folder, SETTINGS)
    assert len(result.items) == 1
    assert [str(w) for w in result.warnings] == [
        "content/w.md:4: unknown field 'subtitel' is ignored; did you mean 'subtitle'?"
    ]


def test_alias_and_its_field_together_is_an_error(folder: Path) -> None:
    """`date` and its alias `posted` in one file conflict."""
    write(folder, "p.md", item_file(extra="posted: 2020-01-16\n"))
    [problem] = problems(folder)
    assert problem.startswith("content/p.md:4: 'posted' and 'date' both set 'date'")


def test_missing_folder(tmp_path: Path) -> None:
    """A content folder that does not exist is one clear problem."""
    with pytest.raises(ContentError, match="content folder not found"):
        load_content(tmp_path / "nowhere", SETTINGS)


# --- what loading does with good input -------------------------------------------------------------------------------


def test_aliases_drafts_and_ignored_files(folder: Path) -> None:
    """Aliases are accepted, drafts load as drafts, .markdown counts, README/_/. files are skipped."""
    write(folder, "2020-01-01-one.md", "---\ntitle: One\nposted: 2020-01-01\ntype: Report\nstatus: draft\n---\nBody\n")
    write(folder, "2020-01-02-two.markdown", item_file(date="2020-01-02", extra="draft: true\n"))
    write(folder, "2020-01-03-three.md", item_file(date="2020-01-03"))
    for skipped in ("README.md", "_template.md", ".hidden.md", "notes.txt"):
        write(folder, skipped, "not content")
    result = load_content(folder, SETTINGS)
    assert [(i.id, i.status) for i in result.items] == [("three", "published"), ("two", "draft"), ("one", "draft")]
    assert result.items[2].kind == "report"


def test_links_and_actions(folder: Path) -> None:
    """The item link follows link_pattern unless `url` is given; actions may carry their own url."""
    write(
        folder, "2020-01-01-a.md", item_file(extra="actions:\n  - Read More\n  - label: Register\n    url: /register\n")
    )
    write(folder, "2020-01-01-b.md", item_file(extra="url: https://elsewhere.example/b\nactions: [Read More]\n"))
    by_id = {i.id: i for i in load_content(folder, SETTINGS).items}
    a, b = by_id["a"], by_id["b"]
    assert a.url == "https://example.org/news/a"
    assert [(x.label, x.url) for x in a.actions] == [
        ("Read More", "https://example.org/news/a"),
        ("Register", "https://example.org/register"),
    ]
    assert b.url == "https://elsewhere.example/b"
    assert b.actions[0].url == "https://elsewhere.example/b"


def test_javascript_url_field_is_rejected(folder: Path) -> None:
    """A `url` that is not http(s), mailto or a site path is an error."""
    write(folder, "j.md", item_file(extra="url: javascript:alert(1)\n"))
    [problem] = problems(folder)
    assert problem.startswith("content/j.md:4: 'url' must be an http(s) or mailto link")


def test_body_is_sanitised(folder: Path) -> None:
    """Scripts, event handlers and javascript: links never reach the HTML; links get rel."""
    body = (
        "Hello <script>alert('x')</script> *there*.\n\n"
        '<img src="x.png" onerror="alert(1)"> <b onclick="steal()">bold</b>\n\n'
        '[bad](javascript:alert(1)) <a href="javascript:alert(2)">worse</a> [good](https://example.org/g)\n\n'
        "<script>\nalert('block')\n</script>\n"
    )
    write(folder, "s.md", item_file(body=body))
    item = load_content(folder, SETTINGS).items[0]
    html = item.summary_html.lower()
    # markdown-it leaves [bad](javascript:...) as inert text; what matters is that no link or tag can run it
    for forbidden in ("<script", "alert('x')", "alert('block')", "onerror", "onclick", 'href="javascript', "<img"):
        assert forbidden not in html
    assert "<em>there</em>" in item.summary_html
    assert '<a rel="noopener noreferrer">worse</a>' in item.summary_html
    assert '<a href="https://example.org/g" rel="noopener noreferrer">good</a>' in item.summary_html
    assert "alert('x')" not in item.summary_text and "alert('block')" not in item.summary_text


def test_summary_text_is_plain() -> None:
    """Plain text drops Markdown marks, keeps link text with the URL in parentheses, and keeps paragraphs apart."""
    source = "**Bold** and _em_ and `code` and [a link](https://example.org/x).\n\n- one\n- two\n\nLast &amp; done."
    assert (
        markdown_text(source)
        == "Bold and em and code and a link (https://example.org/x).\n\n- one\n- two\n\nLast & done."
    )


def test_site_paths_in_links_become_absolute() -> None:
    """A link to a site path gets the base URL, since an email has no page to resolve it against."""
    assert 'href="https://example.org/news/x"' in markdown_html("[x](/news/x)", "https://example.org/")
    assert markdown_text("[x](/news/x)", "https://example.org") == "x (https://example.org/news/x)"


def test_cache_returns_the_same_items_and_sees_edits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A second load comes from the cache and equals a fresh parse; editing a file re-reads the folder."""
    from digest.cache import cache_dir

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    folder = tmp_path / "content"
    folder.mkdir()
    page = folder / "2020-01-02-a.md"
    page.write_text("---\ntitle: First\ndate: 2020-01-02\n---\nBody\n", encoding="utf-8")
    fresh = load_content(folder, SETTINGS)
    assert list((tmp_path / "cache" / "digest" / "content").glob("*.pickle"))
    assert load_content(folder, SETTINGS) == fresh
    page.write_text("---\ntitle: Second title\ndate: 2020-01-02\n---\nBody\n", encoding="utf-8")
    assert load_content(folder, SETTINGS).items[0].title == "Second title"
    monkeypatch.setenv("DIGEST_NO_CACHE", "1")
    assert cache_dir() is None


def test_broken_folders_are_never_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A folder with problems raises every time, from the parser, not from a stale cache."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    folder = tmp_path / "content"
    folder.mkdir()
    (folder / "x.md").write_text("---\ndate: 2020-01-02\n---\n", encoding="utf-8")
    for _ in range(2):
        with pytest.raises(ContentError):
            load_content(folder, SETTINGS)
    assert not list((tmp_path / "cache").rglob("*.pickle"))


def test_key_given_twice_is_an_error_with_both_lines(tmp_path: Path) -> None:
    """A front-matter key written twice is reported at the second, naming the first (YAML keeps the last)."""
    folder = tmp_path / "content"
    folder.mkdir()
    (folder / "a.md").write_text("---\ntitle: One\ndate: 2020-01-02\ntitle: Two\n---\nx\n", encoding="utf-8")
    with pytest.raises(ContentError) as err:
        load_content(folder, SETTINGS)
    assert re.search(r"a\.md:4: front matter: 'title' is given twice \(first on line 2\); keep one", str(err.value))


def test_warnings_are_shown_with_the_errors(tmp_path: Path) -> None:
    """When a folder fails, its warnings (unknown fields) come in the same message."""
    folder = tmp_path / "content"
    folder.mkdir()
    (folder / "a.md").write_text("---\ntitle: A\ndate: 2020-01-02\ncolour: red\n---\nx\n", encoding="utf-8")
    (folder / "b.md").write_text("---\ndate: 2020-01-02\n---\nx\n", encoding="utf-8")
    with pytest.raises(ContentError) as err:
        load_content(folder, SETTINGS)
    assert "b.md" in str(err.value) and re.search(r"warning: .*a\.md:4: .*colour", str(err.value))


def test_cached_load_does_not_import_the_parsers(tmp_path: Path) -> None:
    """A warm load leaves readers.py, YAML and Markdown unloaded."""
    import subprocess
    import sys

    code = (
        "import sys, pathlib\n"
        "from digest.config import Settings\n"
        "from digest.content import load_content\n"
        f"s = Settings(root=pathlib.Path({str(ROOT)!r}))\n"
        "load_content(s.path(s.content_dir), s)\n"
        "print('digest.readers' in sys.modules, 'yaml' in sys.modules)\n"
    )
    env = {**__import__("os").environ, "XDG_CACHE_HOME": str(tmp_path)}
    runs = [
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True) for _ in "12"
    ]
    assert runs[0].stdout.split() == ["True", "True"]  # cold: parsed
    assert runs[1].stdout.split() == ["False", "False"], runs[1].stderr  # warm: from the cache


@pytest.mark.parametrize(
    "line4, message",
    [
        ('subtitle: "never closed', "a quoted value starts here and is never closed); close the quote"),
        ("tags: [water, equity", "a [...] list starts here and is never closed); close the list with ]"),
        ("subtitle: a: b", "mapping values are not allowed"),
    ],
)
def test_yaml_errors_point_at_the_line_to_fix(tmp_path: Path, line4: str, message: str) -> None:
    """A broken front-matter line is reported at its own line (4), even when YAML notices it lines later."""
    folder = tmp_path / "content"
    folder.mkdir()
    text = f"---\ntitle: A\ndate: 2020-01-02\n{line4}\nkind: news\nfeatured: true\n---\nBody\n"
    (folder / "a.md").write_text(text, encoding="utf-8")
    with pytest.raises(ContentError) as err:
        load_content(folder, SETTINGS)
    assert re.search(r"a\.md:4: front matter is not valid YAML \(", str(err.value)), str(err.value)
    assert message in str(err.value)
