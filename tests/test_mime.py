"""deliver/mime.py: one template, per-recipient bytes that parse as the right multipart/alternative message."""

from __future__ import annotations

import email
import email.policy
import re
from email.header import decode_header, make_header
from email.message import EmailMessage

import _factories as factories
import pytest

from digest.deliver.base import Personal
from digest.deliver.mime import MessageTemplate
from digest.errors import DeliveryError
from digest.models import Build, Recipient
from digest.personalize import fill

HTML = (
    "<!doctype html><html><body><p>Hi %%name%%, caf\u00e9 \u2014 news \u00b7 more \u2192</p>"
    '<a href="%%view_url%%">View</a>' + "<td style=\"padding:0\">An item &amp; a summary.</td>" * 40 +
    '<a href="%%unsubscribe_url%%">Unsubscribe</a> %%email%%</body></html>'
)  # fmt: skip
TEXT = (
    "Hi %%name:text%%,\n\nView: %%view_url:text%%\n"
    + "An item \u2014 a summary.\n" * 20
    + ("Unsubscribe: %%unsubscribe_url:text%%\n")
)


def make_build(html: str = HTML, text: str = TEXT, **changes: str) -> Build:
    fields: dict[str, str] = {
        "subject": "January \u2014 Mayors digest",
        "reply_to": "Info <info@example.org>",
    }
    fields.update(changes)
    return factories.make_build(html, text, **fields)


def personal(address: str = "ann@example.org", name: str = "Ann Lee", url: str = "", **headers: str) -> Personal:
    url = url or f"https://example.org/unsubscribe?token=t0k&e={address}"
    values = {
        "name": name,
        "email": address,
        "unsubscribe_url": url,
        "view_url": "https://example.org/d/2020-01?a=1&b=2",
    }
    return Personal(Recipient(address, name), values, dict(headers))


ONE_CLICK = {
    "List-Unsubscribe": (
        "<https://example.org/unsubscribe?token=t0k>, <mailto:unsubscribe@example.org?subject=unsubscribe>"
    ),
    "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
}


def parse(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def crlf(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\n", "\r\n")


def decoded(message: EmailMessage) -> tuple[str, str]:
    text, html = (part.get_payload(decode=True).decode("utf-8") for part in message.iter_parts())  # type: ignore[union-attr]
    return text, html


def body_lines(raw: bytes) -> list[bytes]:
    return raw.split(b"\r\n\r\n", 1)[1].split(b"\r\n")


def test_structure_headers_and_encoding() -> None:
    """multipart/alternative with text/plain then text/html, utf-8 QP, one of each header, CRLF, lines ≤ 76."""
    template = MessageTemplate.from_build(make_build())
    p = personal(**ONE_CLICK)
    raw = template.render(p, "<1.abc@example.org>")
    m = parse(raw)
    assert m.get_content_type() == "multipart/alternative"
    parts = list(m.iter_parts())
    assert [x.get_content_type() for x in parts] == ["text/plain", "text/html"]
    assert all(
        x.get_content_charset() == "utf-8" and x["Content-Transfer-Encoding"] == "quoted-printable" for x in parts
    )
    for header in ("From", "To", "Subject", "Date", "Message-ID", "Reply-To", "MIME-Version"):
        assert len(m.get_all(header, [])) == 1, header
    assert m["To"] == "Ann Lee <ann@example.org>"
    assert m["Subject"] == "January \u2014 Mayors digest"
    assert m["Message-ID"] == "<1.abc@example.org>"
    assert m["List-Unsubscribe"] == ONE_CLICK["List-Unsubscribe"]
    assert m["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert raw.count(b"\n") == raw.count(b"\r\n") and b"\r\r" not in raw
    assert raw.isascii()
    assert max(len(line) for line in body_lines(raw)) <= 76


def test_decoded_parts_equal_fill_with_escaping() -> None:
    """HTML tokens get HTML-escaped values and text tokens plain ones, exactly as personalize.fill does."""
    template = MessageTemplate.from_build(make_build())
    p = personal("zoe@example.org", 'Zo\u00eb "Q" <b>&amp; Co', url="https://example.org/u?t=a=b&c=<d>")
    text, html = decoded(parse(template.render(p, "<2@example.org>")))
    assert html == crlf(fill(HTML, p.values))
    assert text == crlf(fill(TEXT, p.values))
    assert "Zo\u00eb &quot;Q&quot; &lt;b&gt;&amp;amp; Co" in html and 'Zo\u00eb "Q" <b>&amp; Co' in text
    assert "%%" not in html and "%%" not in text


def test_test_send_prefixes_the_subject() -> None:
    """A test send's subject starts with "[TEST] "."""
    template = MessageTemplate.from_build(make_build(), test=True)
    assert parse(template.render(personal(), "<3@example.org>"))["Subject"] == "[TEST] January \u2014 Mayors digest"


@pytest.mark.parametrize("filler", ["x", "\u00e9", "=", " "])
def test_tokens_at_every_offset_near_the_qp_line_limit(filler: str) -> None:
    """A token starting at each offset 60..80 of a long line, with values of every length, decodes exactly."""
    values_by_len = ["", "A", "x" * 74, "y" * 75, "z" * 76, "\u00e9" * 30, "https://example.org/" + "q" * 180]
    for offset in range(60, 81):
        line = filler * offset + "%%unsubscribe_url%%" + "tail " * 30 + "%%name%%" + filler * 3
        html = f"<p>{line}</p>\n<p>{filler * offset}%%name%%</p>"
        text = f"{filler * offset}%%unsubscribe_url:text%%{filler * 5}\n"
        template = MessageTemplate.from_build(make_build(html=html, text=text))
        for value in values_by_len:
            p = personal("ann@example.org", value[:40] or "N", url=value)
            raw = template.render(p, "<4@example.org>")
            got_text, got_html = decoded(parse(raw))
            assert got_html == crlf(fill(html, p.values)), (offset, value)
            assert got_text == crlf(fill(text, p.values)), (offset, value)
            assert max(len(b) for b in body_lines(raw)) <= 76, (offset, value)


def test_non_ascii_name_is_rfc2047_encoded_and_folded() -> None:
    """A non-ASCII display name is encoded in words of ≤ 75 characters and parses back to the same name."""
    template = MessageTemplate.from_build(make_build())
    name = "Zo\u00eb \u00c5ngstr\u00f6m-\u0141\u00f3d\u017a \u4e2d\u6587\u540d\u5b57 " * 3
    raw = template.render(personal("zoe@example.org", name.strip()), "<5@example.org>")
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert head.isascii()
    to_lines = re.search(rb"^To: .*?(?=\r\n\S)", head, re.M | re.S)
    assert to_lines is not None
    assert all(len(line) <= 78 for line in to_lines.group().split(b"\r\n"))
    # RFC 2047 §6.2: the folding between encoded words is not part of the name (email.header decodes so).
    words = decode_header(to_lines.group()[4:].decode("ascii").replace("\r\n", ""))
    assert str(make_header(words)) == name.strip() + " <zoe@example.org>"
    # Python's newer parser keeps that folding as a space: splits fall after spaces, so only spacing differs.
    m = parse(raw)
    assert m["To"].addresses[0].display_name.split() == name.split()
    assert m["To"].addresses[0].addr_spec == "zoe@example.org"


def test_ascii_name_with_specials_is_quoted() -> None:
    """ "Lee, Ann" needs quoting in To, and parses back intact."""
    template = MessageTemplate.from_build(make_build())
    m = parse(template.render(personal("ann@example.org", "Lee, Ann (Mayor)"), "<6@example.org>"))
    assert m["To"].addresses[0].display_name == "Lee, Ann (Mayor)"


def test_message_ids_are_unique_and_use_the_sender_domain() -> None:
    """new_message_id never repeats within a template and two templates never share one."""
    a, b = MessageTemplate.from_build(make_build()), MessageTemplate.from_build(make_build())
    ids = [a.new_message_id() for _ in range(1000)] + [b.new_message_id() for _ in range(1000)]
    assert len(set(ids)) == 2000
    assert all(re.fullmatch(r"<[\w.]+@example\.org>", i) for i in ids)


def test_header_injection_from_personal_headers_is_refused() -> None:
    """A per-recipient header value with a line break, or one overriding To, is a DeliveryError."""
    template = MessageTemplate.from_build(make_build())
    with pytest.raises(DeliveryError, match="line break"):
        template.render(personal(**{"List-Unsubscribe": "<https://x.org>\r\nBcc: all@example.org"}), "<7@x>")
    with pytest.raises(DeliveryError, match="'To'"):
        template.render(personal(**{"To": "other@example.org"}), "<7@x>")


def test_lf_template_for_maildir_has_no_carriage_returns() -> None:
    """linesep LF gives the same message with bare LF line ends (as a Maildir on POSIX stores it)."""
    template = MessageTemplate.from_build(make_build(), linesep=b"\n")
    p = personal("ann@example.org", "x" * 200, url="https://example.org/" + "u" * 150)
    raw = template.render(p, "<8@example.org>")
    assert b"\r" not in raw
    text, html = decoded(parse(raw))
    assert html == fill(HTML, p.values) and text == fill(TEXT, p.values)


def test_newlines_in_values_never_reach_headers_or_break_lines() -> None:
    """A name with a line break (bad CSV cell) cannot add a header, and its part still decodes cleanly."""
    template = MessageTemplate.from_build(make_build())
    p = personal("ann@example.org", "Ann\r\nBcc: all@example.org")
    m = parse(template.render(p, "<9@example.org>"))
    assert m["Bcc"] is None and m["To"].addresses[0].addr_spec == "ann@example.org"
    assert "Hi Ann Bcc: all@example.org," in decoded(m)[1]


def test_non_ascii_address_stays_raw_utf8_for_smtputf8() -> None:
    """An internationalised address cannot be RFC 2047 encoded: To carries it as UTF-8."""
    template = MessageTemplate.from_build(make_build())
    raw = template.render(personal("j\u00fcrgen@b\u00fccher.example", "J\u00fcrgen"), "<10@example.org>")
    assert "<j\u00fcrgen@b\u00fccher.example>".encode() in raw.split(b"\r\n\r\n", 1)[0]


def test_sender_without_address_is_a_delivery_error() -> None:
    """A sender setting with no address cannot make an envelope: DeliveryError names the setting."""
    with pytest.raises(DeliveryError, match="'sender'"):
        MessageTemplate.from_build(make_build(sender="Mayors"))
