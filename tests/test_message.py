"""Message: the rendered edition as an RFC 5322 .eml (multipart/alternative, text then HTML, UTF-8, QP)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import email
import email.policy
import re
from email.message import EmailMessage
from pathlib import Path

import pytest
from _factories import golden_selection, make_settings

from digest.config import Settings
from digest.errors import ConfigError
from digest.message import build_message, list_id, sender_domain
from digest.models import Rendered
from digest.render import render

SINGLE = ("Date", "From", "To", "Subject", "Message-ID", "MIME-Version", "List-Id")


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return make_settings(tmp_path_factory.mktemp("newsletter"))


@pytest.fixture(scope="module")
def rendered(settings: Settings) -> Rendered:
    return render(golden_selection(), settings, edition="mayors-innovation-2020-01")


def _parse(raw: bytes) -> EmailMessage:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def test_multipart_alternative_text_first_then_html(rendered: Rendered, settings: Settings) -> None:
    """The message is multipart/alternative with text/plain first and text/html last (RFC 2046)."""
    msg = _parse(build_message(rendered, settings, to="a@example.org"))
    assert msg.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]


def test_parts_are_utf8_quoted_printable_and_decode_exactly(rendered: Rendered, settings: Settings) -> None:
    """Both parts are charset=utf-8, quoted-printable, and decode to exactly the rendered text and HTML."""
    msg = _parse(build_message(rendered, settings, to="a@example.org"))
    text, html = msg.iter_parts()
    for part in (text, html):
        assert part.get_content_charset() == "utf-8"
        assert part["Content-Transfer-Encoding"] == "quoted-printable"
    # Decoded parts keep the wire's CRLF line ends.
    assert text.get_content().replace("\r\n", "\n") == rendered.text
    assert html.get_content().replace("\r\n", "\n") == rendered.html


def test_lines_are_crlf_and_at_most_998_octets(rendered: Rendered, settings: Settings) -> None:
    """Every line ends in CRLF and none is longer than 998 octets, although MRML's HTML is one long line."""
    assert max(len(line) for line in rendered.html.splitlines()) > 998
    raw = build_message(rendered, settings, to="a@example.org")
    assert raw.count(b"\n") == raw.count(b"\r\n")
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998


def test_quoted_printable_body_lines_are_at_most_76_characters(rendered: Rendered, settings: Settings) -> None:
    """RFC 2045 §6.7: encoded lines of at most 76 characters (Python's encoder follows the policy's
    max_line_length, so the 998 allowed for headers must not reach the bodies), while a long
    List-Unsubscribe header stays one unencoded line."""
    long_url = "https://www.example.org/unsubscribe?token=" + "t" * 300
    raw = build_message(rendered, settings, to="a@example.org", extra_headers={"List-Unsubscribe": f"<{long_url}>"})
    head, _, body = raw.partition(b"\r\n\r\n")
    assert f"List-Unsubscribe: <{long_url}>".encode() in head.split(b"\r\n")
    body_lines = body.split(b"\r\n")
    assert max(len(line) for line in body_lines) == 76  # the HTML fills its lines to the limit
    assert raw.count(b"MIME-Version: 1.0\r\n") == 1


def test_required_headers_exactly_once(rendered: Rendered, settings: Settings) -> None:
    """Date, From, To, Subject, Message-ID, MIME-Version, List-Id and Reply-To appear once each."""
    msg = _parse(build_message(rendered, settings, to="Alex <a@example.org>"))
    for name in (*SINGLE, "Reply-To"):
        assert len(msg.get_all(name, [])) == 1, name
    assert msg["From"] == settings.sender and msg["To"] == "Alex <a@example.org>"
    assert msg["Reply-To"] == settings.reply_to
    assert msg["List-Id"] == "Mayors Innovation Project <mayors-innovation.example.org>"


def test_no_reply_to_when_not_set(rendered: Rendered, settings: Settings) -> None:
    """Without reply_to in the settings there is no Reply-To header."""
    msg = _parse(build_message(rendered, dataclasses.replace(settings, reply_to=""), to="a@example.org"))
    assert "Reply-To" not in msg


def test_message_id_uses_sender_domain_and_is_unique(rendered: Rendered, settings: Settings) -> None:
    """Message-ID is <...@sender-domain> and differs between messages; an explicit one is kept."""
    raws = [build_message(rendered, settings, to="a@example.org") for _ in range(2)]
    ids = [re.search(rb"\r\nMessage-ID: (<[^\r]*>)\r\n", raw) for raw in raws]  # on one line, not folded
    assert all(i and re.fullmatch(rb"<[^@<>\s]+@example\.org>", i.group(1)) for i in ids)
    assert ids[0] and ids[1] and ids[0].group(1) != ids[1].group(1)
    given = _parse(build_message(rendered, settings, to="a@example.org", message_id="<x.1@example.org>"))
    assert given["Message-ID"] == "<x.1@example.org>"


def test_date_is_now_or_given(rendered: Rendered, settings: Settings) -> None:
    """Date is the real time by default; a given (naive = UTC) date is used as is."""
    now = _parse(build_message(rendered, settings, to="a@example.org"))["Date"].datetime
    assert abs((dt.datetime.now(dt.UTC) - now).total_seconds()) < 60
    fixed = _parse(build_message(rendered, settings, to="a@example.org", date=dt.datetime(2020, 2, 1, 9, 30)))
    assert fixed["Date"] == "Sat, 01 Feb 2020 09:30:00 +0000"


def test_non_ascii_subject_is_encoded_and_round_trips(rendered: Rendered, settings: Settings) -> None:
    """A non-ASCII subject (and prefix) travels RFC 2047-encoded and decodes to the same text."""
    subject = "Café des maires – janvier 2020 ✓"
    raw = build_message(
        dataclasses.replace(rendered, subject=subject), settings, to="a@example.org", subject_prefix="[TEST] "
    )
    assert b"=?utf-8?" in raw and subject.encode() not in raw
    assert _parse(raw)["Subject"] == "[TEST] " + subject


def test_extra_headers_added_once_and_replace_ours(rendered: Rendered, settings: Settings) -> None:
    """extra_headers are added once; one with the name of a header we set replaces it rather than duplicating."""
    extra = {
        "List-Unsubscribe": "<https://example.org/u?t=abc>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        "Reply-To": "other@example.org",
    }
    msg = _parse(build_message(rendered, settings, to="a@example.org", extra_headers=extra))
    for name, value in extra.items():
        assert msg.get_all(name) == [value]


def test_placeholder_tokens_pass_through_unchanged(rendered: Rendered, settings: Settings) -> None:
    """Unfilled tokens in the parts come out of decoding intact (filling is the caller's job)."""
    msg = _parse(build_message(rendered, settings, to="a@example.org"))
    text, html = msg.iter_parts()
    assert "%%unsubscribe_url:text%%" in text.get_content()
    assert 'href="%%unsubscribe_url%%"' in html.get_content()


def test_sender_without_domain_is_a_config_error(rendered: Rendered, tmp_path: Path) -> None:
    """A sender address with no domain and no base_url host is a ConfigError saying how to write it."""
    bad = make_settings(tmp_path, sender="Newsletter <news>", base_url="")
    with pytest.raises(ConfigError, match="'sender' has no domain"):
        build_message(rendered, bad, to="a@example.org")
    assert (
        sender_domain(make_settings(tmp_path, sender="news", base_url="https://mip.example.com")) == "mip.example.com"
    )
    assert list_id(make_settings(tmp_path)) == "Mayors Innovation Project <mayors-innovation.example.org>"


def test_long_list_unsubscribe_url_is_not_encoded() -> None:
    """A 300-character one-click URL stays a plain <https://...> header, never an RFC 2047 encoded-word."""
    url = "https://www.example.org/unsubscribe?token=" + "A" * 260
    raw = build_message(
        Rendered(subject="S", preheader="", mjml="", html="<p>x</p>", text="x"),
        make_settings(),
        to="a@example.org",
        extra_headers={"List-Unsubscribe": f"<{url}>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"},
    )
    assert b"=?utf-8?" not in raw.split(b"\r\n\r\n", 1)[0]
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert str(msg["List-Unsubscribe"]) == f"<{url}>"
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998
