"""Write examples/: the shipped content/ as a WordPress-shaped RSS 2.0 feed and an iCalendar of its events.

`digest import examples/mayors-innovation.rss` in a new newsletter folder gives the same titles, dates
and links as content/ (tests/test_import_examples.py checks it). Run from the repository's root after
changing content/:

    .venv/bin/python scripts/make_examples.py
"""

from __future__ import annotations

import datetime as dt
import email.utils
from pathlib import Path
from xml.sax.saxutils import escape

import icalendar

from digest.config import load_settings
from digest.content import load_content
from digest.models import Item

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "examples"
# WordPress publishes in UTC; 17:00 UTC is the same calendar day from UTC-12 to UTC+6.
PUBLISHED_AT = dt.time(17, 0, tzinfo=dt.UTC)
CATEGORY = {
    "news": "News", "report": "Reports", "event": "Events", "webinar": "Webinars",
    "meeting": "Meetings", "workshop": "Workshops", "job": "Jobs",
}  # fmt: skip


def _cdata(text: str) -> str:
    return "<![CDATA[" + text.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def _title(text: str) -> str:
    # wptexturize writes curly quotes and dashes as numeric entities.
    escaped = escape(text)
    for char in "’‘“”–—…":
        escaped = escaped.replace(char, f"&#{ord(char)};")
    return escaped


def _excerpt(item: Item, words: int = 55) -> str:
    text = item.summary_text.split()
    return " ".join(text[:words]) + (" [&hellip;]" if len(text) > words else "")


def rss(items: list[Item], base_url: str, name: str) -> str:
    posted = {item.id: n for n, item in enumerate(sorted(items, key=lambda i: (i.date, i.id)), start=101)}
    newest = max(item.date for item in items)
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"\n'
        '\txmlns:content="http://purl.org/rss/1.0/modules/content/"\n'
        '\txmlns:wfw="http://wellformedweb.org/CommentAPI/"\n'
        '\txmlns:dc="http://purl.org/dc/elements/1.1/"\n'
        '\txmlns:atom="http://www.w3.org/2005/Atom"\n'
        '\txmlns:sy="http://purl.org/rss/1.0/modules/syndication/"\n'
        '\txmlns:slash="http://purl.org/rss/1.0/modules/slash/"\n'
        "\t>\n\n<channel>\n",
        f"\t<title>{escape(name)}</title>\n",
        f'\t<atom:link href="{base_url}/feed/" rel="self" type="application/rss+xml" />\n',
        f"\t<link>{base_url}</link>\n",
        "\t<description>Mayors sharing ideas and policies</description>\n",
        f"\t<lastBuildDate>{email.utils.format_datetime(dt.datetime.combine(newest, PUBLISHED_AT))}</lastBuildDate>\n",
        "\t<language>en-US</language>\n\t<sy:updatePeriod>\n\thourly\t</sy:updatePeriod>\n"
        "\t<sy:updateFrequency>\n\t1\t</sy:updateFrequency>\n",
        "\t<generator>https://wordpress.org/?v=6.4.3</generator>\n",
    ]
    for item in items:  # newest first, as WordPress lists them
        when = email.utils.format_datetime(dt.datetime.combine(item.date, PUBLISHED_AT))
        categories = [CATEGORY[item.kind], *item.tags]
        parts.append(
            "\t<item>\n"
            f"\t\t<title>{_title(item.title)}</title>\n"
            f"\t\t<link>{escape(item.url)}</link>\n"
            f"\t\t<comments>{escape(item.url)}#respond</comments>\n"
            f"\t\t<dc:creator>{_cdata('Mayors Innovation Project')}</dc:creator>\n"
            f"\t\t<pubDate>{when}</pubDate>\n"
            + "".join(f"\t\t<category>{_cdata(category)}</category>\n" for category in categories)
            + f'\t\t<guid isPermaLink="false">{base_url}/?p={posted[item.id]}</guid>\n'
            f"\n\t\t\t\t\t<description>{_cdata(_excerpt(item))}</description>\n"
            f"\t\t\t\t\t\t\t\t\t\t<content:encoded>{_cdata(item.summary_html)}</content:encoded>\n"
            f"\t\t\t\t\t<wfw:commentRss>{escape(item.url)}/feed/</wfw:commentRss>\n"
            "\t\t\t<slash:comments>0</slash:comments>\n"
            "\t\t</item>\n"
        )
    parts.append("\t</channel>\n</rss>\n")
    return "".join(parts)


def ics(items: list[Item], name: str) -> bytes:
    calendar = icalendar.Calendar()
    calendar.add("PRODID", "-//digest//examples//EN")
    calendar.add("VERSION", "2.0")
    calendar.add("X-WR-CALNAME", name)
    calendar.add("X-WR-TIMEZONE", "America/Chicago")
    for item in sorted((i for i in items if i.event), key=lambda i: (i.event.start if i.event else i.date, i.id)):
        assert item.event is not None
        event = icalendar.Event()
        event.add("UID", f"{item.id}@www.example.org")
        event.add("DTSTAMP", dt.datetime.combine(item.date, PUBLISHED_AT))
        event.add("CREATED", dt.datetime.combine(item.date, PUBLISHED_AT))
        event.add("SUMMARY", item.title)
        event.add("DTSTART", item.event.start)
        event.add("DTEND", (item.event.end or item.event.start) + dt.timedelta(days=1))  # exclusive
        if item.event.place:
            event.add("LOCATION", item.event.place)
        event.add("URL", item.url)
        event.add("DESCRIPTION", item.summary_text)
        event.add("CATEGORIES", [CATEGORY[item.kind]])
        calendar.add_component(event)
    return calendar.to_ical()


def main() -> None:
    settings = load_settings(ROOT / "digest.toml", env={})
    items = [item for item in load_content(settings.path(settings.content_dir), settings).items]
    OUT.mkdir(exist_ok=True)
    (OUT / "mayors-innovation.rss").write_text(rss(items, settings.base_url, settings.name), encoding="utf-8")
    (OUT / "mayors-innovation-events.ics").write_bytes(ics(items, settings.name))
    print(f"wrote {OUT / 'mayors-innovation.rss'} ({len(items)} items) and {OUT / 'mayors-innovation-events.ics'}")


if __name__ == "__main__":
    main()
