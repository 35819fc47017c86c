"""Outbox backend: every recipient's message as one file in a local Maildir (no network, no key).

The Maildir is `<outbox>/<edition>/` with the standard tmp/new/cur folders, so `mailbox.Maildir`,
mutt (`mutt -f outbox/<edition>`) or any IMAP server's Maildir can read it. Messages are written the
Maildir way, to tmp/ and then renamed into new/, so a reader never sees half a message; with LF line
endings, as `mailbox.Maildir.add` writes them on POSIX.
"""

from __future__ import annotations

import os
import re
import socket
import time
from itertools import count
from pathlib import Path

from ..errors import DeliveryError
from ..message import MessageTemplate
from ..models import Build
from .base import BatchResult, Personal

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


class OutboxBackend:
    """Writes messages into a Maildir per edition under `folder`. `fsync=True` makes each file durable
    before it counts as sent (a power cut cannot lose it) at the cost of a disk flush per message."""

    name = "outbox"
    concurrency = 1  # a local folder: nothing to wait on

    def __init__(self, folder: Path, *, batch_size: int = 100, fsync: bool = False):
        self.folder = Path(folder)
        self.batch_size = batch_size
        self.fsync = fsync
        self._templates: dict[tuple[str, str, bool], MessageTemplate] = {}
        self._seq = count(1)
        # Maildir's unique-name recipe: time, process, a per-process counter and the host, with ':' and
        # '/' (reserved in Maildir names) removed from the host.
        self._host = _UNSAFE.sub("_", socket.gethostname()) or "localhost"

    def maildir(self, build: Build) -> Path:
        """The Maildir that `build`'s messages go to."""
        return self.folder / _UNSAFE.sub("_", build.edition)

    def open(self) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DeliveryError(
                f"{self.folder}: cannot create the outbox folder ({exc.strerror}); fix 'outbox_dir'"
            ) from None

    def _template(self, build: Build, test: bool) -> MessageTemplate:
        key = (build.edition, build.content_hash, test)
        template = self._templates.get(key)
        if template is None:
            template = MessageTemplate.from_build(build, test=test, linesep=b"\n")
            self._templates[key] = template
        return template

    def _prepare(self, box: Path) -> None:
        try:
            for sub in ("tmp", "new", "cur"):
                (box / sub).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DeliveryError(f"{box}: cannot create the Maildir ({exc.strerror}); check 'outbox_dir'") from None

    def send_batch(self, build: Build, batch: list[Personal], batch_id: str, test: bool = False) -> BatchResult:
        """Write one file per recipient into new/.

        The batch's files are named `<stem>_<n>.<host>` (n = 1, 2, ... in batch order) and provider_id is
        the glob `<stem>_*.<host>` naming exactly them: the ledger stores provider_id on every recipient's
        row, so a list of 100 file names per batch would cost it ~4 KB per recipient.
        """
        template = self._template(build, test)
        box = self.maildir(build)
        self._prepare(box)
        result = BatchResult()
        now = time.time()
        stem = f"{int(now)}.M{int(now % 1 * 1e6)}P{os.getpid()}Q{next(self._seq)}"
        for n, p in enumerate(batch, 1):
            data = template.render(p.recipient, p.values, p.headers, template.new_message_id())
            name = f"{stem}_{n}.{self._host}"
            tmp, new = box / "tmp" / name, box / "new" / name
            try:
                with open(tmp, "xb") as fh:
                    fh.write(data)
                    if self.fsync:
                        fh.flush()
                        os.fsync(fh.fileno())
                os.rename(tmp, new)
            except OSError as exc:
                if not result.sent:
                    raise DeliveryError(f"{box}: cannot write a message ({exc.strerror}); check free space") from None
                # Some of this batch are already in new/: report them, and the rest as not written.
                result.failed.append((p.recipient.email, f"not written to the outbox: {exc.strerror}"))
                continue
            result.sent.append(p.recipient.email)
        result.provider_id = f"{stem}_*.{self._host}"
        return result

    def close(self) -> None:
        self._templates.clear()
