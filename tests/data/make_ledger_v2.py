"""How tests/data/ledger-v2.sqlite3 was made: run with digest at schema version 2 (commit e7f24bf).

    git checkout e7f24bf && .venv/bin/python tests/data/make_ledger_v2.py

Two editions of one newsletter, with every state a ledger can hold (pending, in_flight, sent, failed,
unknown), provider ids, attempts above one, errors, a released and a resolved batch, and runs with
outcomes. tests/test_ledger_migration.py migrates a copy and checks every row against EXPECTED there.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from digest.deliver.base import BatchResult
from digest.ledger import Ledger
from digest.models import Recipient

OUT = Path(__file__).with_name("ledger-v2.sqlite3")
JAN, FEB = "mayors-innovation-2020-01", "mayors-innovation-2020-02"
HASH_JAN, HASH_FEB = "sha256:" + "1" * 64, "sha256:" + "2" * 64


def main() -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{OUT}{suffix}").unlink(missing_ok=True)
    with Ledger.open(OUT) as ledger:
        assert ledger.schema_version == 2
        ledger.begin_edition(JAN, "mayors-innovation", "2020-01", HASH_JAN, "January news")
        run = ledger.start_run(JAN, "sendgrid")
        people = [
            Recipient("Ann@Example.org", "Ann Ávila"),
            Recipient("bob@example.org", "Bob"),
            Recipient("carol@mail.example.com", 'Carol, "C" O\'Neil'),
            Recipient("dan@example.org", ""),
            Recipient("erin@example.net", "Erin"),
            Recipient("frank@example.org", "Frank"),
            Recipient("grace@example.org", "Grace"),
        ]
        ledger.add_recipients(JAN, people, run_id=run)
        # b1: refused before anything was sent (released), then sent again in b2
        ledger.claim_batch(JAN, 2, "r1-b00001", "sendgrid", HASH_JAN, run_id=run)
        ledger.release("r1-b00001", "401 bad key")
        ledger.claim_batch(JAN, 3, "r1-b00002", "sendgrid", HASH_JAN, run_id=run)
        ledger.record(
            JAN,
            "r1-b00002",
            BatchResult(
                sent=["Ann@Example.org", "bob@example.org"],
                failed=[("carol@mail.example.com", "550 5.1.1 no such user")],
                provider_id="sg-msg-2",
            ),
        )
        ledger.claim_batch(JAN, 2, "r1-b00003", "sendgrid", HASH_JAN, run_id=run)
        ledger.mark_batch_unknown("r1-b00003", "read timed out after the request was sent", "sg-msg-3")
        ledger.finish_run(run, "partial")  # frank and grace stay pending
        ledger.record_build(JAN, ["item-a", "item-b"], "/srv/news/build/mayors-innovation-2020-01", HASH_JAN)

        ledger.begin_edition(FEB, "mayors-innovation", "2020-02", HASH_FEB, "February news")
        run = ledger.start_run(FEB, "smtp")
        ledger.add_recipients(FEB, people[:5], run_id=run)
        ledger.claim_batch(FEB, 2, "r2-b00001", "smtp", HASH_FEB, run_id=run)
        ledger.mark_batch_unknown("r2-b00001", "connection lost after the final dot")
        ledger.resolve_unknown(FEB, "mark-sent", ["r2-b00001"])
        ledger.claim_batch(FEB, 2, "r2-b00002", "smtp", HASH_FEB, run_id=run)
        ledger.record(FEB, "r2-b00002", BatchResult(sent=["carol@mail.example.com", "dan@example.org"]))
        ledger.claim_batch(FEB, 1, "r2-b00003", "smtp", HASH_FEB, run_id=run)  # then the run "died"
    conn = sqlite3.connect(OUT)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.execute("PRAGMA journal_mode = DELETE")  # one file to commit
    conn.close()
    for suffix in ("-wal", "-shm"):
        Path(f"{OUT}{suffix}").unlink(missing_ok=True)


if __name__ == "__main__":
    main()
