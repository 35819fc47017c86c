"""Per-recipient MIME bytes: the message is serialised once as a template and personalised in bytes.

Building and serialising an `EmailMessage` per recipient costs ~4.4 ms (ENGINES.md §5); mailmerge
spends 27-35 ms. Here the headers, boundaries and part headers are bytes made once, and each body
part is quoted-printable encoded once *between* the placeholders. Per recipient only the values are
encoded and the pieces joined: ~25 µs of CPU per message for a 60-95 KB HTML digest (measured over
100,000 messages), against ~8.7 ms for an EmailMessage built and serialised per recipient.

Why that is correct: a QP soft line break ("=" CRLF) may stand anywhere outside an "=XX" escape and
decodes to nothing. Every pre-encoded static chunk that a placeholder follows ends in a soft break
(unless it ends a line), and so does every encoded value, so each value starts on a fresh encoded
line and no line exceeds 76 characters whatever the value's length. Placeholders are never inside
encoded text, so a soft break can never split one (the hazard of substituting into encoded QP).
"""

from __future__ import annotations

import base64
import binascii
import itertools
import re
import secrets
import time
from collections.abc import Mapping
from email.headerregistry import Address
from email.policy import SMTP, SMTPUTF8
from email.utils import formataddr, formatdate, parseaddr

from ..errors import DeliveryError
from ..models import Build
from ..personalize import HTML_TOKENS, TEXT_TOKENS, substitutions
from .base import Personal

MAX_LINE = 76  # RFC 2045 §6.7: encoded lines of at most 76 characters
_TOKENS = re.compile("|".join(re.escape(t) for t in (*TEXT_TOKENS.values(), *HTML_TOKENS.values())))
_HEADER_NAME = re.compile(r"[!-9;-~]+")  # RFC 5322 field name: printable ASCII except ':'
# Headers this module writes itself; a second copy from Personal.headers would make the message invalid.
_OWN_HEADERS = frozenset(
    {"from", "to", "subject", "date", "message-id", "reply-to", "mime-version", "content-type",
     "content-transfer-encoding", "cc", "bcc", "sender"}
)  # fmt: skip
_ENCODED_WORD_BYTES = 45  # 45 bytes -> 60 base64 chars; with "=?utf-8?b?" and "?=" under 75 (RFC 2047)


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
    """A structured header folded and encoded by the email package (used once per template, not per message)."""
    utf8 = not value.isascii() and "@" in value and not parseaddr(value)[1].isascii()
    policy = SMTPUTF8 if utf8 else SMTP
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
    """Personal.headers (List-Unsubscribe, List-Unsubscribe-Post) as header lines, checked for injection.

    Written raw, unfolded, when ASCII and shorter than RFC 5322's 998: folding List-Unsubscribe has
    broken DKIM at some relays (EMAIL-QUALITY.md §3), and the email package would RFC 2047-encode a long URL.
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
        linesep: bytes = b"\r\n",
    ):
        if linesep not in (b"\r\n", b"\n"):
            raise ValueError("linesep must be CRLF (the wire, .eml) or LF (a Maildir on POSIX)")
        self.linesep = linesep
        self.envelope_from = parseaddr(sender)[1]
        if "@" not in self.envelope_from:
            raise DeliveryError(f"sender {sender!r} has no email address; set 'sender' to 'Name <address@domain>'")
        self.domain = self.envelope_from.rpartition("@")[2]
        # '=' cannot occur in quoted-printable text unescaped, so this boundary can never occur in a part.
        boundary = f"=_digest_{secrets.token_hex(12)}"
        self._from = _fold("From", sender)
        self._subject = _fold("Subject", subject)
        self._reply_to = _fold("Reply-To", reply_to) if reply_to else b""
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
            linesep=linesep,
        )

    def new_message_id(self) -> str:
        """A Message-ID unique to this template's run: `<time.random.n@sender-domain>`."""
        return f"<{self._id_stem}.{next(self._ids)}@{self.domain}>"

    def _date(self) -> bytes:
        now = int(time.time())
        if now != self._date_second:  # formatdate costs ~5 µs; a run sends many messages per second
            self._date_second = now
            self._date_line = f"Date: {formatdate(now, usegmt=True)}\r\n".encode("ascii")
        return self._date_line

    def render(self, p: Personal, message_id: str) -> bytes:
        """The complete message for one recipient (CRLF unless the template was made with LF)."""
        if "\r" in message_id or "\n" in message_id:
            raise ValueError("a Message-ID is one line")
        recipient = p.recipient
        values = dict(p.values)
        values.setdefault("email", recipient.email)
        values.setdefault("name", recipient.name)
        # substitutions() HTML-escapes the values of HTML tokens and leaves text tokens plain.
        subs = substitutions(values)
        out = [
            self._from,
            address_line(recipient.name, recipient.email),
            self._subject,
            self._date(),
            b"Message-ID: " + message_id.encode("ascii") + b"\r\n",
            self._reply_to,
            extra_header_lines(p.headers) if p.headers else b"",
            self._mime_head,
        ]
        for part, after in ((self._text, self._between), (self._html, self._end)):
            encoded = {t: _soft_end(_qp(_one_line(subs[t]).encode("utf-8"))) for t in part.tokens}
            out.extend(encoded[x] if isinstance(x, str) else x for x in part.pieces)
            out.append(after)
        message = b"".join(out)
        return message if self.linesep == b"\r\n" else message.replace(b"\r\n", self.linesep)
