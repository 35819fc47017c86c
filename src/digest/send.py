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

The parts: `sendplan.py` (prepare_send, SendPlan), `sendloop.py` (the exactly-once batch loop),
`sendreport.py` (SendReport, what a run did).
"""

from __future__ import annotations

import time

from .errors import BatchOutcomeUnknown
from .sendloop import MAX_UNKNOWN_IN_A_ROW, Personalize, Progress, send_ledgered
from .sendplan import SendPlan, Tally, UnknownPolicy, prepare_send
from .sendreport import REPORT_CAP, BatchOutcome, SendReport, add_batch, held_text, tally_result

__all__ = [
    "MAX_UNKNOWN_IN_A_ROW",
    "REPORT_CAP",
    "Personalize",
    "Progress",
    "SendPlan",
    "SendReport",
    "Tally",
    "UnknownPolicy",
    "execute_send",
    "prepare_send",
]


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
        send_ledgered(plan, report, personalize, progress, max_unknown_in_a_row)
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
                add_batch(report, BatchOutcome(batch_id, len(chunk), unknown=len(chunk), error=str(exc)))
                continue
            tally_result(report, batch_id, len(chunk), result)
            if progress:
                progress(len(chunk))
    finally:
        backend.close()
