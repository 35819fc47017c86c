"""Faults: a provider that errs, rate-limits and loses answers; re-run until done; nobody doubled, nobody lost.

Invariants asserted after every run (what "exactly once" can honestly promise):
- no address arrives twice at the provider unless the test itself chose to resend a batch that had arrived;
- every address the provider never received is reported pending, failed or unknown by digest, never sent.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from _factories import send_edition
from _smtp_server import Sink, running

from digest.config import SendGridSettings, SmtpSettings
from digest.deliver.base import Backend, Personal
from digest.deliver.sendgrid import SendGridBackend
from digest.deliver.smtp import SmtpBackend
from digest.errors import DeliveryError
from digest.ledger import Ledger
from digest.lock import newsletter_lock
from digest.models import Build, Recipient
from digest.send import SendReport
from digest.testing.sendgrid_emulator import SendGridEmulator

ED = "mayors-innovation-2020-01"


def make_build(folder: Path) -> Build:
    return Build(
        folder=folder,
        edition=ED,
        newsletter="mayors-innovation",
        period="2020-01",
        content_hash="sha256:" + "3" * 64,
        subject="January news",
        preheader="",
        html="<p>Hello %%name%%</p><a href='%%unsubscribe_url%%'>unsubscribe</a>",
        text="Hello %%name:text%%\n%%unsubscribe_url:text%%",
        sender="News <news@example.org>",
        reply_to="",
        manifest={},
    )


def personalize(r: Recipient) -> Personal:
    url = f"https://example.org/unsubscribe?token=t-{r.email}"
    return Personal(
        r,
        {"name": r.name, "email": r.email, "unsubscribe_url": url, "view_url": "https://example.org/v"},
        {"List-Unsubscribe": f"<{url}>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"},
    )


def people(n: int) -> Iterator[Recipient]:
    for i in range(n):
        yield Recipient(f"member{i:05d}@example.org", f"Member {i}", line=i + 2)


@pytest.fixture
def emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[SendGridEmulator]:
    monkeypatch.setenv("SENDGRID_API_KEY", "SG.test-key")
    with SendGridEmulator() as emu:
        yield emu


def sendgrid(emu: SendGridEmulator, batch_size: int, max_retries: int) -> SendGridBackend:
    # Waits are shortened (429 resets, backoff) so the test runs in seconds; what is retried is unchanged.
    return SendGridBackend(
        SendGridSettings(batch_size=batch_size, max_retries=max_retries, timeout=5.0),
        host=emu.url,
        sleep=lambda s: time.sleep(min(s, 0.01)),
        rng=random.Random(3),
    )


Arrivals = Callable[[], Counter[str]]


def arrivals_at(emu: SendGridEmulator) -> Arrivals:
    return lambda: Counter(str(m["email"]).lower() for m in emu.messages(include_content=False))


def arrivals_in(sink: Sink) -> Arrivals:
    return lambda: Counter(r.lower() for r in sink.recipients())


def states(ledger_path: Path) -> dict[str, str]:
    with Ledger.open(ledger_path) as ledger:
        rows = ledger._db.conn.execute("SELECT email_norm, state FROM recipient_rows WHERE edition = ?", (ED,))
        return dict(rows.fetchall())


def assert_invariants(arrivals: Arrivals, ledger_path: Path, resent_arrived: set[str]) -> None:
    got = arrivals()
    doubled = {e for e, n in got.items() if n > 1}
    assert doubled <= resent_arrived, f"doubled without a resend decision: {sorted(doubled - resent_arrived)[:5]}"
    wrongly_sent = [e for e, s in states(ledger_path).items() if s == "sent" and not got[e]]
    assert not wrongly_sent, f"marked sent, never arrived: {wrongly_sent[:5]}"


def run_once(
    ledger_path: Path, backend: Backend, n: int | None, unknown: str = "stop", retry_failed: bool = False
) -> SendReport:
    with newsletter_lock(ledger_path, "mayors-innovation"), Ledger.open(ledger_path) as ledger:
        return send_edition(
            make_build(ledger_path.parent),
            backend,
            None if n is None else people(n),
            ledger=ledger,
            personalize=personalize,
            unknown=unknown,
            retry_failed=retry_failed,
        )  # type: ignore[arg-type]


def _decide_by_batch(ledger_path: Path, got: Counter[str]) -> None:
    """Mark sent the unknown batches whose recipients arrived; resend the others."""
    with Ledger.open(ledger_path) as ledger:
        by_batch: dict[str, list[str]] = {}
        for email, batch in ledger.recipients_in(ED, "unknown"):
            by_batch.setdefault(str(batch), []).append(email)
        arrived = [b for b, emails in by_batch.items() if all(got[e.lower()] for e in emails)]
        ledger.resolve_unknown(ED, "mark-sent", arrived)
        ledger.resolve_unknown(ED, "resend", [b for b in by_batch if b not in arrived])


def run_until_done(
    arrivals: Arrivals,
    ledger_path: Path,
    backend: Backend,
    n: int,
    resend_arrived: bool = False,
    expect_failed: int = 0,
) -> dict[str, Any]:
    """Re-run like an operator: after DeliveryError just re-run; on unknown outcomes, look the batches up at the
    provider and mark them sent if they arrived, resend them if not (or, with resend_arrived, resend anyway)."""
    figures: dict[str, Any] = {"runs": 0, "stopped": 0, "unknown_batches": 0, "partial": 0, "resent_arrived": set()}
    unknown = "stop"
    for _ in range(60):
        figures["runs"] += 1
        try:
            report = run_once(ledger_path, backend, n, unknown)
        except DeliveryError:
            figures["stopped"] += 1
            unknown = "stop"
            continue
        with Ledger.open(ledger_path) as ledger:
            held = ledger.unknown_batches(ED)
            waiting = [e for e, _ in ledger.recipients_in(ED, "unknown")]
        if held:  # the run held them and sent the rest; the operator decides before the next run
            figures["unknown_batches"] += len(held)
            figures["partial"] += 1
            got = arrivals()
            arrived = [e for e in waiting if got[e]]
            if isinstance(backend, SendGridBackend) and len(held) == 1:
                assert len(arrived) in (0, len(waiting)), "one SendGrid request arrives whole or not at all"
            if arrived and not resend_arrived:
                unknown = "mark-sent" if len(arrived) == len(waiting) else "stop"
                if unknown == "stop":  # some batches arrived, some did not: decide batch by batch
                    _decide_by_batch(ledger_path, got)
            else:
                unknown = "resend"
                figures["resent_arrived"] |= set(arrived)
        else:
            unknown = "stop"
            done = report.totals.get("sent", 0) + report.totals.get("failed", 0) == n
            if done and report.totals.get("failed", 0) == expect_failed:
                assert_invariants(arrivals, ledger_path, figures["resent_arrived"])
                figures["failed"] = report.totals.get("failed", 0)
                return figures
            figures["partial"] += 1
        assert_invariants(arrivals, ledger_path, figures["resent_arrived"])
    raise AssertionError(f"not done after {figures['runs']} runs: {figures}")


def test_sendgrid_errors_rate_limits_and_a_lost_answer(emulator: SendGridEmulator, tmp_path: Path) -> None:
    """429s with reset, ~10% 500s and one answer lost after acceptance: all arrive exactly once in the end."""
    ledger_path = tmp_path / "ledger.sqlite3"
    emulator.add_fault(429, count=2, reset_in=1)
    emulator.add_fault(drop=True)  # accepted and stored, then the connection closes: the lost 202
    emulator.add_fault(500, rate=0.1, seed=11)
    backend = sendgrid(emulator, batch_size=100, max_retries=5)
    figures = run_until_done(arrivals_at(emulator), ledger_path, backend, 2000)
    got = arrivals_at(emulator)()
    assert len(got) == 2000 and set(got.values()) == {1}
    assert figures["unknown_batches"] == 1 and figures["partial"] >= 1  # the dropped batch, reported then decided
    stats = emulator.stats()
    assert stats["by_status"].get("429") == 2 and stats["dropped"] == 1 and stats["by_status"].get("500", 0) >= 1


def test_sendgrid_5xx_without_retries_stops_and_resumes(emulator: SendGridEmulator, tmp_path: Path) -> None:
    """With no retries each 500 stops the run (its batch back to pending); re-runs finish without doubles."""
    ledger_path = tmp_path / "ledger.sqlite3"
    emulator.add_fault(500, rate=0.15, seed=5)
    backend = sendgrid(emulator, batch_size=50, max_retries=0)
    figures = run_until_done(arrivals_at(emulator), ledger_path, backend, 1000)
    assert figures["stopped"] >= 1
    got = arrivals_at(emulator)()
    assert len(got) == 1000 and set(got.values()) == {1}


def test_unknown_batch_is_exactly_the_batch_at_risk(emulator: SendGridEmulator, tmp_path: Path) -> None:
    """Resending a lost-answer batch that had arrived doubles exactly that batch and nobody else: why digest asks."""
    ledger_path = tmp_path / "ledger.sqlite3"
    emulator.add_fault(500)  # a refused first try (retried), then:
    emulator.add_fault(drop=True)
    backend = sendgrid(emulator, batch_size=100, max_retries=5)
    first = run_once(ledger_path, backend, 500)
    assert (first.sent, first.unknown, first.exit_code) == (400, 100, 4)
    unknown_ids = [b.id for b in first.batches if b.unknown]
    assert len(unknown_ids) == 1
    at_risk = {f"member{i:05d}@example.org" for i in range(500)} - {
        e for e, s in states(ledger_path).items() if s == "sent"
    }
    figures = run_until_done(arrivals_at(emulator), ledger_path, backend, 500, resend_arrived=True)
    doubled = {e for e, n in arrivals_at(emulator)().items() if n > 1}
    assert doubled == at_risk and len(doubled) == 100 and figures["resent_arrived"] == at_risk
    by_batch = emulator.messages(custom_args={"batch": unknown_ids[0]}, include_content=False)
    assert {str(m["email"]) for m in by_batch} == at_risk  # the Activity-feed lookup the error message suggests


def test_smtp_4xx_5xx_and_dropped_connections(tmp_path: Path) -> None:
    """aiosmtpd that greylists, refuses, drops a connection before MAIL and loses one answer after DATA:
    nobody gets two, the refused are failed (not sent), the lost answer is asked about, retry finishes."""
    ledger_path = tmp_path / "ledger.sqlite3"
    n = 300
    sink = Sink(
        temporary={"member00007@example.org": 1, "member00100@example.org": 9},  # one retry ok; one gives up
        permanent={"member00042@example.org": "550 5.1.1 no such user", "member00250@example.org": "554 rejected"},
        drop_every=70,  # each connection dies at MAIL after 70 messages: reconnect, nothing lost or doubled
        drop_after_data={120},  # stored, then no answer: this one recipient's fate is unknown
    )
    with running(sink) as server:
        backend = SmtpBackend(
            SmtpSettings(host="127.0.0.1", port=server.port, security="none", timeout=5.0),
            batch_size=20,
            retry_delays=(0.0, 0.0),
            sleep=lambda s: None,
            local_hostname="digest.test",
        )
        arrivals = arrivals_in(sink)
        first = run_once(ledger_path, backend, n)
        assert (first.failed, first.unknown, first.exit_code) == (3, 1, 4)
        assert_invariants(arrivals, ledger_path, set())
        figures = run_until_done(arrivals, ledger_path, backend, n, expect_failed=3)
        assert figures["unknown_batches"] == 1
        failed = {e for e, s in states(ledger_path).items() if s == "failed"}
        assert failed == {"member00042@example.org", "member00250@example.org", "member00100@example.org"}
        got = arrivals()
        assert set(got.values()) == {1} and set(got) | failed == {f"member{i:05d}@example.org" for i in range(n)}
        sink.temporary.clear()  # the greylisting ended; digest retry sends to the failed again
        retry = run_once(ledger_path, backend, None, retry_failed=True)
        assert (retry.sent, retry.failed) == (1, 2) and arrivals()["member00100@example.org"] == 1
        assert sink.connections > 4  # the drops forced reconnects
