"""Send: recipients -> ledger -> batches -> backend -> ledger, so each recipient gets an edition once.

Two steps, so the CLI can show the count and ask before anything leaves:

    with Ledger.open_store(location) as ledger, ledger.newsletter_lock(build.newsletter):
        plan = prepare_send(build, backend, read_recipients(csv, suppressed=...), ledger=ledger)
        # show plan.summary(), confirm (or --yes)
        report = execute_send(plan, personalize=...)
    # report.message is the closing line, report.exit_code 0 or 4 (PartialFailure)

The newsletter lock is the caller's: it spans prepare and execute, and a real send refuses to
start without it (recovering in-flight rows is only safe when no other run can own them).
Test sends (`test=True`, --to) and dry runs never write recipient states and need no lock.

Write-ahead per batch: claim_batch (pending -> in_flight, fsynced) -> backend.send_batch -> record (one commit).
A crash between the first and the last leaves the batch in_flight; the next run turns it into
`unknown` and holds it (only the provider knows whether it went out) while it sends everyone else.
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import functools
import gc
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from itertools import islice
from typing import Literal, Protocol, TypeVar

from .addresses import normalize_email
from .deliver.base import Backend, BatchResult, Personal
from .errors import BatchOutcomeUnknown, DeliveryError, LedgerError, PartialFailure
from .ledger import BatchInfo, BatchStore, PendingRow
from .models import Build, Recipient

UnknownPolicy = Literal["stop", "resend", "mark-sent"]
Personalize = Callable[[Recipient], Personal]
T = TypeVar("T")
Progress = Callable[[int], None]

REPORT_CAP = 100  # rows of problems / failures kept in a report; the counts are always complete
BATCH_CAP = 1000  # batches listed in a report (SMTP batches are small; 100k of them help nobody)
MAX_UNKNOWN_IN_A_ROW = 3  # after this many batches in a row without an answer, the provider is down: stop
# A batch's personalisations and request body are ~25 objects per recipient that live until the batch is
# answered; with CPython's default first-generation threshold (700) the collector rescans them again and
# again (~0.4 s of CPU in a 100,000-recipient SendGrid send). They hold no cycles; collect less often.
# The same holds for the rows of a list streaming into the ledger (two read-ahead chunks in hand).
GC_THRESHOLD = 10_000
READ_AHEAD = 5000  # recipients per hand-over from the list-reading thread (the ledger stores 5,000 per commit)


class RowProblemLike(Protocol):
    """What recipients.py yields for a row it skips (its RowProblem)."""

    line: int
    email: str
    reason: str
    kind: str  # invalid | duplicate | suppressed


def held_text(edition: str, count: int, batches: list[BatchInfo]) -> str:
    """What a run says about recipients it holds because their outcome is unknown: which, and how to settle them."""
    shown = ", ".join(
        f"{b.id} ({b.size} via {b.backend}{', provider id ' + b.provider_id if b.provider_id else ''})"
        for b in batches[:10]
    )
    more = f" and {len(batches) - 10} more" if len(batches) > 10 else ""
    return (
        f"{count:,} recipient{'s' if count != 1 else ''} in {len(batches)} batch{'es' if len(batches) != 1 else ''} "
        f"held with an unknown outcome, not sent again (batches {shown}{more}). SendGrid's events settle them "
        f"(the webhook, or digest reconcile --events FILE; every message carries custom_args 'edition' and 'batch'); "
        f"or decide: --mark-unknown-sent (they were delivered) or --resend-unknown (they were not; anyone who did get "
        f"it gets it twice). 'digest status {edition}' lists them"
    )


# --- plan ---------------------------------------------------------------------------------------


@dataclass
class ProblemRow:
    line: int
    email: str
    reason: str
    kind: str  # invalid | suppressed | duplicate


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
        who = _people(self.to_send)
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
            extra.append(_skipped_text(p.invalid, p.suppressed, p.duplicates))
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
) -> SendPlan:
    """Stream the list into the ledger and count what a send would do; sends nothing.

    - test: `recipients` (the --to addresses) are kept in memory; the ledger is not touched (may be None).
    - dry_run: the list is streamed and compared with the ledger read-only (ledger may be None: all new).
    - otherwise (the newsletter lock must be held): the edition is begun (content-hash rule, see
      Ledger.begin_edition), in-flight rows left by a dead run become unknown, and the list is added
      as pending. `recipients=None` sends to the edition's pending rows as the ledger has them (digest retry).
      Unknown rows with unknown="stop" are held: never sent again, never counted sent; everyone else goes.
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
        # The list is read (CSV, validation) on a worker thread while SQLite stores the previous chunk.
        listed = _read_ahead(_valid(recipients, plan.problems))
        thresholds = gc.get_threshold()
        gc.set_threshold(GC_THRESHOLD, *thresholds[1:])
        try:
            added = ledger.add_recipients(build.edition, listed, run_id=plan.run_id)
        except BaseException:
            ledger.finish_run(plan.run_id, "error")  # an unreadable list ends the run here, not as "died" later
            raise
        finally:
            gc.set_threshold(*thresholds)
        plan.listed, plan.added = added.listed, added.added
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


def _read_ahead(items: Iterable[T], chunk: int = READ_AHEAD) -> Iterator[T]:
    """`items`, iterated `chunk` at a time on a worker thread while the caller works on the previous chunk.

    For the list going into the ledger: reading and validating the CSV is Python (it needs the GIL), storing
    a chunk is SQLite (it runs with the GIL released), so the two overlap: 100,000 rows in 0.64 s instead of
    0.81 s. Order, errors (raised here, after the items read before them) and what the worker thread
    changes on the way (the problem tally) are as if iterated here; memory is two chunks.
    """
    handoff: queue.Queue[list[T] | BaseException] = queue.Queue(maxsize=2)
    stop = threading.Event()

    def put(item: list[T] | BaseException) -> bool:
        while not stop.is_set():
            try:
                handoff.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def read() -> None:
        try:
            it = iter(items)
            while True:
                part = list(islice(it, chunk))
                if not put(part) or not part:
                    return
        except BaseException as exc:  # handed to the consumer, raised there
            put(exc)

    threading.Thread(target=read, name="digest-read-list", daemon=True).start()
    try:
        while True:
            part = handoff.get()
            if isinstance(part, BaseException):
                raise part
            if not part:
                return
            yield from part
    finally:
        stop.set()  # the consumer stopped early (an error): the reader gives up instead of waiting to hand over


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


# --- execute ------------------------------------------------------------------------------------


@dataclass
class BatchOutcome:
    id: str
    size: int
    sent: int = 0
    failed: int = 0
    unknown: int = 0
    provider_id: str = ""
    error: str = ""


@dataclass
class FailureRow:
    email: str
    reason: str


@dataclass
class SendReport:
    """What a run did. `to_dict()` is the --report JSON; `exit_code` is 0 or 4; `message` the closing line."""

    edition: str
    newsletter: str
    backend: str
    mode: str  # send | test | dry-run
    listed: int = 0
    added: int = 0
    sent: int = 0
    failed: int = 0
    unknown: int = 0
    already_sent: int = 0
    failed_before: int = 0
    would_send: int = 0  # dry runs only
    pending_left: int = 0  # on the list, not sent because the run stopped early
    unknown_resolved: int = 0
    unknown_policy: str = "stop"
    unknown_held: int = 0  # unknown before this run, held (not sent, not counted sent) until settled or decided
    held_note: str = ""  # which batches, and the ways to settle them
    skipped_invalid: int = 0
    skipped_suppressed: int = 0
    duplicates: int = 0
    problems: list[ProblemRow] = field(default_factory=list)
    failures: list[FailureRow] = field(default_factory=list)
    batches: list[BatchOutcome] = field(default_factory=list)
    batches_total: int = 0
    totals: dict[str, int] = field(default_factory=dict)  # the edition's recipients per state after the run
    stopped: str = ""  # why the run stopped before the list was done
    started_at: str = ""
    duration_s: float = 0.0

    @property
    def dry_run(self) -> bool:
        return self.mode == "dry-run"

    @property
    def test(self) -> bool:
        return self.mode == "test"

    @property
    def exit_code(self) -> int:
        """4 (PartialFailure) when this run left anyone failed, unknown (new or held) or unsent; else 0."""
        left = self.failed or self.unknown or self.pending_left or self.unknown_held
        return PartialFailure.exit_code if left else 0

    @property
    def message(self) -> str:
        """The one line every run ends with: what happened, and what to do next if anything."""
        skip = _skipped_text(self.skipped_invalid, self.skipped_suppressed, self.duplicates)
        skip = f"; {skip}" if skip else ""
        held = f" {self.held_note}." if self.unknown_held else ""
        if self.dry_run:
            return (
                f"Dry run: {self.edition} would go to {_people(self.would_send)} via {self.backend} "
                f"({self.already_sent:,} already sent){skip}; nothing sent. Drop --dry-run to send.{held}"
            )
        if self.test:
            return f"Test send of {self.edition}: {self.sent:,} sent, {self.failed:,} failed via {self.backend}{skip}."
        if not (self.sent or self.failed or self.unknown or self.pending_left):
            return f"{self.edition}: already sent to {self.already_sent:,}; nothing to do{skip}.{held}"
        parts = [f"Sent {self.edition} to {_people(self.sent)} via {self.backend} in {self.duration_s:.1f} s"]
        if self.already_sent:
            parts.append(f"{self.already_sent:,} had it already")
        if self.failed:
            parts.append(f"{self.failed:,} failed (digest status {self.edition}; digest retry {self.edition})")
        if self.unknown:
            parts.append(
                f"{self.unknown:,} unknown (decide with --mark-unknown-sent or --resend-unknown; digest status)"
            )
        if self.stopped:
            parts.append(f"stopped early, {self.pending_left:,} not sent yet: {self.stopped}; re-run to continue")
        return "; ".join(parts) + skip + "." + held

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        data.update(dry_run=self.dry_run, test=self.test, exit_code=self.exit_code, message=self.message)
        return data


def execute_send(
    plan: SendPlan,
    *,
    personalize: Personalize,
    progress: Progress | None = None,
    max_unknown_in_a_row: int = MAX_UNKNOWN_IN_A_ROW,
) -> SendReport:
    """Carry out a plan from prepare_send. Raises DeliveryError when the backend stops the run
    (that batch goes back to pending first); otherwise returns the report (exit_code 4 if partial).

    A batch whose outcome is unknown (BatchOutcomeUnknown) is marked so and the run goes on with the next
    one: the rest of the list should not wait on one lost answer. After `max_unknown_in_a_row` such
    batches in a row the provider is evidently not answering, and the run stops with the rest pending.
    """
    build = plan.build
    report = SendReport(
        edition=build.edition,
        newsletter=build.newsletter,
        backend=plan.backend.name,
        mode=plan.mode,
        listed=plan.listed,
        added=plan.added,
        already_sent=plan.already_sent,
        failed_before=plan.failed_before,
        unknown_policy=plan.unknown_policy,
        skipped_invalid=plan.problems.invalid,
        skipped_suppressed=plan.problems.suppressed,
        duplicates=plan.problems.duplicates,
        problems=list(plan.problems.rows),
        started_at=plan.started_at,
    )
    if plan.held:
        report.unknown_held = plan.unknown
        report.held_note = held_text(build.edition, plan.unknown, plan.held)
    if plan.mode == "dry-run":
        report.would_send = plan.to_send
    elif plan.mode == "test":
        _send_test(plan, report, personalize, progress)
    else:
        _send_ledgered(plan, report, personalize, progress, max_unknown_in_a_row)
    report.duration_s = round(time.monotonic() - plan.started, 3)
    return report


def _send_test(plan: SendPlan, report: SendReport, personalize: Personalize, progress: Progress | None) -> None:
    backend = plan.backend
    size = max(1, backend.batch_size)
    people = plan.test_recipients
    backend.open()
    try:
        for seq, start in enumerate(range(0, len(people), size), 1):
            chunk = people[start : start + size]
            batch_id = f"test-{seq:04d}"
            try:
                result = backend.send_batch(
                    build=plan.build, batch=[personalize(r) for r in chunk], batch_id=batch_id, test=True
                )
            except BatchOutcomeUnknown as exc:
                report.unknown += len(chunk)
                _add_batch(report, BatchOutcome(batch_id, len(chunk), unknown=len(chunk), error=str(exc)))
                continue
            _tally_result(report, batch_id, len(chunk), result)
            if progress:
                progress(len(chunk))
    finally:
        backend.close()


def _send_ledgered(
    plan: SendPlan, report: SendReport, personalize: Personalize, progress: Progress | None, max_unknown_in_a_row: int
) -> None:
    """The write-ahead loop, with up to `backend.concurrency` batches out at once, each on its own thread.

    Per batch, as ever: claim (in flight, fsynced) -> hand to the backend -> record the answer, so a crash
    leaves at most `concurrency` batches handed over and unanswered (unknown). While the window is full and
    no answer is waiting, up to `concurrency` next batches are reserved (Ledger.reserve_batch: in flight, but
    without the batch row that says they were handed over), personalised and their requests built, so that
    between an answer and the next request only Ledger.promote is left: one small fsynced commit that writes
    the next batch row and, after an all-sent answer, marks the answered batch done; its rows are marked
    sent once the next request is out. Reserved rows have no batch row (recover_in_flight: pending again),
    rows of a done batch were accepted (recover_in_flight: sent). A DeliveryError stops new batches; the
    ones still out are answered and recorded before it is raised.
    """
    ledger = plan.ledger
    assert ledger is not None and plan.run_id is not None  # prepare_send guarantees both for mode "send"
    edition = plan.build.edition
    # The user's decisions apply only now, after confirmation: declining the prompt leaves them undone.
    if plan.unknown and plan.unknown_policy != "stop":
        report.unknown_resolved = ledger.resolve_unknown(edition, plan.unknown_policy)
        if plan.unknown_policy == "mark-sent":
            report.already_sent += report.unknown_resolved
    if plan.retry_failed:
        ledger.retry_failed(edition)
    window = _Window(plan, ledger, report, personalize, progress, max_unknown_in_a_row)
    outcome = "error"
    thresholds = gc.get_threshold()
    gc.set_threshold(GC_THRESHOLD, *thresholds[1:])
    try:
        plan.backend.open()  # inside the try: a run the backend refuses to start (TLS, bad key) still records its end
        window.run()
        outcome = "partial" if (report.failed or report.unknown or report.stopped) else "done"
    finally:
        window.settle_leftovers()
        gc.set_threshold(*thresholds)
        plan.backend.close()
        if report.stopped:
            report.pending_left = ledger.counts(edition, run_id=plan.scope)["pending"]
        ledger.finish_run(plan.run_id, outcome)
        ledger.finish_edition_if_done(edition)
        report.totals = ledger.counts(edition)


class _Window:
    """One ledgered run's batches: those out with the backend, the next ones made ahead, the answers."""

    def __init__(
        self,
        plan: SendPlan,
        ledger: BatchStore,
        report: SendReport,
        personalize: Personalize,
        progress: Progress | None,
        max_unknown_in_a_row: int,
    ):
        assert plan.run_id is not None
        self.ledger, self.build, self.backend = ledger, plan.build, plan.backend
        self.edition, self.run_id, self.scope = plan.build.edition, plan.run_id, plan.scope
        self.report, self.personalize, self.progress = report, personalize, progress
        self.max_unknown_in_a_row = max_unknown_in_a_row
        self.size = max(1, self.backend.batch_size)
        self.width = max(1, self.backend.concurrency)
        self.flights: dict[str, _Flight] = {}
        self.answers: queue.SimpleQueue[_Flight] = queue.SimpleQueue()
        self.ahead: collections.deque[_Ahead] = collections.deque()  # reserved and prepared, in batch order
        self.answered: _Answered | None = None  # all sent; settled by the next promote, rows recorded after
        self.seq = 0
        self.unknown_in_a_row = 0
        self.refused: DeliveryError | None = None

    def _batch_id(self, seq: int) -> str:
        return f"r{self.run_id}-b{seq:05d}"

    def run(self) -> None:
        exhausted = False
        while True:
            stopping = self.refused is not None or self.unknown_in_a_row >= self.max_unknown_in_a_row
            while not (stopping or exhausted) and len(self.flights) < self.width:
                exhausted = not self._launch()
            if not self.flights:
                break
            # Made while requests are out, so an answer is followed by the next request at once.
            while not (stopping or exhausted) and len(self.ahead) < self.width and self.answers.empty():
                ahead = _prepare_next(
                    self.ledger,
                    self.backend,
                    self.build,
                    self.personalize,
                    self.scope,
                    self.size,
                    self._batch_id(self.seq + len(self.ahead) + 1),
                )
                if ahead is None:
                    break
                self.ahead.append(ahead)
            self._settle(self.answers.get())
        self._record_answered()
        self._drop_ahead()
        if self.refused is not None:
            exc = self.refused
            raise type(exc)(
                f"{exc} (this run sent {self.report.sent:,} before it stopped; the rest stay pending: "
                "fix the cause and re-run the same command to continue)"
            ) from exc
        if self.unknown_in_a_row >= self.max_unknown_in_a_row and self.ledger.next_batch(
            self.edition, 1, run_id=self.scope
        ):
            self.report.stopped = f"{self.unknown_in_a_row} batches in a row got no answer from {self.backend.name}"

    def _launch(self) -> bool:
        """Write the next batch ahead (in flight, fsynced) and hand it over on its own thread; False when
        nothing is pending."""
        ledger, build, backend = self.ledger, self.build, self.backend
        batch_id = self._batch_id(self.seq + 1)
        ahead = self.ahead[0] if self.ahead else None
        if ahead is not None and ahead.batch_id == batch_id:
            # Reserved while other requests were out: only the batch row is left to write, and an answered
            # batch's "done" goes in the same fsynced commit (its rows follow below).
            answered = self.answered
            done = (answered.batch_id, answered.result.provider_id) if answered is not None else None
            ledger.promote(
                self.edition, batch_id, len(ahead.rows), backend.name, build.content_hash, run_id=self.scope, done=done
            )
            self.ahead.popleft()
            rows, send = ahead.rows, ahead.send
        else:
            self._record_answered()
            self._drop_ahead()
            rows = ledger.claim_batch(self.edition, self.size, batch_id, backend.name, build.content_hash, self.scope)
            if not rows:
                return False
            try:
                batch = [self.personalize(row.recipient()) for row in rows]
            except BaseException:
                ledger.release(batch_id, "personalisation failed; nothing was handed to the backend")
                raise
            send = _prepared(backend, build, batch, batch_id)
        self.seq += 1
        self.flights[batch_id] = _Flight(send, batch_id, rows, self.answers.put)
        self._record_answered()  # the answered batch's rows, now that the next request is out
        return True

    def _settle(self, flight: _Flight) -> None:
        """Record one batch's answer (or its lack) in the ledger and the report."""
        del self.flights[flight.batch_id]
        batch_id, rows = flight.batch_id, flight.rows
        try:
            result = flight.result()
        except BatchOutcomeUnknown as exc:
            self.ledger.mark_batch_unknown(batch_id, str(exc))
            self.report.unknown += len(rows)
            _add_batch(self.report, BatchOutcome(batch_id, len(rows), unknown=len(rows), error=str(exc)))
            self.unknown_in_a_row += 1
            return
        except DeliveryError as exc:
            # The backend's contract: DeliveryError means nothing of this batch was sent.
            self.ledger.release(batch_id, str(exc))
            self.refused = self.refused or exc
            return
        except BaseException as exc:
            # A bug or Ctrl-C inside the backend: whether the request left is anyone's guess.
            self.ledger.mark_batch_unknown(batch_id, f"interrupted: {exc!r}")
            raise
        current = _Answered(batch_id, rows, result)
        if self.ahead and self.answered is None and _all_sent(result, rows):
            self.answered = current  # the common answer: settled by the next promote, rows after its request
            self.unknown_in_a_row = 0
            return
        counts = _record(self.ledger, self.report, self.edition, current, self.progress)
        self.unknown_in_a_row = 0 if not counts.get("unknown") else self.unknown_in_a_row + 1

    def _record_answered(self) -> None:
        answered, self.answered = self.answered, None
        if answered is not None:
            _record(self.ledger, self.report, self.edition, answered, self.progress)

    def _drop_ahead(self) -> None:
        while self.ahead:
            self.ledger.drop_reservation(self.ahead.pop().batch_id)

    def settle_leftovers(self) -> None:
        """After the loop, however it ended, nothing stays in flight in this run's hands.

        If the ledger itself is failing, the next run's recover_in_flight settles what is left here."""
        with contextlib.suppress(LedgerError):
            self._record_answered()
        for flight in list(self.flights.values()):
            # Still out when the run stopped (Ctrl-C, a bug, the ledger failing): it may have gone.
            del self.flights[flight.batch_id]
            with contextlib.suppress(LedgerError):
                self.ledger.mark_batch_unknown(flight.batch_id, "the run stopped while the request was out")
                self.report.unknown += len(flight.rows)
        with contextlib.suppress(LedgerError):
            self._drop_ahead()


@dataclass(frozen=True)
class _Answered:
    """A batch whose answer came and is not yet recorded row by row."""

    batch_id: str
    rows: list[PendingRow]
    result: BatchResult


def _all_sent(result: BatchResult, rows: list[PendingRow]) -> bool:
    """The backend accepted exactly the batch's rows: nothing failed, nothing unknown, nobody missing."""
    return (
        not result.failed
        and not result.unknown
        and len(result.sent) == len(rows)
        and set(result.sent) == {row.email for row in rows}
    )


def _record(
    ledger: BatchStore, report: SendReport, edition: str, answered: _Answered, progress: Progress | None
) -> dict[str, int]:
    """Record an answer in the ledger (Ledger.record; for a batch promote already marked done, the same)
    and in the report; returns the counts by new state."""
    result = answered.result
    counts = ledger.record(edition, answered.batch_id, result)
    report.sent += counts.get("sent", 0)
    report.failed += counts.get("failed", 0)
    report.unknown += counts.get("unknown", 0)
    _add_batch(
        report,
        BatchOutcome(
            answered.batch_id,
            len(answered.rows),
            counts.get("sent", 0),
            counts.get("failed", 0),
            counts.get("unknown", 0),
            result.provider_id,
        ),
    )
    _add_failures(report, result.failed)
    if progress:
        progress(len(answered.rows))
    return counts


@dataclass(frozen=True)
class _Ahead:
    """The next batch, personalised, prepared and reserved while the window was full."""

    batch_id: str
    rows: list[PendingRow]
    send: Callable[[], BatchResult]


def _prepared(backend: Backend, build: Build, batch: list[Personal], batch_id: str) -> Callable[[], BatchResult]:
    """The call that hands `batch` to the backend. Backends with `prepare_batch` (SendGrid) build the request
    now; an error doing so is raised by the call, where send_batch would have raised it."""
    prepare = getattr(backend, "prepare_batch", None)
    if prepare is None:
        return functools.partial(backend.send_batch, build, batch, batch_id, False)
    try:
        send: Callable[[], BatchResult] = prepare(build, batch, batch_id, False)
    except Exception as exc:
        error = exc

        def fail() -> BatchResult:
            raise error

        return fail
    return send


def _prepare_next(
    ledger: BatchStore,
    backend: Backend,
    build: Build,
    personalize: Personalize,
    scope: int | None,
    size: int,
    batch_id: str,
) -> _Ahead | None:
    """Reserve the next batch (Ledger.reserve_batch: in flight, without the batch row that promote writes
    just before the request), personalise it and prepare its request. Any error drops the reservation
    and is left for the regular path (claim_batch), which handles it as it always did."""
    try:
        rows = ledger.reserve_batch(build.edition, size, batch_id, run_id=scope)
    except LedgerError:
        return None  # the regular path meets the same error where it is handled
    if not rows:
        return None
    try:
        batch = [personalize(row.recipient()) for row in rows]
        prepare = getattr(backend, "prepare_batch", None)
        if prepare is None:
            send: Callable[[], BatchResult] = functools.partial(backend.send_batch, build, batch, batch_id, False)
        else:
            send = prepare(build, batch, batch_id, False)
    except Exception:
        with contextlib.suppress(LedgerError):
            ledger.drop_reservation(batch_id)
        return None
    return _Ahead(batch_id, rows, send)


class _Flight:
    """One batch being handed to the backend on a daemon thread; `landed(flight)` is called with it once
    the answer or error is in, and `result()` returns or raises it.

    A daemon thread, so an interrupted run (Ctrl-C lands in the main thread, which marks the batch unknown)
    does not wait at exit for a request that may still be out."""

    def __init__(
        self, send: Callable[[], BatchResult], batch_id: str, rows: list[PendingRow], landed: Callable[[_Flight], None]
    ):
        self.batch_id = batch_id
        self.rows = rows
        self._send = send
        self._landed = landed
        self._result: BatchResult | None = None
        self._error: BaseException | None = None
        threading.Thread(target=self._run, name=f"digest-send-{batch_id}", daemon=True).start()

    def _run(self) -> None:
        try:
            self._result = self._send()
        except BaseException as exc:  # handed to the main thread, which decides (unknown, release, ...)
            self._error = exc
        finally:
            self._landed(self)

    def result(self) -> BatchResult:
        """Only after `landed`."""
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result


def _tally_result(report: SendReport, batch_id: str, size: int, result: BatchResult) -> None:
    unknown = result.unknown
    report.sent += len(result.sent)
    report.failed += len(result.failed)
    report.unknown += len(unknown)
    _add_failures(report, result.failed)
    _add_batch(
        report, BatchOutcome(batch_id, size, len(result.sent), len(result.failed), len(unknown), result.provider_id)
    )


def _add_failures(report: SendReport, failed: Iterable[tuple[str, str]]) -> None:
    """Keep the first REPORT_CAP failed addresses with their reasons; report.failed counts them all."""
    for email, reason in failed:
        if len(report.failures) >= REPORT_CAP:
            return
        report.failures.append(FailureRow(email, reason))


def _add_batch(report: SendReport, outcome: BatchOutcome) -> None:
    report.batches_total += 1
    if len(report.batches) < BATCH_CAP:
        report.batches.append(outcome)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _people(n: int) -> str:
    return f"{n:,} recipient{'s' if n != 1 else ''}"


def _skipped_text(invalid: int, suppressed: int, duplicates: int) -> str:
    """ "3 list rows skipped (1 invalid, 1 suppressed, 1 duplicate)", or "" when none were."""
    total = invalid + suppressed + duplicates
    if not total:
        return ""
    kinds = [
        f"{n:,} {kind}"
        for n, kind in ((invalid, "invalid"), (suppressed, "suppressed"), (duplicates, "duplicate"))
        if n
    ]
    return f"{total:,} list row{'s' if total != 1 else ''} skipped ({', '.join(kinds)})"
