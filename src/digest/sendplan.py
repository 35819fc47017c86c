"""A send's plan, made before anything is sent: the list streamed into the ledger (or compared with it, for a
dry run), the problems tallied, and what the run will do counted so the CLI can show it and ask."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Literal, Protocol

from .addresses import normalize_email
from .collector import collect_less_often
from .deliver.base import Backend
from .errors import LedgerError
from .ledger import BatchInfo, BatchStore
from .models import Build, Recipient
from .sendreport import REPORT_CAP, ProblemRow, people, skipped_text

UnknownPolicy = Literal["stop", "resend", "mark-sent"]


class RowProblemLike(Protocol):
    """What recipients.py yields for a row it skips (its RowProblem)."""

    line: int
    email: str
    reason: str
    kind: str  # invalid | duplicate | suppressed


@dataclass
class Tally:
    """Rows skipped while streaming the list: every one counted, the first REPORT_CAP kept."""

    invalid: int = 0
    suppressed: int = 0
    duplicates: int = 0
    rows: list[ProblemRow] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.invalid + self.suppressed + self.duplicates

    def add(self, problem: RowProblemLike) -> None:
        if problem.kind == "suppressed":
            self.suppressed += 1
        elif problem.kind == "duplicate":
            self.duplicates += 1
        else:
            self.invalid += 1
        if len(self.rows) < REPORT_CAP:
            self.rows.append(ProblemRow(problem.line, problem.email, problem.reason, problem.kind))


@dataclass
class SendPlan:
    """What a send will do, computed before anything is sent (the CLI shows it and asks)."""

    build: Build
    backend: Backend
    ledger: BatchStore | None
    mode: Literal["send", "test", "dry-run"]
    unknown_policy: UnknownPolicy
    retry_failed: bool
    allow_changed: bool = False
    run_id: int | None = None
    scope: int | None = None  # the run whose list limits who is sent to; None: every pending row (retry)
    listed: int = 0  # valid recipients on the list given (all of them for test sends)
    added: int = 0  # of those, new to the edition
    listed_by: int | None = None  # a --worker run: the worker run that read and added the same list
    to_send: int = 0  # what execute_send will hand to the backend
    already_sent: int = 0  # on the list and already sent (skipped)
    failed_before: int = 0  # on the list and failed in an earlier run (digest retry sends them)
    unknown: int = 0  # recipients with an unknown outcome (resolved by execute_send per unknown_policy)
    held: list[BatchInfo] = field(default_factory=list)  # their batches, when held (policy "stop")
    problems: Tally = field(default_factory=Tally)
    test_recipients: list[Recipient] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    started_at: str = field(default_factory=lambda: _now())

    @property
    def edition(self) -> str:
        return self.build.edition

    @property
    def nothing_to_do(self) -> bool:
        return self.to_send == 0

    def cancel(self) -> None:
        """The user declined at the prompt: close the run as "declined". Nothing was sent; list members
        added as pending stay pending (they are on the list), unknown rows stay undecided."""
        if self.ledger is not None and self.run_id is not None:
            self.ledger.finish_run(self.run_id, "declined")

    def summary(self) -> str:
        """One line for the confirmation prompt."""
        who = people(self.to_send)
        if self.mode == "test":
            return f"Test send of {self.edition} to {who} via {self.backend.name} (ledger untouched)."
        extra = []
        if self.already_sent:
            extra.append(f"{self.already_sent:,} already sent")
        if self.failed_before and not self.retry_failed:
            extra.append(f"{self.failed_before:,} failed earlier (digest retry)")
        if self.unknown and self.unknown_policy == "mark-sent":
            extra.append(f"{self.unknown:,} unknown to be marked sent")
        if self.unknown and self.unknown_policy == "stop":
            extra.append(f"{self.unknown:,} with an unknown outcome held")
        if self.problems.total:
            p = self.problems
            extra.append(skipped_text(p.invalid, p.suppressed, p.duplicates))
        if self.listed_by is not None:
            extra.append(f"the list as worker run {self.listed_by} added it, its skipped rows in that run's report")
        tail = f" ({'; '.join(extra)})" if extra else ""
        verb = "Would send" if self.mode == "dry-run" else "Send"
        return f"{verb} {self.edition} to {who} via {self.backend.name}{tail}."


def prepare_send(
    build: Build,
    backend: Backend,
    recipients: Iterable[Recipient | RowProblemLike] | None,
    *,
    ledger: BatchStore | None,
    test: bool = False,
    dry_run: bool = False,
    unknown: UnknownPolicy = "stop",
    allow_changed: bool = False,
    retry_failed: bool = False,
    list_digest: str | None = None,
) -> SendPlan:
    """Stream the list into the ledger and count what a send would do; sends nothing.

    - test: `recipients` (the --to addresses) are kept in memory; the ledger is not touched (may be None).
    - dry_run: the list is streamed and compared with the ledger read-only (ledger may be None: all new).
    - otherwise (the newsletter lock must be held): the edition is begun (content-hash rule, see
      Ledger.begin_edition), in-flight rows left by a dead run become unknown, and the list is added
      as pending. `recipients=None` sends to the edition's pending rows as the ledger has them (digest retry).
      Unknown rows with unknown="stop" are held: never sent again, never counted sent; everyone else goes.
    - list_digest (a --worker run): the list's digest; workers given the same list leave it to one of them to add.
    """
    if test and dry_run:
        mode: Literal["send", "test", "dry-run"] = "dry-run"
    else:
        mode = "test" if test else "dry-run" if dry_run else "send"
    plan = SendPlan(build, backend, ledger, mode, unknown, retry_failed, allow_changed)
    if test:
        for row in recipients or ():
            if isinstance(row, Recipient):
                plan.test_recipients.append(row)
            else:
                plan.problems.add(row)
        plan.listed = plan.to_send = len(plan.test_recipients)
        return plan
    if dry_run:
        _count_dry(plan, recipients)
        return plan

    if ledger is None:
        raise LedgerError(
            "send: a real send needs the ledger; open it with Ledger.open_store(settings.ledger_location())"
        )
    # Recovering in-flight rows below is only right when no other run can own them.
    ledger.require_lock(build.newsletter)
    ledger.begin_edition(
        build.edition, build.newsletter, build.period, build.content_hash, build.subject, allow_changed=allow_changed
    )
    ledger.recover_in_flight(build.edition)
    unknown_now = ledger.counts(build.edition)["unknown"]
    if unknown_now and unknown == "stop":
        plan.held = ledger.unknown_batches(build.edition)
    plan.unknown = unknown_now
    if recipients is None:
        counts = ledger.counts(build.edition)
        plan.listed = sum(counts.values())
    else:
        plan.run_id = plan.scope = ledger.start_run(build.edition, backend.name)
        # Read in this thread: a reading thread would take turns with this one for the GIL, not overlap with it.
        listed = _valid(recipients, plan.problems)
        try:
            with collect_less_often():
                added = ledger.add_recipients(build.edition, listed, run_id=plan.run_id, list_digest=list_digest)
        except BaseException:
            ledger.finish_run(plan.run_id, "error")  # an unreadable list ends the run here, not as "died" later
            raise
        plan.listed, plan.added, plan.listed_by = added.listed, added.added, added.listed_by
        counts = ledger.counts(build.edition, run_id=plan.run_id)
    plan.already_sent = counts["sent"]
    plan.failed_before = counts["failed"]
    plan.to_send = counts["pending"] + (counts["unknown"] if unknown == "resend" else 0)
    plan.to_send += counts["failed"] if retry_failed else 0
    if plan.run_id is None:
        plan.run_id = ledger.start_run(build.edition, backend.name)
    return plan


def _valid(rows: Iterable[Recipient | RowProblemLike], tally: Tally) -> Iterator[Recipient]:
    for row in rows:
        if isinstance(row, Recipient):
            yield row
        else:
            tally.add(row)


def _count_dry(plan: SendPlan, recipients: Iterable[Recipient | RowProblemLike] | None) -> None:
    """Dry run: what the real run would do, reading the ledger in chunks and writing nothing.

    It refuses where the real run would (changed content) and holds what it would hold (unknown outcomes),
    so a dry run before a cron send shows both first. The list is de-duplicated by recipients.py.
    """
    ledger, build = plan.ledger, plan.build
    edition = build.edition
    known = ledger is not None and ledger.edition(edition) is not None
    if known and ledger is not None:
        ledger.check_content(edition, build.content_hash, allow_changed=plan.allow_changed)
        counts = ledger.counts(edition)
        plan.unknown = counts["unknown"] + counts["in_flight"]  # a real run turns in_flight into unknown first
        if plan.unknown and plan.unknown_policy == "stop":
            plan.held = ledger.unknown_batches(edition, include_in_flight=True)
    chunk: list[str] = []

    def flush() -> None:
        states = ledger.states_of(edition, chunk) if known and ledger is not None else {}
        plan.added += sum(1 for email in chunk if email not in states)
        for email in chunk:
            state = states.get(email, "pending")
            if state == "sent":
                plan.already_sent += 1
            elif state == "failed":
                plan.failed_before += 1
                plan.to_send += 1 if plan.retry_failed else 0
            elif state in ("unknown", "in_flight"):
                plan.to_send += 1 if plan.unknown_policy == "resend" else 0
            else:
                plan.to_send += 1
        chunk.clear()

    for recipient in _valid(recipients or (), plan.problems):
        plan.listed += 1
        chunk.append(normalize_email(recipient.email))
        if len(chunk) >= 5000:
            flush()
    flush()


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
