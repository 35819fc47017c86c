"""deliver/outbox.py: a Maildir per edition, one message file per recipient; and deliver/registry.py."""

from __future__ import annotations

import email.policy
import mailbox
from pathlib import Path

import _factories as factories
import pytest

from digest.config import Settings
from digest.deliver.base import Personal
from digest.deliver.outbox import OutboxBackend
from digest.deliver.registry import make_backend
from digest.deliver.sendgrid import SendGridBackend
from digest.deliver.smtp import SmtpBackend
from digest.errors import ConfigError, DeliveryError
from digest.models import Build
from digest.personalize import fill

HTML = "<p>Hi %%name%%</p>" + "<p>News &amp; more.</p>" * 50 + '<a href="%%unsubscribe_url%%">Unsubscribe</a>'
TEXT = "Hi %%name:text%%\n" + "News & more.\n" * 20 + "Unsubscribe: %%unsubscribe_url:text%%\n"


def make_build(edition: str = "mayors-innovation-2020-01") -> Build:
    return factories.make_build(HTML, TEXT, edition=edition)


def people(n: int, start: int = 0) -> list[Personal]:
    return [
        factories.personal(f"user{i}@example.org", f"User {i}", url=f"https://example.org/u?t={i}")
        for i in range(start, start + n)
    ]


def test_each_recipient_gets_one_file_readable_by_mailbox_maildir(tmp_path: Path) -> None:
    """A batch writes one message per recipient into <outbox>/<edition>/new, readable by mailbox.Maildir."""
    backend = OutboxBackend(tmp_path / "outbox")
    backend.open()
    batch = people(5)
    result = backend.send_batch(make_build(), batch, "b1")
    backend.close()
    assert result.sent == [p.recipient.email for p in batch] and result.failed == [] and result.unknown == []
    box_path = tmp_path / "outbox" / "mayors-innovation-2020-01"
    assert sorted(d.name for d in box_path.iterdir()) == ["cur", "new", "tmp"]
    assert list((box_path / "tmp").iterdir()) == []
    box = mailbox.Maildir(box_path, create=False)
    assert len(box) == 5
    by_rcpt = {}
    for key in box.iterkeys():
        message = email.message_from_bytes(box.get_bytes(key), policy=email.policy.default)
        by_rcpt[message["To"].addresses[0].addr_spec] = message
    assert sorted(by_rcpt) == sorted(p.recipient.email for p in batch)
    for p in batch:
        message = by_rcpt[p.recipient.email]
        text, html = (part.get_content() for part in message.iter_parts())
        assert html == fill(HTML, p.values) and text == fill(TEXT, p.values)
        assert message["List-Unsubscribe"] == p.headers["List-Unsubscribe"]


def test_provider_id_names_exactly_the_batch_files(tmp_path: Path) -> None:
    """provider_id is a glob matching this batch's files in new/ and no other batch's."""
    backend = OutboxBackend(tmp_path)
    backend.open()
    first = backend.send_batch(make_build(), people(3), "b1")
    second = backend.send_batch(make_build(), people(2, start=3), "b2")
    new = tmp_path / "mayors-innovation-2020-01" / "new"
    assert len(list(new.glob(first.provider_id))) == 3
    assert len(list(new.glob(second.provider_id))) == 2
    assert len(list(new.iterdir())) == 5
    second_files = sorted(new.glob(second.provider_id), key=lambda f: int(f.name.split("_")[1].split(".")[0]))
    assert [b"<user3@example.org>" in f.read_bytes() for f in second_files] == [True, False]
    assert [b"<user4@example.org>" in f.read_bytes() for f in second_files] == [False, True]


def test_files_use_lf_like_mailbox_does_and_test_sends_are_marked(tmp_path: Path) -> None:
    """Files have LF line ends, as mailbox.Maildir.add writes them on POSIX; a test send says [TEST]."""
    backend = OutboxBackend(tmp_path, fsync=True)
    backend.open()
    backend.send_batch(make_build(), people(1), "t1", test=True)
    (path,) = (tmp_path / "mayors-innovation-2020-01" / "new").iterdir()
    raw = path.read_bytes()
    assert b"\r" not in raw
    assert email.message_from_bytes(raw, policy=email.policy.default)["Subject"] == "[TEST] January digest"


def test_unwritable_outbox_is_a_delivery_error(tmp_path: Path) -> None:
    """An outbox path that is a file stops the run with a DeliveryError naming it."""
    blocker = tmp_path / "outbox"
    blocker.write_text("not a folder")
    with pytest.raises(DeliveryError, match="outbox"):
        OutboxBackend(blocker).open()


def test_registry_makes_each_backend_by_name(tmp_path: Path) -> None:
    """make_backend maps outbox/smtp/sendgrid to their classes, reads no secret, and refuses other names."""
    settings = Settings(root=tmp_path)
    outbox = make_backend("outbox", settings)
    assert isinstance(outbox, OutboxBackend) and outbox.folder == tmp_path / "outbox"
    override = make_backend("outbox", settings, outbox_dir=tmp_path / "elsewhere")
    assert isinstance(override, OutboxBackend) and override.folder == tmp_path / "elsewhere"
    assert isinstance(make_backend("smtp", settings), SmtpBackend)
    sendgrid = make_backend("sendgrid", settings)
    assert isinstance(sendgrid, SendGridBackend) and sendgrid.batch_size == 1000
    with pytest.raises(ConfigError, match="outbox, smtp, sendgrid"):
        make_backend("carrier-pigeon", settings)
