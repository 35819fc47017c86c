"""Message: the rendered edition as an RFC 5322 .eml (multipart/alternative, text then HTML, UTF-8, QP).

Give it the final content: the placeholder tokens must be filled *before* this step, because
quoted-printable soft line breaks may split a token that a later byte-level replace would miss.
"""

from __future__ import annotations

import datetime as dt
import email.policy
from email.message import EmailMessage, MIMEPart
from email.utils import format_datetime, make_msgid, parseaddr
from typing import cast
from urllib.parse import urlsplit

from .config import Settings
from .errors import ConfigError
from .models import Rendered

# Headers this module sets; extra_headers replace them instead of adding a second copy, because
# Gmail rejects messages with two Subject, From, Date, To or Message-ID headers.
_OWN = ("Date", "Message-ID", "From", "To", "Subject", "Reply-To", "List-Id", "MIME-Version")


# Header lines may be 998 octets (RFC 5322 §2.1.1). With the default 78, Python turns a long
# unbreakable value (a List-Unsubscribe URL) into RFC 2047 encoded-words, which are not allowed there.
_POLICY = email.policy.SMTP.clone(max_line_length=998)
# Bodies need their own policy: Python's quoted-printable encoder takes its line length from the
# policy, so with _POLICY it writes 998-character lines (RFC 2045 §6.7 allows 76), and with the
# default 78 it writes 78. Short lines also cost receiving servers: they read DATA line by line.
_BODY_POLICY = email.policy.SMTP.clone(max_line_length=76)


def sender_domain(settings: Settings) -> str:
    """The domain of the From address (for Message-ID and List-Id), else of base_url."""
    address = parseaddr(settings.sender)[1]
    domain = address.rpartition("@")[2].strip().lower() if "@" in address else ""
    if not domain:
        domain = (urlsplit(settings.base_url).hostname or "").lower()
    if not domain:
        where = settings.config_file or "settings"
        raise ConfigError(f"{where}: 'sender' has no domain (got {settings.sender!r}); use 'Name <news@example.org>'")
    return domain


def list_id(settings: Settings) -> str:
    """RFC 2919 List-Id: `Name <slug.domain>`, so clients can filter and Gmail can group the newsletter."""
    return f"{settings.name} <{settings.slug}.{sender_domain(settings)}>"


def build_message(
    rendered: Rendered,
    settings: Settings,
    *,
    to: str,
    message_id: str | None = None,
    date: dt.datetime | None = None,
    extra_headers: dict[str, str] | None = None,
    subject_prefix: str = "",
) -> bytes:
    """One message as CRLF bytes ready for SMTP: text/plain first, then text/html (RFC 2046: preferred last).

    `date` defaults to now (a stale Date costs spam points); a naive `date` is taken as UTC.
    `extra_headers` (List-Unsubscribe, ...) are added once each, replacing a header of the same name.
    """
    domain = sender_domain(settings)
    when = date or dt.datetime.now(dt.UTC)
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    msg = EmailMessage(policy=_POLICY)
    msg["Date"] = format_datetime(when)
    # No idstring: a longer id would make Python fold the header onto a second line.
    msg["Message-ID"] = message_id or make_msgid(domain=domain)
    msg["From"] = settings.sender
    msg["To"] = to
    msg["Subject"] = subject_prefix + rendered.subject
    if settings.reply_to:
        msg["Reply-To"] = settings.reply_to
    msg["List-Id"] = list_id(settings)
    for name, value in (extra_headers or {}).items():
        if name in msg:
            msg.replace_header(name, value)
        else:
            msg[name] = value
    # Force quoted-printable for both parts: MRML writes the HTML as one very long line, which QP
    # folds under RFC 5322's 998-octet limit, and QP keeps mostly-ASCII text readable on the wire.
    msg["MIME-Version"] = "1.0"
    msg.make_alternative()
    msg.attach(_qp_part(rendered.text, "plain"))
    msg.attach(_qp_part(rendered.html, "html"))
    return msg.as_bytes()


def _qp_part(text: str, subtype: str) -> EmailMessage:
    # A MIMEPart, not an EmailMessage: set_content on an EmailMessage adds MIME-Version to the part.
    part = MIMEPart(policy=_BODY_POLICY)
    part.set_content(text, subtype=subtype, charset="utf-8", cte="quoted-printable")
    return cast(EmailMessage, part)  # typeshed types attach() for EmailMessage; any MIMEPart works
