# ruff: noqa: F401, F811  (pytest fixtures imported from _smtp_server are used as test arguments)
"""message.py, the one MIME writer: per-recipient bytes from one template, and the build's sample .eml
byte for byte what SMTP and the outbox deliver (Message-ID and Date aside)."""

from __future__ import annotations

import dataclasses
import email
import email.policy
import re
from email.header import decode_header, make_header
from email.message import EmailMessage
from pathlib import Path

import _factories as factories
import pytest
from _smtp_server import smtp_sink
from aiosmtpd.controller import Controller
from click.testing import CliRunner

from digest.build import EML_FILE, read_build, write_build
from digest.cli import main
from digest.deliver.base import Personal
from digest.errors import ConfigError, DeliveryError
from digest.message import MessageTemplate, list_id, sample_message
from digest.models import Build, Recipient
from digest.personalize import _SAMPLE_SECRET, SAMPLE_EMAIL, SAMPLE_NAME, fill, sample_values
from digest.render import render as render_edition

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


SINGLE = ("From", "To", "Subject", "Date", "Message-ID", "Reply-To", "List-Id", "MIME-Version")


def render(template: MessageTemplate, p: Personal, message_id: str) -> bytes:
    return template.render(p.recipient, p.values, p.headers, message_id)


def without_id_and_date(raw: bytes) -> bytes:
    return re.sub(rb"(?m)^(Message-ID|Date): [^\r\n]*", b"", raw)


def test_structure_headers_and_encoding() -> None:
    """multipart/alternative with text/plain then text/html, utf-8 QP, one of each header, CRLF, lines ≤ 76."""
    template = MessageTemplate.from_build(make_build())
    p = personal(**ONE_CLICK)
    raw = render(template, p, "<1.abc@example.org>")
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
    text, html = decoded(parse(render(template, p, "<2@example.org>")))
    assert html == crlf(fill(HTML, p.values))
    assert text == crlf(fill(TEXT, p.values))
    assert "Zo\u00eb &quot;Q&quot; &lt;b&gt;&amp;amp; Co" in html and 'Zo\u00eb "Q" <b>&amp; Co' in text
    assert "%%" not in html and "%%" not in text


def test_test_send_prefixes_the_subject() -> None:
    """A test send's subject starts with "[TEST] "."""
    template = MessageTemplate.from_build(make_build(), test=True)
    assert parse(render(template, personal(), "<3@example.org>"))["Subject"] == "[TEST] January \u2014 Mayors digest"


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
            raw = render(template, p, "<4@example.org>")
            got_text, got_html = decoded(parse(raw))
            assert got_html == crlf(fill(html, p.values)), (offset, value)
            assert got_text == crlf(fill(text, p.values)), (offset, value)
            assert max(len(b) for b in body_lines(raw)) <= 76, (offset, value)


def test_non_ascii_name_is_rfc2047_encoded_and_folded() -> None:
    """A non-ASCII display name is encoded in words of ≤ 75 characters and parses back to the same name."""
    template = MessageTemplate.from_build(make_build())
    name = "Zo\u00eb \u00c5ngstr\u00f6m-\u0141\u00f3d\u017a \u4e2d\u6587\u540d\u5b57 " * 3
    raw = render(template, personal("zoe@example.org", name.strip()), "<5@example.org>")
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
    m = parse(render(template, personal("ann@example.org", "Lee, Ann (Mayor)"), "<6@example.org>"))
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
        render(template, personal(**{"List-Unsubscribe": "<https://x.org>\r\nBcc: all@example.org"}), "<7@x>")
    with pytest.raises(DeliveryError, match="'To'"):
        render(template, personal(**{"To": "other@example.org"}), "<7@x>")


def test_lf_template_for_maildir_has_no_carriage_returns() -> None:
    """linesep LF gives the same message with bare LF line ends (as a Maildir on POSIX stores it)."""
    template = MessageTemplate.from_build(make_build(), linesep=b"\n")
    p = personal("ann@example.org", "x" * 200, url="https://example.org/" + "u" * 150)
    raw = render(template, p, "<8@example.org>")
    assert b"\r" not in raw
    text, html = decoded(parse(raw))
    assert html == fill(HTML, p.values) and text == fill(TEXT, p.values)


def test_newlines_in_values_never_reach_headers_or_break_lines() -> None:
    """A name with a line break (bad CSV cell) cannot add a header, and its part still decodes cleanly."""
    template = MessageTemplate.from_build(make_build())
    p = personal("ann@example.org", "Ann\r\nBcc: all@example.org")
    m = parse(render(template, p, "<9@example.org>"))
    assert m["Bcc"] is None and m["To"].addresses[0].addr_spec == "ann@example.org"
    assert "Hi Ann Bcc: all@example.org," in decoded(m)[1]


def test_non_ascii_address_stays_raw_utf8_for_smtputf8() -> None:
    """An internationalised address cannot be RFC 2047 encoded: To carries it as UTF-8."""
    template = MessageTemplate.from_build(make_build())
    raw = render(template, personal("j\u00fcrgen@b\u00fccher.example", "J\u00fcrgen"), "<10@example.org>")
    assert "<j\u00fcrgen@b\u00fccher.example>".encode() in raw.split(b"\r\n\r\n", 1)[0]


def test_sender_without_address_is_a_delivery_error() -> None:
    """A sender setting with no address cannot make an envelope: DeliveryError names the setting."""
    with pytest.raises(DeliveryError, match="'sender'"):
        MessageTemplate.from_build(make_build(sender="Mayors"))


def test_reply_to_and_list_id_once_each_and_only_when_set() -> None:
    """Reply-To and List-Id appear once each when the build has them, and not at all when empty."""
    template = MessageTemplate.from_build(make_build(list_id="Mayors <mayors-innovation.example.org>"))
    m = parse(render(template, personal(**ONE_CLICK), "<11@example.org>"))
    assert m.get_all("List-Id") == ["Mayors <mayors-innovation.example.org>"]
    assert m.get_all("Reply-To") == ["Info <info@example.org>"]
    bare = parse(render(MessageTemplate.from_build(make_build(reply_to="")), personal(), "<12@example.org>"))
    assert "List-Id" not in bare and "Reply-To" not in bare
    with pytest.raises(DeliveryError, match="'List-Id'"):
        render(template, personal(**{"List-Id": "other <x.example.org>"}), "<13@x>")


def test_the_same_build_gives_the_same_bytes() -> None:
    """Two templates of one build write identical messages apart from Message-ID and Date (no random boundary)."""
    a, b = (render(MessageTemplate.from_build(make_build()), personal(**ONE_CLICK), "<14@example.org>") for _ in "ab")
    assert without_id_and_date(a) == without_id_and_date(b)


def test_long_list_unsubscribe_url_is_not_encoded() -> None:
    """A 300-character one-click URL stays a plain <https://...> header line, never an RFC 2047 encoded-word."""
    url = "https://www.example.org/unsubscribe?token=" + "A" * 260
    template = MessageTemplate.from_build(make_build())
    raw = render(template, personal(**{"List-Unsubscribe": f"<{url}>"}), "<15@example.org>")
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert f"List-Unsubscribe: <{url}>".encode() in head.split(b"\r\n")
    assert b"=?utf-8?" not in head.replace(template._subject, b"")


def test_non_ascii_subject_is_encoded_and_round_trips() -> None:
    """A non-ASCII subject (with the test prefix) travels RFC 2047-encoded and decodes to the same text."""
    subject = "Café des maires – janvier 2020 ✓"
    raw = render(MessageTemplate.from_build(make_build(subject=subject), test=True), personal(), "<16@example.org>")
    assert b"=?utf-8?" in raw and subject.encode() not in raw
    assert parse(raw)["Subject"] == "[TEST] " + subject


def test_list_id_names_the_list_and_a_sender_without_address_is_a_config_error(tmp_path: Path) -> None:
    """List-Id is `Name <slug.sender-domain>`; a sender with no address is a ConfigError saying how to write it."""
    assert list_id(factories.make_settings(tmp_path)) == "Mayors Innovation Project <mayors-innovation.example.org>"
    with pytest.raises(ConfigError, match="'sender' has no email address.*'Name <news@example.org>'"):
        list_id(factories.make_settings(tmp_path, sender="Newsletter <news>"))


# --- the build's sample .eml --------------------------------------------------------------------


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Build:
    """The golden January 2020 edition written to a build folder (so email.eml is the real sample)."""
    root = tmp_path_factory.mktemp("newsletter")
    settings = factories.make_settings(root)
    selection = factories.golden_selection()
    rendered = render_edition(selection, settings, edition="mayors-innovation-2020-01")
    write_build(root / "build", rendered, selection, settings, edition="mayors-innovation-2020-01")
    return read_build(root / "build")


def test_sample_eml_is_the_list_message_of_the_sample_recipient(built: Build) -> None:
    """email.eml: CRLF, QP lines ≤ 76 (MRML's long HTML line too), every header once, List-Id and one-click
    headers, and parts that decode to the build filled with the sample values."""
    settings = factories.make_settings(built.folder.parent)
    raw = (built.folder / EML_FILE).read_bytes()
    assert max(len(line) for line in built.html.splitlines()) > 998
    assert raw.count(b"\n") == raw.count(b"\r\n") and max(len(line) for line in body_lines(raw)) <= 76
    m = parse(raw)
    for header in SINGLE:
        assert len(m.get_all(header, [])) == 1, header
    assert m["List-Id"] == "Mayors Innovation Project <mayors-innovation.example.org>" == built.list_id
    assert m["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    values = sample_values(settings, built.edition)
    assert m["To"].addresses[0].addr_spec == SAMPLE_EMAIL and m["To"].addresses[0].display_name == SAMPLE_NAME
    assert str(m["List-Unsubscribe"]).startswith(f"<{values['unsubscribe_url']}>")
    text, html = decoded(m)
    assert html == crlf(fill(built.html, values)) and text == crlf(fill(built.text, values))
    assert without_id_and_date(raw) == without_id_and_date(sample_message(built, settings))


@pytest.fixture
def newsletter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The repository's newsletter in tmp_path with the sample recipient as its one member, and the sample
    tokens' key as the unsubscribe secret, so a real send's message can equal the sample byte for byte."""
    factories.copy_newsletter(tmp_path)
    (tmp_path / "members.csv").write_text(f"email,name\n{SAMPLE_EMAIL},{SAMPLE_NAME}\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DIGEST_UNSUBSCRIBE_SECRET", _SAMPLE_SECRET.decode())
    for var in ("DIGEST_SMTP_USER", "DIGEST_SMTP_PASSWORD", "DIGEST_BACKEND"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


def digest(*args: str) -> None:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output


def headers(raw: bytes) -> list[tuple[str, str]]:
    """(name, value) of every header in order, Message-ID and Date aside."""
    return [(k, str(v)) for k, v in parse(raw).items() if k not in ("Message-ID", "Date")]


def test_sample_eml_is_what_smtp_and_the_outbox_deliver(
    newsletter: Path, smtp_sink: tuple[Controller, factories.Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A list send to the sample recipient through aiosmtpd and through the outbox delivers the build's
    email.eml exactly: the same headers and values (List-Id, List-Unsubscribe, -Post), the same bytes."""
    controller, sink = smtp_sink
    digest("build", "--month", "2020-01")
    folder = newsletter / "build" / "mayors-innovation-2020-01"
    sample = (folder / EML_FILE).read_bytes()
    monkeypatch.setenv("DIGEST_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("DIGEST_SMTP_PORT", str(controller.port))
    monkeypatch.setenv("DIGEST_SMTP_SECURITY", "none")
    send = ("send", "--from-build", str(folder), "--recipients", "members.csv", "--yes", "--no-spamassassin")
    digest(*send, "--backend", "smtp")
    (newsletter / "ledger.sqlite3").unlink()  # a second list send of the edition, through the outbox
    digest(*send, "--backend", "outbox")
    [smtp] = [m.content for m in sink.messages]
    [outbox] = [path.read_bytes() for path in (newsletter / "outbox" / "mayors-innovation-2020-01" / "new").iterdir()]
    names = {name for name, _ in headers(sample)}
    assert {"List-Id", "List-Unsubscribe", "List-Unsubscribe-Post", "From", "To", "Subject"} <= names
    for received in (smtp, outbox.replace(b"\n", b"\r\n")):
        assert headers(received) == headers(sample)
        assert without_id_and_date(received) == without_id_and_date(sample)
