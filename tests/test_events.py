"""Events: parsing SendGrid's events, storing them once, settling unknown outcomes, and the suppression list."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from _factories import make_settings

from digest.errors import EventsError, SuppressionError
from digest.events import parse_events
from digest.ledger import Ledger
from digest.ledger.events import (
    apply_stored,
    evidence_counts,
    ingest,
    settle_by_events,
    store_events,
    suppressed_addresses,
)
from digest.models import Recipient
from digest.settle import addressees, settle_unknown

ED = "mayors-innovation-2020-01"


def event(kind: str, email: str, batch: str = "r1-b00001", edition: str = ED, **extra: Any) -> dict[str, Any]:
    """One event as SendGrid posts it, with digest's custom_args at the top level."""
    base = {
        "event": kind,
        "email": email,
        "edition": edition,
        "batch": batch,
        "timestamp": 1764489600,
        "sg_event_id": f"{kind}-{email}-{batch}",
        "sg_message_id": f"msg-{batch}.{email}",
    }
    return {**base, **extra}


def unknown_batches(path: Path, sizes: tuple[int, ...] = (3,), backend: str = "sendgrid") -> Ledger:
    """A ledger whose edition has one unknown batch per size (r1-b00001, ...), members user0..N in order."""
    ledger = Ledger.open(path)
    ledger.begin_edition(ED, "mayors-innovation", "2020-01", "sha256:" + "0" * 64, "Subject")
    ledger.add_recipients(ED, [Recipient(f"user{i}@example.org", "") for i in range(sum(sizes))])
    for n, size in enumerate(sizes, 1):
        ledger.claim_batch(ED, size, f"r1-b{n:05d}", backend, "sha256:" + "0" * 64)
        ledger.mark_batch_unknown(f"r1-b{n:05d}", "no answer")
    return ledger


def states(ledger: Ledger) -> dict[str, str]:
    return dict(ledger._db.read("SELECT email_norm, state FROM recipient_rows WHERE edition = ?", (ED,)).fetchall())


# --- parsing ----------------------------------------------------------------------------------------------


def test_parse_array_and_lines_give_the_same_events() -> None:
    """The webhook's JSON array and a one-event-per-line export parse to the same events."""
    items = [event("processed", "Ann@Example.org"), event("bounce", "bob@example.org", type="bounce", reason="550")]
    as_array = parse_events(json.dumps(items).encode())
    as_lines = parse_events("\n".join(json.dumps(i) for i in items) + "\n")
    assert as_array == as_lines
    assert as_array[0].email == "ann@example.org" and as_array[0].batch == "r1-b00001"
    assert as_array[1].suppresses and as_array[1].suppression_reason == "bounce: 550"


def test_a_block_does_not_suppress_but_a_complaint_does() -> None:
    """A bounce of type 'blocked' is temporary (not suppressed); spamreport and unsubscribe suppress."""
    blocked, spam, unsub, opened = parse_events(
        json.dumps(
            [
                event("bounce", "a@x.org", type="blocked"),
                event("spamreport", "b@x.org"),
                event("unsubscribe", "c@x.org"),
                event("open", "d@x.org"),
            ]
        )
    )
    assert (blocked.suppresses, spam.suppresses, unsub.suppresses, opened.suppresses) == (False, True, True, False)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("[{", "events.json:1: not a JSON array"),
        ('\n\n[\n{"event": "open", "email": "a@x.org"},\n{"email": oops}\n]', "events.json:5: not a JSON array"),
        ('\ufeff{"event": "open", "email": "a@x.org"}\n{oops', "events.json:2: not a JSON object"),
        ('{"event": "open", "email": "a@x.org"}\n{oops', "events.json:2: not a JSON object"),
        ('[{"email": "a@x.org"}]', "has no 'event' field"),
        ('[{"event": "open", "email": "nobody"}]', "no valid 'email'"),
    ],
)
def test_bad_events_name_the_file_line_and_fix(text: str, words: str) -> None:
    """Unreadable events raise EventsError naming where and what."""
    with pytest.raises(EventsError, match=words):
        parse_events(text, "events.json")


# --- storing and settling ---------------------------------------------------------------------------------


def test_events_are_stored_once_by_id_and_by_event_address_and_message(tmp_path: Path) -> None:
    """The same event twice, or again under a new sg_event_id, is stored once."""
    with unknown_batches(tmp_path / "l.sqlite3") as ledger:
        first = event("delivered", "user0@example.org")
        again_new_id = {**first, "sg_event_id": "another-id"}
        assert store_events(ledger, parse_events(json.dumps([first, first, again_new_id]))) == 1
        assert store_events(ledger, parse_events(json.dumps([first]))) == 0


def test_accepted_events_settle_sent_and_refusals_settle_failed_in_any_order(tmp_path: Path) -> None:
    """delivered/open -> sent, dropped/bounce -> failed with the reason (failure wins, whatever the order)."""
    with unknown_batches(tmp_path / "l.sqlite3") as ledger:
        items = [
            event("open", "user0@example.org"),
            event("bounce", "user1@example.org", type="bounce", reason="550 5.1.1 no such user"),
            event("delivered", "user1@example.org"),
        ]
        applied = ingest(ledger, parse_events(json.dumps(items)))
        assert (applied.settled.sent, applied.settled.failed) == (1, 1)
        assert states(ledger) == {
            "user0@example.org": "sent",
            "user1@example.org": "failed",
            "user2@example.org": "unknown",
        }
        error = ledger._db.read("SELECT error FROM recipient_rows WHERE email_norm = 'user1@example.org'").fetchone()
        assert error[0] == "SendGrid bounce: 550 5.1.1 no such user"
        assert evidence_counts(ledger, ED)["bounces"] == 1
        assert ingest(ledger, parse_events(json.dumps(items))).settled.total == 0


def test_events_of_another_batch_or_an_unknown_edition_change_nothing(tmp_path: Path) -> None:
    """Matching is by edition, batch and address: other batches' and editions' events are stored and ignored."""
    with unknown_batches(tmp_path / "l.sqlite3") as ledger:
        items = [
            event("delivered", "user0@example.org", batch="r9-b00001"),
            event("delivered", "user1@example.org", edition="other-2020-01"),
        ]
        applied = ingest(ledger, parse_events(json.dumps(items)))
        assert (applied.stored, applied.ignored, applied.settled.total) == (2, 1, 0)
        assert set(states(ledger).values()) == {"unknown"}


def test_a_batch_sendgrid_never_reported_on_is_sent_again(tmp_path: Path) -> None:
    """No event for a batch while events of its edition arrive after the wait: its recipients are pending again."""
    with unknown_batches(tmp_path / "l.sqlite3", (2, 2)) as ledger:
        store_events(ledger, parse_events(json.dumps([event("processed", "user2@example.org", batch="r1-b00002")])))
        apply_stored(ledger)  # a post settles only by a recipient's own events
        assert states(ledger)["user0@example.org"] == "unknown"
        assert states(ledger)["user2@example.org"] == "sent" and states(ledger)["user3@example.org"] == "unknown"
        settled = settle_by_events(ledger, ED, wait_hours=0)
        assert settled.resend == 2 and settled.sent == 1  # user3: the rest of an accepted request
        assert states(ledger) == {
            "user0@example.org": "pending",
            "user1@example.org": "pending",
            "user2@example.org": "sent",
            "user3@example.org": "sent",
        }
        assert evidence_counts(ledger, ED)["settled_resend"] == 2


def test_without_any_event_nothing_is_guessed(tmp_path: Path) -> None:
    """With no event at all (webhook not set up), unknown batches stay unknown, whatever the wait."""
    with unknown_batches(tmp_path / "l.sqlite3") as ledger:
        assert settle_by_events(ledger, ED, wait_hours=0, now=dt.datetime.now(dt.UTC) + dt.timedelta(days=9)).total == 0
        assert set(states(ledger).values()) == {"unknown"}


def test_outbox_unknowns_are_settled_by_the_maildir(tmp_path: Path) -> None:
    """Outbox: a recipient whose message is in new/ or cur/ is sent, one whose message is not is pending."""
    box = tmp_path / "outbox" / ED
    for sub in ("new", "cur", "tmp"):
        (box / sub).mkdir(parents=True)
    (box / "new" / "1.a").write_bytes(b"From: x@y.org\nTo: User 0 <USER0@example.org>\nSubject: s\n\nbody\n")
    (box / "cur" / "2.a:2,S").write_bytes(b"To: user1@example.org\n\nbody\n")
    (box / "tmp" / "3.a").write_bytes(b"To: user2@example.org\n")  # never renamed into new/: not delivered
    assert addressees(box) == {"user0@example.org", "user1@example.org"}
    with unknown_batches(tmp_path / "l.sqlite3", backend="outbox") as ledger:
        settled = settle_unknown(ledger, ED, wait_hours=24, maildir=box)
        assert (settled.sent, settled.resend) == (2, 1)
        assert states(ledger)["user2@example.org"] == "pending"
        assert ledger.batches(ED)[0].state == "resolved"


def test_smtp_unknowns_stay_unknown(tmp_path: Path) -> None:
    """SMTP: no evidence to look at; the unknown rows wait for a person's decision."""
    with unknown_batches(tmp_path / "l.sqlite3", backend="smtp") as ledger:
        assert settle_unknown(ledger, ED, wait_hours=0, maildir=tmp_path / "none").total == 0
        assert set(states(ledger).values()) == {"unknown"}


# --- suppressions -----------------------------------------------------------------------------------------


def test_bounces_complaints_and_unsubscribes_are_suppressed_with_reason_and_date(tmp_path: Path) -> None:
    """Hard bounce, spam report, unsubscribe, group unsubscribe: on the list, with reason and the event's date."""
    with unknown_batches(tmp_path / "l.sqlite3") as ledger:
        items = [
            event("bounce", "a@x.org", type="bounce", reason="550 5.1.1"),
            event("bounce", "b@x.org", type="blocked", reason="421"),
            event("spamreport", "c@x.org"),
            event("unsubscribe", "d@x.org"),
            event("group_unsubscribe", "e@x.org", asm_group_id=42),
        ]
        assert ingest(ledger, parse_events(json.dumps(items))).suppressed == 4
        assert suppressed_addresses(ledger) == {"a@x.org", "c@x.org", "d@x.org", "e@x.org"}
        reasons = dict(ledger._db.read("SELECT email_norm, reason FROM suppressions").fetchall())
        assert reasons["a@x.org"] == "bounce: 550 5.1.1" and reasons["c@x.org"] == "spam complaint"
        dates = {r[0] for r in ledger._db.read("SELECT created_at FROM suppressions")}
        assert dates == {"2025-11-30T08:00:00.000Z"}


def test_suppressions_add_list_and_remove(tmp_path: Path) -> None:
    """Add with a reason, list ledger and file entries, remove with a reason; a complaint needs yes=True."""
    from digest import suppressions

    settings = make_settings(tmp_path, ledger_path=tmp_path / "l.sqlite3", suppression_file=tmp_path / "s.csv")
    (tmp_path / "s.csv").write_text("email\nfile@x.org\n", encoding="utf-8")
    assert suppressions.add(settings, "Ann@X.org", "asked by phone") is True
    assert suppressions.add(settings, "ann@x.org", "again") is False
    with Ledger.open(settings.ledger_path) as ledger:
        ingest(ledger, parse_events(json.dumps([event("spamreport", "spam@x.org")])))
    listed = {(e.email, e.source, e.reason) for e in suppressions.entries(settings)}
    assert listed == {
        ("ann@x.org", "user", "asked by phone"),
        ("spam@x.org", "event", "spam complaint"),
        ("file@x.org", "file", "listed in s.csv"),
    }
    assert suppressions.suppressed(settings) == {"ann@x.org", "spam@x.org", "file@x.org"}
    with pytest.raises(SuppressionError, match="reported the newsletter as spam.*--yes"):
        suppressions.remove(settings, "spam@x.org", "re-subscribed")
    assert suppressions.remove(settings, "spam@x.org", "re-subscribed", yes=True).reason == "spam complaint"
    with pytest.raises(SuppressionError, match=r"s.csv:2: file@x.org is listed in the suppression file"):
        suppressions.remove(settings, "file@x.org", "re-subscribed")
    with pytest.raises(SuppressionError, match="not on the suppression list"):
        suppressions.remove(settings, "nobody@x.org", "why")
    with Ledger.open(settings.ledger_path) as ledger:
        kept = ledger._db.read("SELECT email_norm, removed_because FROM suppression_removals").fetchall()
    assert kept == [("spam@x.org", "re-subscribed")]


def test_retry_skips_failed_recipients_that_are_now_suppressed(tmp_path: Path) -> None:
    """A hard bounce fails its recipient and suppresses the address: digest retry's list skips it, keeps the rest."""
    from digest.recipients import RowProblem
    from digest.suppressions import retry_list

    with unknown_batches(tmp_path / "l.sqlite3", (2,)) as ledger:
        ledger.add_recipients(ED, [Recipient("user2@example.org", "Two")])
        bounce = event("bounce", "user0@example.org", type="bounce", reason="550 5.1.1")
        blocked = event("bounce", "user1@example.org", type="blocked", reason="421 try later")
        ingest(ledger, parse_events(json.dumps([bounce, blocked])))
        assert states(ledger) == {
            "user0@example.org": "failed",
            "user1@example.org": "failed",
            "user2@example.org": "pending",
        }
        rows = list(retry_list(ledger, ED, suppressed_addresses(ledger)) or [])
        assert [(type(r).__name__, r.email) for r in rows] == [
            ("RowProblem", "user0@example.org"),
            ("Recipient", "user1@example.org"),
            ("Recipient", "user2@example.org"),
        ]
        assert isinstance(rows[0], RowProblem) and rows[0].kind == "suppressed" and rows[2].name == "Two"
        assert retry_list(ledger, ED, frozenset()) is None  # nothing suppressed: retry as before
