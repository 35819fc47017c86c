"""What a send did: the report every run ends with (counts, the rows kept, the closing line, the --report JSON)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

from .deliver.base import BatchResult
from .errors import PartialFailure
from .ledger import BatchInfo

REPORT_CAP = 100  # rows of problems / failures kept in a report; the counts are always complete
BATCH_CAP = 1000  # batches listed in a report (SMTP batches are small; 100k of them help nobody)


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


@dataclass
class ProblemRow:
    line: int
    email: str
    reason: str
    kind: str  # invalid | suppressed | duplicate


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
        skip = skipped_text(self.skipped_invalid, self.skipped_suppressed, self.duplicates)
        skip = f"; {skip}" if skip else ""
        held = f" {self.held_note}." if self.unknown_held else ""
        if self.dry_run:
            return (
                f"Dry run: {self.edition} would go to {people(self.would_send)} via {self.backend} "
                f"({self.already_sent:,} already sent){skip}; nothing sent. Drop --dry-run to send.{held}"
            )
        if self.test:
            return f"Test send of {self.edition}: {self.sent:,} sent, {self.failed:,} failed via {self.backend}{skip}."
        if not (self.sent or self.failed or self.unknown or self.pending_left):
            return f"{self.edition}: already sent to {self.already_sent:,}; nothing to do{skip}.{held}"
        parts = [f"Sent {self.edition} to {people(self.sent)} via {self.backend} in {self.duration_s:.1f} s"]
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


def tally_result(report: SendReport, batch_id: str, size: int, result: BatchResult) -> None:
    unknown = result.unknown
    report.sent += len(result.sent)
    report.failed += len(result.failed)
    report.unknown += len(unknown)
    add_failures(report, result.failed)
    add_batch(
        report, BatchOutcome(batch_id, size, len(result.sent), len(result.failed), len(unknown), result.provider_id)
    )


def add_failures(report: SendReport, failed: Iterable[tuple[str, str]]) -> None:
    """Keep the first REPORT_CAP failed addresses with their reasons; report.failed counts them all."""
    for email, reason in failed:
        if len(report.failures) >= REPORT_CAP:
            return
        report.failures.append(FailureRow(email, reason))


def add_batch(report: SendReport, outcome: BatchOutcome) -> None:
    report.batches_total += 1
    if len(report.batches) < BATCH_CAP:
        report.batches.append(outcome)


def people(n: int) -> str:
    return f"{n:,} recipient{'s' if n != 1 else ''}"


def skipped_text(invalid: int, suppressed: int, duplicates: int) -> str:
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
