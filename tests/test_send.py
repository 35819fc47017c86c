"""Send loop: recipients -> ledger -> batches -> backend -> ledger, re-runs, test sends, dry runs, outcomes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from _factories import send_edition

from digest.deliver.base import BatchResult, Personal
from digest.errors import BatchOutcomeUnknown, DeliveryError, LedgerError
from digest.ledger import Ledger
from digest.models import Build, Recipient
from digest.recipients import read_recipients
from digest.send import REPORT_CAP, SendReport, execute_send, prepare_send

ED = "mayors-innovation-2020-01"
BUILD = Path("build")


def make_build(folder: Path, content_hash: str = "sha256:" + "1" * 64, subject: str = "January news") -> Build:
    return Build(
        folder=folder,
        edition=ED,
        newsletter="mayors-innovation",
        period="2020-01",
        content_hash=content_hash,
        subject=subject,
        preheader="",
        html="<p>Hello %%name%%</p>",
        text="Hello %%name:text%%",
        sender="News <news@example.org>",
        reply_to="",
        manifest={},
    )


def personalize(r: Recipient) -> Personal:
    return Personal(r, {"name": r.name, "email": r.email, "unsubscribe_url": "u", "view_url": "v"})


@dataclass
class ScriptedBackend:
    """A backend in memory: delivers (records) every batch unless the script says otherwise for that call.

    Script values per send_batch call number (1-based): "unknown" (raise BatchOutcomeUnknown after delivering),
    "lost" (raise BatchOutcomeUnknown without delivering), "refuse" (raise DeliveryError, nothing delivered),
    "fail-first" (the first recipient of the batch fails), "interrupt" (KeyboardInterrupt after delivering).
    """

    batch_size: int = 3
    concurrency: int = 1
    script: dict[int, str] = field(default_factory=dict)
    name: str = "scripted"
    delivered: list[str] = field(default_factory=list)
    calls: int = 0
    test_flags: list[bool] = field(default_factory=list)
    opened: int = 0
    closed: int = 0

    def open(self) -> None:
        self.opened += 1

    def close(self) -> None:
        self.closed += 1

    def send_batch(self, build: Build, batch: list[Personal], batch_id: str, test: bool = False) -> BatchResult:
        self.calls += 1
        self.test_flags.append(test)
        action = self.script.get(self.calls, "ok")
        emails = [p.recipient.email for p in batch]
        if action == "refuse":
            raise DeliveryError("scripted: 401 bad key; set SENDGRID_API_KEY")
        if action == "lost":
            raise BatchOutcomeUnknown("scripted: connection reset before the request was written")
        if action == "fail-first":
            self.delivered += emails[1:]
            return BatchResult(sent=emails[1:], failed=[(emails[0], "550 mailbox unavailable")], provider_id=batch_id)
        self.delivered += emails
        if action == "unknown":
            raise BatchOutcomeUnknown("scripted: read timed out after the request was sent")
        if action == "interrupt":
            raise KeyboardInterrupt
        return BatchResult(sent=emails, provider_id=f"msg-{batch_id}")


def people(n: int, start: int = 0) -> list[Recipient]:
    return [Recipient(f"user{i}@example.org", f"User {i}", line=i + 2) for i in range(start, start + n)]


@pytest.fixture
def ledger_path(store_location: Path | str) -> Path | str:
    """The ledger's location: a SQLite file, then a PostgreSQL database (conftest.store_location)."""
    return store_location


def run(
    ledger_path: Path | str, backend: ScriptedBackend, recipients: list[Recipient] | None, **options: object
) -> SendReport:
    """One locked real send, as the CLI does it."""
    with Ledger.open_store(ledger_path) as ledger, ledger.newsletter_lock("mayors-innovation"):
        return send_edition(make_build(BUILD), backend, recipients, ledger=ledger, personalize=personalize, **options)  # type: ignore[arg-type]


def counts(ledger_path: Path | str) -> dict[str, int]:
    with Ledger.open_store(ledger_path) as ledger:
        return ledger.counts(ED)


def test_send_everyone_once_in_batches(ledger_path: Path) -> None:
    """Every recipient is sent once, in list order, in batches of the backend's size; exit code 0."""
    backend = ScriptedBackend()
    report = run(ledger_path, backend, people(7))
    assert backend.delivered == [f"user{i}@example.org" for i in range(7)]
    assert (report.sent, report.failed, report.unknown, report.exit_code) == (7, 0, 0, 0)
    assert [b.size for b in report.batches] == [3, 3, 1] and report.batches[0].provider_id.startswith("msg-r")
    assert counts(ledger_path)["sent"] == 7 and backend.opened == backend.closed == 1
    assert report.message.startswith(f"Sent {ED} to 7 recipients via scripted")


def test_rerun_sends_only_to_the_not_yet_sent(ledger_path: Path) -> None:
    """A re-run with a longer list sends only to the new people; the same list again has nothing to do."""
    run(ledger_path, ScriptedBackend(), people(4))
    backend = ScriptedBackend()
    report = run(ledger_path, backend, people(6))
    assert backend.delivered == ["user4@example.org", "user5@example.org"]
    assert (report.sent, report.already_sent, report.added) == (2, 4, 2)
    again = ScriptedBackend()
    report = run(ledger_path, again, people(6))
    assert again.calls == 0 and report.exit_code == 0
    assert report.message == f"{ED}: already sent to 6; nothing to do."


def test_people_no_longer_on_the_list_are_not_sent(ledger_path: Path) -> None:
    """Someone pending from an interrupted run who left the list (or unsubscribed) is not sent to."""
    with pytest.raises(DeliveryError):
        run(ledger_path, ScriptedBackend(script={2: "refuse"}), people(6))
    backend = ScriptedBackend()
    report = run(ledger_path, backend, people(4))  # user4 and user5 left the list meanwhile
    assert backend.delivered == ["user3@example.org"] and report.sent == 1
    assert counts(ledger_path)["pending"] == 2


def test_test_send_and_dry_run_leave_states_alone(ledger_path: Path) -> None:
    """--to test sends and --dry-run never change a recipient's state; test sends go with test=True."""
    run(ledger_path, ScriptedBackend(), people(2))
    before = counts(ledger_path)
    backend = ScriptedBackend()
    report = send_edition(
        make_build(BUILD),
        backend,
        [Recipient("me@example.org")],
        ledger=None,
        personalize=personalize,
        test=True,
    )
    assert backend.delivered == ["me@example.org"] and backend.test_flags == [True]
    assert report.test and report.sent == 1 and report.message.startswith("Test send")
    with Ledger.open_store(ledger_path) as ledger:
        dry = ScriptedBackend()
        report = send_edition(make_build(BUILD), dry, people(5), ledger=ledger, personalize=personalize, dry_run=True)
    assert dry.calls == 0 and dry.opened == 0
    assert (report.would_send, report.already_sent, report.sent) == (3, 2, 0)
    assert "Dry run" in report.message and "nothing sent" in report.message
    assert counts(ledger_path) == before


def test_dry_run_without_a_ledger_counts_everyone(tmp_path: Path) -> None:
    """A dry run before the first send (no ledger yet) counts every valid row as to be sent."""
    report = send_edition(
        make_build(tmp_path), ScriptedBackend(), people(4), ledger=None, personalize=personalize, dry_run=True
    )
    assert report.would_send == 4 and report.exit_code == 0


def test_delivery_error_releases_the_batch_and_stops(ledger_path: Path) -> None:
    """DeliveryError: that batch goes back to pending, the run stops with the count so far, a re-run finishes."""
    backend = ScriptedBackend(script={2: "refuse"})
    with pytest.raises(DeliveryError, match=r"401 bad key.*this run sent 3 before it stopped"):
        run(ledger_path, backend, people(8))
    assert counts(ledger_path) == {"pending": 5, "in_flight": 0, "sent": 3, "failed": 0, "unknown": 0}
    assert backend.closed == 1
    rest = ScriptedBackend()
    run(ledger_path, rest, people(8))
    assert backend.delivered + rest.delivered == [f"user{i}@example.org" for i in range(8)]


def test_unknown_batch_is_marked_and_the_run_goes_on(ledger_path: Path) -> None:
    """BatchOutcomeUnknown marks that batch unknown, later batches still go; the report exits 4."""
    backend = ScriptedBackend(script={1: "unknown"})
    report = run(ledger_path, backend, people(7))
    assert (report.sent, report.unknown, report.exit_code) == (4, 3, 4)
    assert "3 unknown (decide with --mark-unknown-sent or --resend-unknown" in report.message
    assert counts(ledger_path)["unknown"] == 3


def test_unknown_is_held_while_the_next_run_sends_everyone_else(ledger_path: Path) -> None:
    """A run finding unknown rows holds them (not sent, not counted sent), sends the rest, exits 4 naming them."""
    run(ledger_path, ScriptedBackend(script={2: "unknown"}), people(7))
    backend = ScriptedBackend()
    report = run(ledger_path, backend, people(9))
    text = report.message
    assert backend.delivered == ["user7@example.org", "user8@example.org"]
    assert (report.sent, report.unknown_held, report.exit_code) == (2, 3, 4)
    assert counts(ledger_path)["unknown"] == 3
    assert "3 recipients in 1 batch held with an unknown outcome" in text and "r1-b00002" in text
    for words in ("--mark-unknown-sent", "--resend-unknown", "custom_args", "digest reconcile", f"digest status {ED}"):
        assert words in text


def test_mark_unknown_sent_and_resend_unknown(ledger_path: Path) -> None:
    """--mark-unknown-sent marks them sent without sending; --resend-unknown sends them again."""
    first = ScriptedBackend(script={1: "unknown"})
    run(ledger_path, first, people(6))
    marked = ScriptedBackend()
    report = run(ledger_path, marked, people(6), unknown="mark-sent")
    assert marked.calls == 0 and report.unknown_resolved == 3 and counts(ledger_path)["sent"] == 6
    lost = ScriptedBackend(script={1: "lost"})
    run(ledger_path, lost, people(9))
    resent = ScriptedBackend()
    report = run(ledger_path, resent, people(9), unknown="resend")
    assert resent.delivered == ["user6@example.org", "user7@example.org", "user8@example.org"]
    assert counts(ledger_path)["sent"] == 9 and report.exit_code == 0


def test_several_unknown_batches_in_a_row_stop_the_run(ledger_path: Path) -> None:
    """After 3 batches in a row without an answer the run stops; the rest stay pending (exit 4)."""
    backend = ScriptedBackend(batch_size=1, script={1: "lost", 2: "lost", 3: "lost"})
    report = run(ledger_path, backend, people(6))
    assert backend.calls == 3 and report.pending_left == 3 and report.exit_code == 4
    assert "stopped early, 3 not sent yet" in report.message


def test_crash_leftovers_become_unknown(ledger_path: Path) -> None:
    """in_flight rows left by a dead run become unknown on the next run, which holds them and sends the rest."""
    with Ledger.open_store(ledger_path) as ledger:
        ledger.begin_edition(ED, "mayors-innovation", "2020-01", make_build(BUILD).content_hash, "s")
        ledger.add_recipients(ED, people(4))
        rows = ledger.next_batch(ED, 2)
        ledger.mark_in_flight(ED, [r.email_norm for r in rows], "dead-b1", "sendgrid", "h")
    report = run(ledger_path, ScriptedBackend(), people(4))
    assert "2 recipients in 1 batch held" in report.message and report.exit_code == 4
    assert counts(ledger_path)["unknown"] == 2 and counts(ledger_path)["sent"] == 2


def test_interrupt_inside_the_backend_marks_the_batch_unknown(ledger_path: Path) -> None:
    """Ctrl-C during a batch leaves it unknown (it may have gone), never pending."""
    with pytest.raises(KeyboardInterrupt):
        run(ledger_path, ScriptedBackend(script={2: "interrupt"}), people(7))
    assert counts(ledger_path) == {"pending": 1, "in_flight": 0, "sent": 3, "failed": 0, "unknown": 3}


def test_failures_are_reported_and_retry_sends_them(ledger_path: Path) -> None:
    """Failed recipients are in the report (exit 4); retry_failed with no list sends only them."""
    report = run(ledger_path, ScriptedBackend(script={1: "fail-first"}), people(5))
    assert report.failed == 1 and report.exit_code == 4
    assert [(f.email, f.reason) for f in report.failures] == [("user0@example.org", "550 mailbox unavailable")]
    retry = ScriptedBackend()
    report = run(ledger_path, retry, None, retry_failed=True)
    assert retry.delivered == ["user0@example.org"] and report.exit_code == 0
    assert counts(ledger_path)["sent"] == 5


def test_failures_listed_in_a_report_are_capped_but_all_counted(ledger_path: Path) -> None:
    """Past REPORT_CAP failed recipients the report keeps counting but lists no more."""
    backend = ScriptedBackend(batch_size=1, script=dict.fromkeys(range(1, REPORT_CAP + 6), "fail-first"))
    report = run(ledger_path, backend, people(REPORT_CAP + 5))
    assert report.failed == REPORT_CAP + 5 and len(report.failures) == REPORT_CAP
    assert report.failures[0].email == "user0@example.org"


def test_changed_content_is_refused_unless_allowed(ledger_path: Path) -> None:
    """New content for a partly sent edition is refused; --allow-changed sends it to the rest only."""
    with pytest.raises(DeliveryError):
        run(ledger_path, ScriptedBackend(script={2: "refuse"}), people(5))
    changed = make_build(BUILD, content_hash="sha256:" + "2" * 64)
    backend = ScriptedBackend()
    with Ledger.open_store(ledger_path) as ledger, ledger.newsletter_lock("mayors-innovation"):
        with pytest.raises(LedgerError, match="already sent to 3 recipients with different content"):
            send_edition(changed, backend, people(5), ledger=ledger, personalize=personalize)
        assert backend.calls == 0
        report = send_edition(changed, backend, people(5), ledger=ledger, personalize=personalize, allow_changed=True)
        assert backend.delivered == ["user3@example.org", "user4@example.org"] and report.sent == 2
        assert [b.content_hash[-1] for b in ledger.batches(ED) if b.state == "done"] == ["1", "2"]


def test_real_send_needs_the_lock(ledger_path: Path) -> None:
    """prepare_send refuses a real send when the newsletter lock is not held."""
    with Ledger.open_store(ledger_path) as ledger, pytest.raises(LedgerError, match="lock .* is not held"):
        prepare_send(make_build(BUILD), ScriptedBackend(), people(1), ledger=ledger)


def test_declined_plan_changes_no_state(ledger_path: Path) -> None:
    """prepare_send only counts: declining before execute_send sends nothing and resolves no unknowns."""
    run(ledger_path, ScriptedBackend(script={1: "unknown"}), people(4))
    backend = ScriptedBackend()
    with Ledger.open_store(ledger_path) as ledger, ledger.newsletter_lock("mayors-innovation"):
        plan = prepare_send(make_build(BUILD), backend, people(6), ledger=ledger, unknown="resend")
        assert (plan.to_send, plan.already_sent, plan.unknown) == (5, 1, 3)
        assert plan.summary() == f"Send {ED} to 5 recipients via scripted (1 already sent)."
        plan.cancel()
        assert ledger.runs(ED)[-1].outcome == "declined"
    assert backend.calls == 0 and counts(ledger_path)["unknown"] == 3


def test_row_problems_are_counted_by_kind(ledger_path: Path, tmp_path: Path) -> None:
    """Invalid, suppressed and duplicate rows from recipients.py are counted apart and listed with lines."""
    csv = tmp_path / "members.csv"
    csv.write_text(
        "email,name\nann@example.org,Ann\nnot-an-address,Bad\nANN@example.org,Dup\n"
        "gone@example.org,Gone\nbob@example.org,Bob\n",
        encoding="utf-8",
    )
    rows = read_recipients(csv, suppressed=frozenset({"gone@example.org"}))
    backend = ScriptedBackend()
    report = run(ledger_path, backend, rows)  # type: ignore[arg-type]
    assert backend.delivered == ["ann@example.org", "bob@example.org"]
    assert (report.skipped_invalid, report.skipped_suppressed, report.duplicates) == (1, 1, 1)
    assert [(p.line, p.kind) for p in report.problems] == [(3, "invalid"), (4, "duplicate"), (5, "suppressed")]
    assert "; 3 list rows skipped (1 invalid, 1 suppressed, 1 duplicate)." in report.message


def test_report_is_json_serialisable(ledger_path: Path) -> None:
    """to_dict() dumps to JSON with counts, batches, flags, exit code and message."""
    report = run(ledger_path, ScriptedBackend(script={1: "fail-first"}), people(4))
    data = json.loads(json.dumps(report.to_dict()))
    assert data["sent"] == 3 and data["failed"] == 1 and data["exit_code"] == 4
    assert data["dry_run"] is False and data["test"] is False and len(data["batches"]) == 2
    assert data["totals"]["sent"] == 3 and data["edition"] == ED


def test_progress_reports_each_batch(ledger_path: Path) -> None:
    """The progress callback gets the size of each finished batch."""
    seen: list[int] = []
    with Ledger.open_store(ledger_path) as ledger, ledger.newsletter_lock("mayors-innovation"):
        plan = prepare_send(make_build(BUILD), ScriptedBackend(), people(7), ledger=ledger)
        execute_send(plan, personalize=personalize, progress=seen.append)
    assert seen == [3, 3, 1]


def lines(n: int) -> Iterator[Recipient]:
    for i in range(n):
        yield Recipient(f"m{i:06d}@example.org", "")


def test_twenty_thousand_in_batches_of_a_thousand(ledger_path: Path) -> None:
    """20,000 recipients stream through the ledger in 20 batches of 1,000, each sent once.

    (Speed is measured by benchmarks/sendgrid_100k.py, not here.)"""
    backend = ScriptedBackend(batch_size=1000)
    with Ledger.open_store(ledger_path) as ledger, ledger.newsletter_lock("mayors-innovation"):
        report = send_edition(
            make_build(BUILD),
            backend,
            lines(20_000),  # type: ignore[arg-type]
            ledger=ledger,
            personalize=personalize,
        )
    assert report.sent == 20_000 and report.batches_total == 20


def test_outbox_backend_gets_each_recipient_once(ledger_path: Path, tmp_path: Path) -> None:
    """With the real outbox backend, a run and a re-run with a longer list write one file per recipient."""
    import mailbox

    from digest.deliver.outbox import OutboxBackend

    backend = OutboxBackend(tmp_path / "outbox", batch_size=2)
    for n in (3, 5, 5):
        with Ledger.open_store(ledger_path) as ledger, ledger.newsletter_lock("mayors-innovation"):
            report = send_edition(make_build(tmp_path), backend, people(n), ledger=ledger, personalize=personalize)
    assert report.message == f"{ED}: already sent to 5; nothing to do."
    box = mailbox.Maildir(backend.maildir(make_build(tmp_path)), create=False)
    addressed = sorted(str(message["To"]) for message in box)
    assert len(addressed) == 5 and all(f"user{i}@example.org" in addressed[i] for i in range(5))
    assert counts(ledger_path)["sent"] == 5


def test_dry_run_refuses_where_the_real_run_would(ledger_path: Path) -> None:
    """A dry run refuses (changed content) and holds (unknowns) where the real run would, writing nothing."""
    run(ledger_path, ScriptedBackend(script={2: "unknown"}), people(6))
    before = counts(ledger_path)
    with Ledger.open_store(ledger_path) as ledger:
        held = send_edition(
            make_build(BUILD),
            ScriptedBackend(),
            people(6),
            ledger=ledger,
            personalize=personalize,
            dry_run=True,
        )
        assert "3 recipients in 1 batch held" in held.message and held.would_send == 0
        changed = make_build(BUILD, content_hash="sha256:" + "9" * 64)
        with pytest.raises(LedgerError, match="already sent to 6 recipients with different content"):
            send_edition(
                changed,
                ScriptedBackend(),
                people(6),
                ledger=ledger,
                personalize=personalize,
                dry_run=True,
                unknown="resend",
            )
        report = send_edition(
            make_build(BUILD),
            ScriptedBackend(),
            people(8),
            ledger=ledger,
            personalize=personalize,
            dry_run=True,
            unknown="resend",
        )
    assert (report.would_send, report.already_sent, report.added) == (5, 3, 2)
    assert counts(ledger_path) == before


def test_at_most_one_batch_is_ever_handed_over_and_unanswered(ledger_path: Path) -> None:
    """While a batch is with the backend, it is the only batch row in flight (the next one is at most
    reserved: rows without a batch row), and every recipient ends with exactly one attempt."""
    seen: list[list[str]] = []

    class Watching(ScriptedBackend):
        def send_batch(self, build: Build, batch: list[Personal], batch_id: str, test: bool = False) -> BatchResult:
            with Ledger.open_store(ledger_path) as other:  # another connection, as another process would see it
                seen.append([b.id for b in other.batches(ED, "in_flight")])
            return super().send_batch(build, batch, batch_id, test)

    report = run(ledger_path, Watching(), people(10))
    assert report.sent == 10 and len(seen) == 4
    assert seen == [[f"r1-b{i:05d}"] for i in range(1, 5)]
    with Ledger.open_store(ledger_path) as ledger:
        attempts = {r[0] for r in ledger._db.conn.execute("SELECT attempts FROM recipients")}
        assert attempts == {1}
        assert [b.size for b in ledger.batches(ED)] == [3, 3, 3, 1]


def test_requests_in_flight_are_bounded_by_the_backend_concurrency(ledger_path: Path | str) -> None:
    """With concurrency 3, three batches are out at once (a barrier proves it), never more are handed over
    without an answer, and every recipient is sent once with one attempt."""
    import threading

    barrier = threading.Barrier(3, timeout=10)
    lock = threading.Lock()
    in_flight_seen: list[int] = []

    class Wide(ScriptedBackend):
        def send_batch(self, build: Build, batch: list[Personal], batch_id: str, test: bool = False) -> BatchResult:
            with Ledger.open_store(ledger_path) as other:  # another connection, as another process would see it
                n = len(other.batches(ED, "in_flight"))
            with lock:
                in_flight_seen.append(n)
                self.delivered += [p.recipient.email for p in batch]
            if len(in_flight_seen) <= 3:
                barrier.wait()  # the first three meet here: they are out together
            return BatchResult(sent=[p.recipient.email for p in batch], provider_id=batch_id)

    backend = Wide(batch_size=2, concurrency=3)
    report = run(ledger_path, backend, people(15))
    assert report.sent == 15 and report.exit_code == 0 and max(in_flight_seen) <= 3
    assert sorted(backend.delivered) == sorted(f"user{i}@example.org" for i in range(15))
    with Ledger.open_store(ledger_path) as ledger:
        assert {r[0] for r in ledger._db.read("SELECT attempts FROM recipients").fetchall()} == {1}
        assert sorted(b.size for b in ledger.batches(ED)) == [1] + [2] * 7


def test_batches_go_out_on_concurrency_threads_that_end_with_the_run(ledger_path: Path | str) -> None:
    """Ten batches at concurrency 2 go out on (at most) two sender threads, and none is left when the run ends."""
    import threading

    names: set[str] = set()

    class Named(ScriptedBackend):
        def send_batch(self, build: Build, batch: list[Personal], batch_id: str, test: bool = False) -> BatchResult:
            names.add(threading.current_thread().name)
            return super().send_batch(build, batch, batch_id, test)

    before = threading.active_count()
    report = run(ledger_path, Named(batch_size=2, concurrency=2), people(20))
    assert report.sent == 20 and names <= {"digest-send-1", "digest-send-2"} and threading.active_count() == before


def test_a_refusal_with_requests_in_flight_waits_for_their_answers(ledger_path: Path) -> None:
    """A DeliveryError on one batch stops new batches; the batches still out are recorded before it is raised."""
    import threading

    refused = threading.Event()

    class Refusing(ScriptedBackend):
        def send_batch(self, build: Build, batch: list[Personal], batch_id: str, test: bool = False) -> BatchResult:
            if batch_id.endswith("b00001"):
                refused.set()
                raise DeliveryError("scripted: 401 bad key; set SENDGRID_API_KEY")
            refused.wait(5)  # answered after the refusal came in
            return BatchResult(sent=[p.recipient.email for p in batch], provider_id=batch_id)

    with pytest.raises(DeliveryError, match="401 bad key.*this run sent 4 before it stopped"):
        run(ledger_path, Refusing(batch_size=2, concurrency=3), people(10))
    assert counts(ledger_path) == {"pending": 6, "in_flight": 0, "sent": 4, "failed": 0, "unknown": 0}


@pytest.mark.parametrize("width", [1, 3])
def test_a_batch_that_cannot_be_personalised_goes_back_to_pending_and_the_run_raises(
    ledger_path: Path | str, width: int
) -> None:
    """A batch is personalised on its sender thread when none was made ahead: an error there releases it
    (nothing was handed over), the run raises the error itself, and the next run sends each person once."""

    def broken(r: Recipient) -> Personal:
        if r.email == "user4@example.org":
            raise ValueError("the template needs a field user4 lacks")
        return personalize(r)

    backend = ScriptedBackend(batch_size=2, concurrency=width)
    with Ledger.open_store(ledger_path) as ledger, ledger.newsletter_lock("mayors-innovation"):
        with pytest.raises(ValueError, match="user4 lacks"):
            send_edition(make_build(BUILD), backend, people(10), ledger=ledger, personalize=broken)
        states = ledger.states_of(ED, ["user4@example.org", "user5@example.org"])
        released = ledger.batches(ED, "released")
    assert "user4@example.org" not in backend.delivered and set(states.values()) == {"pending"}
    assert [b.error for b in released] == ["personalisation failed; nothing was handed to the backend"]
    # Batches still out when the error was raised are unknown (held); everyone else goes, nobody twice.
    again = ScriptedBackend(batch_size=2, concurrency=width)
    run(ledger_path, again, people(10))
    delivered = backend.delivered + again.delivered
    assert sorted(delivered) == sorted(set(delivered)) == [f"user{i}@example.org" for i in range(10)]
    after = counts(ledger_path)
    assert after["sent"] + after["unknown"] == 10 and "user4@example.org" in again.delivered
