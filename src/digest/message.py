"""Message: the one MIME writer. A build becomes RFC 5322 bytes (multipart/alternative, text then HTML,
UTF-8, quoted-printable): the build's sample `email.eml` and every message the outbox and SMTP deliver.

A send serialises the message once, as a template, and personalises it in bytes: the headers, the
boundary and the part headers are bytes made once, and each part is quoted-printable encoded once
*between* its placeholders. Per recipient only the values are encoded and the pieces joined.

Why that is correct: a QP soft line break ("=" CRLF) may stand anywhere outside an "=XX" escape and
decodes to nothing. Every pre-encoded static chunk that a placeholder follows ends in a soft break
(unless it ends a line), and so does every encoded value, so each value starts on a fresh encoded
line and no line exceeds 76 characters whatever the value's length. Placeholders are never inside
encoded text, so a soft break can never split one (the hazard of substituting into encoded QP).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import itertools
import re
import secrets
import time
from collections.abc import Mapping
from email.headerregistry import Address
from email.policy import SMTP, SMTPUTF8
from email.utils import formataddr, formatdate, parseaddr
from typing import TYPE_CHECKING

from .errors import ConfigError, DeliveryError
from .models import Build, Recipient
from .personalize import (
    HTML_TOKENS,
    SAMPLE_EMAIL,
    SAMPLE_NAME,
    TEXT_TOKENS,
    sample_values,
    substitutions,
    with_shared_values,
)

if TYPE_CHECKING:
    from .config import Settings

MAX_LINE = 76  # RFC 2045 §6.7: encoded lines of at most 76 characters
_TOKENS = re.compile("|".join(re.escape(t) for t in (*TEXT_TOKENS.values(), *HTML_TOKENS.values())))
_HEADER_NAME = re.compile(r"[!-9;-~]+")  # RFC 5322 field name: printable ASCII except ':'
# Headers this module writes itself; a second copy from the per-recipient headers would make the message invalid.
_OWN_HEADERS = frozenset(
    {"from", "to", "subject", "date", "message-id", "reply-to", "list-id", "mime-version", "content-type",
     "content-transfer-encoding", "cc", "bcc", "sender"}
)  # fmt: skip
_WIDE = SMTP.clone(max_line_length=998)
_ENCODED_WORD_BYTES = 45  # 45 bytes -> 60 base64 chars; with "=?utf-8?b?" and "?=" under 75 (RFC 2047)


def list_id(settings: Settings) -> str:
    """RFC 2919 List-Id `Name <slug.domain>` (the From address's domain), so clients can filter the newsletter."""
    address = parseaddr(settings.sender)[1]
    domain = address.rpartition("@")[2].strip().lower() if "@" in address else ""
    if not domain:
        where = settings.config_file or "settings"
        raise ConfigError(
            f"{where}: 'sender' has no email address (got {settings.sender!r}); use 'Name <news@example.org>'"
        )
    return f"{settings.name} <{settings.slug}.{domain}>"


def _crlf_text(text: str) -> str:
    """Every line break as CRLF, the canonical form of MIME text (RFC 2046 §4.1.1)."""
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\r\n")


def _one_line(value: str) -> str:
    """Values never bring line breaks: a newline in a name must not end a header or a QP line."""
    if "\r" in value or "\n" in value:
        return value.replace("\r\n", " ").replace("\r", " ").replace("\n", " ")
    return value


def _qp(data: bytes) -> bytes:
    """binascii's C quoted-printable encoder, always with CRLF line breaks.

    b2a_qp picks CRLF only when the data's first newline is a CRLF; data without any newline gets
    bare-LF soft breaks, so those are converted.
    """
    out = binascii.b2a_qp(data, quotetabs=False, istext=True, header=False)
    if b"\n" in out and b"\r\n" not in data:
        out = out.replace(b"\n", b"\r\n")
    return out


def _soft_end(encoded: bytes) -> bytes:
    """`encoded` followed by a soft line break, keeping its last line within 76 characters."""
    if not encoded or encoded.endswith(b"\r\n"):
        return encoded
    start = encoded.rfind(b"\n") + 1
    if len(encoded) - start < MAX_LINE:
        return encoded + b"=\r\n"
    # The last line is already 76 long: break it once more, never inside an "=XX" escape.
    cut = len(encoded) - 2
    if encoded[cut - 1 : cut] == b"=":
        cut -= 1
    elif encoded[cut - 2 : cut - 1] == b"=":
        cut -= 2
    return encoded[:cut] + b"=\r\n" + encoded[cut:] + b"=\r\n"


def _encoded_words(text: str) -> str:
    """RFC 2047 base64 encoded words for a display name, ≤ 75 characters each, folded between words.

    Words split on character boundaries, preferably right after a space: RFC 2047 readers (mail
    clients) ignore the folding between encoded words, while Python's own parser keeps it as a space,
    so a split after a space reads right in the first and only doubles a space in the second.
    """
    words: list[str] = []
    chunk: list[str] = []
    size = 0
    for ch in text:
        n = len(ch.encode("utf-8"))
        if size + n > _ENCODED_WORD_BYTES and chunk:
            cut = len(chunk)
            space = "".join(chunk).rfind(" ")
            if space > 0:
                cut = space + 1
            words.append("".join(chunk[:cut]))
            chunk = chunk[cut:]
            size = len("".join(chunk).encode("utf-8"))
        chunk.append(ch)
        size += n
    if chunk:
        words.append("".join(chunk))
    return "\r\n ".join("=?utf-8?b?" + base64.b64encode(w.encode("utf-8")).decode("ascii") + "?=" for w in words)


def _fold(name: str, value: str) -> bytes:
    """A header folded and encoded by the email package (once per template, not per message).

    An ASCII value stays on one line up to RFC 5322's 998 octets, as Python's 78-column folder may
    break a long subject right after the colon; others fold at 78, so RFC 2047 words stay within 75.
    """
    utf8_address = "@" in value and not parseaddr(value)[1].isascii()
    policy = _WIDE if value.isascii() else SMTPUTF8 if utf8_address else SMTP
    folded: str = policy.header_factory(name, value).fold(policy=policy)
    return folded.encode("utf-8")


def address_line(name: str, email: str) -> bytes:
    """`To: ...` CRLF for one recipient; a non-ASCII name becomes RFC 2047 encoded words.

    A non-ASCII address (EAI) stays raw UTF-8: it can only travel over SMTPUTF8, which smtp.py asks for.
    """
    name = _one_line(name)
    if name and not name.isascii():
        return ("To: " + _encoded_words(name) + " <" + email + ">\r\n").encode("utf-8")
    if email.isascii():
        return ("To: " + formataddr((name, email)) + "\r\n").encode("ascii")
    return ("To: " + str(Address(display_name=name, addr_spec=email)) + "\r\n").encode("utf-8")


def extra_header_lines(headers: Mapping[str, str]) -> bytes:
    """Per-recipient headers (List-Unsubscribe, List-Unsubscribe-Post) as header lines, checked for injection.

    Written raw, unfolded, when ASCII and within RFC 5322's 998: folding List-Unsubscribe has broken
    DKIM at some relays, and the email package would RFC 2047-encode a long URL.
    """
    out = []
    for name, value in headers.items():
        if not _HEADER_NAME.fullmatch(name) or name.lower() in _OWN_HEADERS:
            raise DeliveryError(
                f"header {name!r} cannot be added per recipient (not a header name, or one digest sets itself); "
                "check the unsubscribe settings"
            )
        if "\r" in value or "\n" in value:
            raise DeliveryError(
                f"header {name}: the value contains a line break; fix 'unsubscribe_url' / 'unsubscribe_mailto'"
            )
        line = f"{name}: {value}\r\n"
        if value.isascii() and len(line) <= 1000:
            out.append(line.encode("ascii"))
        else:
            out.append(_fold(name, value))
    return b"".join(out)


class _Part:
    """One text part, QP-encoded once between its placeholders.

    `pieces` holds encoded bytes and placeholder tokens (str) in order.
    """

    def __init__(self, text: str):
        pieces: list[bytes | str] = []
        source = _crlf_text(text)
        pos = 0
        for m in _TOKENS.finditer(source):
            static = _qp(source[pos : m.start()].encode("utf-8"))
            pieces.append(_soft_end(static))
            pieces.append(m.group())
            pos = m.end()
        pieces.append(_qp(source[pos:].encode("utf-8")))
        self.pieces = [p for p in pieces if p != b""]
        self.tokens = frozenset(p for p in self.pieces if isinstance(p, str))


class MessageTemplate:
    """A build's message with everything but the recipient fixed; `render` gives one recipient's bytes."""

    def __init__(
        self,
        *,
        sender: str,
        subject: str,
        text: str,
        html: str,
        reply_to: str = "",
        list_id: str = "",
        linesep: bytes = b"\r\n",
    ):
        if linesep not in (b"\r\n", b"\n"):
            raise ValueError("linesep must be CRLF (the wire, .eml) or LF (a Maildir on POSIX)")
        self.linesep = linesep
        self.envelope_from = parseaddr(sender)[1]
        if "@" not in self.envelope_from:
            raise DeliveryError(f"sender {sender!r} has no email address; set 'sender' to 'Name <address@domain>'")
        self.domain = self.envelope_from.rpartition("@")[2]
        # Made from the content, so the same build always gives the same bytes (the sample .eml is what a
        # send writes); '=' cannot occur unescaped in quoted-printable text, so no part can contain it.
        boundary = "=_digest_" + hashlib.sha256(f"{subject}\n{text}\n{html}".encode()).hexdigest()[:24]
        self._from = _fold("From", sender)
        self._subject = _fold("Subject", subject)
        self._lists = (_fold("Reply-To", reply_to) if reply_to else b"") + (
            _fold("List-Id", list_id) if list_id else b""
        )
        self._mime_head = (
            b"MIME-Version: 1.0\r\n"
            + f'Content-Type: multipart/alternative; boundary="{boundary}"\r\n'.encode("ascii")
            + b"\r\n"
            + self._part_head(boundary, "plain")
        )
        self._between = b"\r\n" + self._part_head(boundary, "html")
        self._end = f"\r\n--{boundary}--\r\n".encode("ascii")
        self._text = _Part(text)
        self._html = _Part(html)
        self._ids = itertools.count(1)
        self._id_stem = f"{int(time.time())}.{secrets.token_hex(6)}"
        self._date_second = -1
        self._date_line = b""

    @staticmethod
    def _part_head(boundary: str, subtype: str) -> bytes:
        return (
            f"--{boundary}\r\n"
            f'Content-Type: text/{subtype}; charset="utf-8"\r\n'
            "Content-Transfer-Encoding: quoted-printable\r\n"
            "\r\n"
        ).encode("ascii")

    @classmethod
    def from_build(cls, build: Build, *, test: bool = False, linesep: bytes = b"\r\n") -> MessageTemplate:
        """The template of `build`; a test send gets the subject prefix "[TEST] "."""
        subject = f"[TEST] {build.subject}" if test else build.subject
        return cls(
            sender=build.sender,
            subject=subject,
            text=build.text,
            html=build.html,
            reply_to=build.reply_to,
            list_id=build.list_id,
            linesep=linesep,
        )

    def new_message_id(self) -> str:
        """A Message-ID unique to this template's run: `<time.random.n@sender-domain>`."""
        return f"<{self._id_stem}.{next(self._ids)}@{self.domain}>"

    def _date(self) -> bytes:
        now = int(time.time())
        if now != self._date_second:  # formatted once a second: a run sends many messages per second
            self._date_second = now
            self._date_line = f"Date: {formatdate(now, usegmt=True)}\r\n".encode("ascii")
        return self._date_line

    def render(
        self, recipient: Recipient, values: Mapping[str, str], headers: Mapping[str, str], message_id: str
    ) -> bytes:
        """The complete message for one recipient (CRLF unless the template was made with LF).

        `values` fill the placeholders (a missing name or email comes from `recipient`); `headers` are
        the recipient's own (List-Unsubscribe, List-Unsubscribe-Post).
        """
        if "\r" in message_id or "\n" in message_id:
            raise ValueError("a Message-ID is one line")
        filled = dict(values)
        filled.setdefault("email", recipient.email)
        filled.setdefault("name", recipient.name)
        # substitutions() HTML-escapes the values of HTML tokens and leaves text tokens plain.
        subs = substitutions(filled)
        out = [
            self._from,
            address_line(recipient.name, recipient.email),
            self._subject,
            self._date(),
            b"Message-ID: " + message_id.encode("ascii") + b"\r\n",
            self._lists,
            extra_header_lines(headers) if headers else b"",
            self._mime_head,
        ]
        for part, after in ((self._text, self._between), (self._html, self._end)):
            encoded = {t: _soft_end(_qp(_one_line(subs[t]).encode("utf-8"))) for t in part.tokens}
            out.extend(encoded[x] if isinstance(x, str) else x for x in part.pieces)
            out.append(after)
        message = b"".join(out)
        return message if self.linesep == b"\r\n" else message.replace(b"\r\n", self.linesep)


def sample_message(build: Build, settings: Settings, *, strict: bool = False) -> bytes:
    """The list message the preview's sample recipient gets from `build` (email.eml, and what the checks read),
    written as a send writes it (the shared view URL filled in first, then the personal values), so only
    Message-ID and Date differ. `strict` (the checks): a loopback unsubscribe URL is refused as well, and a URL
    the headers refuse is put in them anyway, so the one-click check can say what is wrong with it."""
    from .unsubscribe_links import ONE_CLICK, list_unsubscribe_headers

    values = sample_values(settings, build.edition)
    shared = with_shared_values(build, {"view_url": values.pop("view_url")})
    url = values["unsubscribe_url"]
    try:
        headers = list_unsubscribe_headers(url, settings.unsubscribe_mailto, allow_loopback=not strict)
    except ConfigError:
        # Not https: the sample still builds, and `digest check` says what is wrong.
        headers = {"List-Unsubscribe": f"<{url}>", "List-Unsubscribe-Post": ONE_CLICK} if strict else {}
    template = MessageTemplate.from_build(shared)
    return template.render(Recipient(SAMPLE_EMAIL, SAMPLE_NAME), values, headers, template.new_message_id())
