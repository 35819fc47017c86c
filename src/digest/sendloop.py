"""The exactly-once batch loop of a real send: each recipient of an edition is handed to the backend once.

Write-ahead per batch: claim_batch (pending -> in_flight, fsynced) -> backend.send_batch -> record (one commit).
A crash between the first and the last leaves the batch in_flight; the next run turns it into
`unknown` and holds it (only the provider knows whether it went out) while it sends everyone else.
Every rule of that protocol lives in this module; the ledger (`ledger.BatchStore`) keeps the states.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import queue
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from .collector import collect_less_often
from .deliver.base import Backend, BatchResult, Personal
from .errors import BatchOutcomeUnknown, DeliveryError, LedgerError
from .ledger import BatchStore, PendingRow
from .models import Build, Recipient
from .sendplan import SendPlan
from .sendreport import BatchOutcome, SendReport, add_batch, add_failures

Personalize = Callable[[Recipient], Personal]
Progress = Callable[[int], None]

MAX_UNKNOWN_IN_A_ROW = 3  # after this many batches in a row without an answer, the provider is down: stop
GIL_TURN = 0.0005  # seconds: the switch interval while sender threads build requests (see _short_gil_turns)


def send_ledgered(
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
    rows of a done batch were accepted (recover_in_flight: sent). A batch claimed when none was made ahead
    (answers come faster than this thread makes requests) is personalised and its request built on its
    sender thread, while this one claims and records the others. A DeliveryError stops new batches; the
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
    try:
        plan.backend.open()  # inside the try: a run the backend refuses to start (TLS, bad key) still records its end
        with collect_less_often(), _short_gil_turns():
            window.run()
        outcome = "partial" if (report.failed or report.unknown or report.stopped) else "done"
    finally:
        window.settle_leftovers()
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
        self.senders = _Senders(self.width)
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
            send = _made_on_sender(self.personalize, backend, build, rows, batch_id)
        self.seq += 1
        flight = _Flight(send, batch_id, rows, self.answers.put)
        self.flights[batch_id] = flight
        self.senders.start(flight)
        self._record_answered()  # the answered batch's rows, now that the next request is out
        return True

    def _settle(self, flight: _Flight) -> None:
        """Record one batch's answer (or its lack) in the ledger and the report."""
        del self.flights[flight.batch_id]
        batch_id, rows = flight.batch_id, flight.rows
        try:
            result = flight.result()
        except _NotHandedOver as exc:
            self.ledger.release(batch_id, "personalisation failed; nothing was handed to the backend")
            raise exc.error from None
        except BatchOutcomeUnknown as exc:
            self.ledger.mark_batch_unknown(batch_id, str(exc))
            self.report.unknown += len(rows)
            add_batch(self.report, BatchOutcome(batch_id, len(rows), unknown=len(rows), error=str(exc)))
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
        current = _Answered(batch_id, rows, result, _all_sent(result, rows))
        if self.ahead and self.answered is None and current.all_sent:
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
        out = bool(self.flights)
        try:
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
        finally:
            self.senders.stop(wait=not out)  # a request still out is not waited for


@dataclass(frozen=True)
class _Answered:
    """A batch whose answer came and is not yet recorded row by row."""

    batch_id: str
    rows: list[PendingRow]
    result: BatchResult
    all_sent: bool  # _all_sent: the ledger marks the batch's rows sent without looking each one up


def _all_sent(result: BatchResult, rows: list[PendingRow]) -> bool:
    """The backend accepted exactly the batch's rows: nothing failed, nothing unknown, nobody missing."""
    if result.failed or result.unknown or len(result.sent) != len(rows):
        return False
    emails = [row.email for row in rows]
    # Backends answer in the batch's order, so comparing the lists settles it without building two sets.
    return result.sent == emails or set(result.sent) == set(emails)


def _record(
    ledger: BatchStore, report: SendReport, edition: str, answered: _Answered, progress: Progress | None
) -> dict[str, int]:
    """Record an answer in the ledger (Ledger.record; for a batch promote already marked done, the same)
    and in the report; returns the counts by new state."""
    result = answered.result
    counts = ledger.record(edition, answered.batch_id, result, answered.all_sent)
    report.sent += counts.get("sent", 0)
    report.failed += counts.get("failed", 0)
    report.unknown += counts.get("unknown", 0)
    add_batch(
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
    add_failures(report, result.failed)
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


class _NotHandedOver(Exception):
    """Personalising a batch on its sender thread failed (`error`): nothing of it was handed to the backend."""

    def __init__(self, error: BaseException):
        super().__init__(str(error))
        self.error = error


def _made_on_sender(
    personalize: Personalize, backend: Backend, build: Build, rows: list[PendingRow], batch_id: str
) -> Callable[[], BatchResult]:
    """The call that personalises `rows`, builds the request and hands it to the backend, all on the sender
    thread that runs it."""

    def send() -> BatchResult:
        try:
            batch = [personalize(row.recipient()) for row in rows]
        except Exception as exc:
            raise _NotHandedOver(exc) from exc
        return _prepared(backend, build, batch, batch_id)()

    return send


@contextlib.contextmanager
def _short_gil_turns() -> Iterator[None]:
    """While sender threads build requests (Python code, holding the GIL), the main thread gives the GIL up at
    every SQLite step and may wait up to the switch interval (5 ms by default) to get it back; GIL_TURN keeps
    those waits short."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(min(before, GIL_TURN))
    try:
        yield
    finally:
        sys.setswitchinterval(before)


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
    """One batch handed to the backend on a sender thread; `landed(flight)` is called with it once the answer
    or error is in, and `result()` returns or raises it."""

    def __init__(
        self, send: Callable[[], BatchResult], batch_id: str, rows: list[PendingRow], landed: Callable[[_Flight], None]
    ):
        self.batch_id = batch_id
        self.rows = rows
        self._send = send
        self._landed = landed
        self._result: BatchResult | None = None
        self._error: BaseException | None = None

    def run(self) -> None:
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


class _Senders:
    """`width` long-lived threads that run the flights handed to them, one at a time each; the window never
    has more than `width` out, so a flight starts at once.

    Daemon threads, so an interrupted run (Ctrl-C lands in the main thread, which marks the batch unknown)
    does not wait at exit for a request that may still be out."""

    def __init__(self, width: int):
        self._width = width
        self._queue: queue.SimpleQueue[_Flight | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []

    def start(self, flight: _Flight) -> None:
        if len(self._threads) < self._width:  # started as needed: a run with one batch starts one thread
            thread = threading.Thread(target=self._serve, name=f"digest-send-{len(self._threads) + 1}", daemon=True)
            thread.start()
            self._threads.append(thread)
        self._queue.put(flight)

    def _serve(self) -> None:
        while (flight := self._queue.get()) is not None:
            flight.run()

    def stop(self, wait: bool) -> None:
        """End the threads once they are idle; `wait`: until they have ended (nothing is out), so the process
        is back to one thread (parallel.py forks only then)."""
        for _ in self._threads:
            self._queue.put(None)
        if wait:
            for thread in self._threads:
                thread.join()
        self._threads = []
