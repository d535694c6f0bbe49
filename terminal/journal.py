"""The terminal's local journal: one row per transaction, written before each irreversible step.

SQLite through :mod:`konbini.storage` (WAL, ``synchronous=FULL``), so a committed state survives
a power loss. The journal holds ids, amounts and states only — no names, no documents, no card
data (AUDIT-NO-PII). :mod:`terminal.settle` reads it to finish what a crash left half done
(TERM-JOURNAL).

States, in order (FAILING may follow any state before PRINTED)::

    REQUESTING  RequestIssuance is about to be sent (the issuance id is not known yet)
    DELIVERED   the documents arrived; nothing taken, nothing printed
    PAID        the fee is being kept (written before the device keeps it)
    PRINTING    the print job is about to start
    PRINTED     every page came out; the completion to send is PRINTED
    FAILING     the completion to send is FAILED with ``failure_cause``
    COMPLETED   the centre answered; a refund of ``kept - charged`` may still be owed
    DONE        nothing more to do
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from konbini.clock import Clock, SystemClock
from konbini.storage import Migration, Store, open_store
from konbini.storage.store import Tx
from konbini.storage.timestamps import from_micros, to_micros

STATES = ("REQUESTING", "DELIVERED", "PAID", "PRINTING", "PRINTED", "FAILING", "COMPLETED",
          "DONE")

MIGRATIONS = [
    Migration(
        1,
        "transactions",
        """
        CREATE TABLE txn (
            txn_id TEXT PRIMARY KEY,
            request_id TEXT NOT NULL UNIQUE,
            completion_request_id TEXT NOT NULL UNIQUE,
            job_id TEXT NOT NULL UNIQUE,
            issuance_id TEXT,
            fee BIGINT NOT NULL DEFAULT 0,
            expires_at BIGINT,
            state TEXT NOT NULL,
            failure_cause TEXT,
            kept BIGINT NOT NULL DEFAULT 0,
            refunded BIGINT NOT NULL DEFAULT 0,
            centre_state TEXT,
            charged BIGINT,
            created_at BIGINT NOT NULL,
            updated_at BIGINT NOT NULL
        );
        CREATE INDEX txn_open ON txn (state);
        """,
    ),
]


class JournalError(RuntimeError):
    """A journal transition that does not fit the transaction's state (a bug, not a crash)."""


@dataclass(frozen=True)
class TxnRecord:
    """One journal row."""

    txn_id: str
    request_id: str
    completion_request_id: str
    job_id: str
    issuance_id: str | None
    fee: int
    expires_at: dt.datetime | None
    state: str
    failure_cause: str | None
    kept: int
    refunded: int
    centre_state: str | None
    charged: int | None


def _record(row: dict) -> TxnRecord:
    return TxnRecord(
        txn_id=row["txn_id"],
        request_id=row["request_id"],
        completion_request_id=row["completion_request_id"],
        job_id=row["job_id"],
        issuance_id=row["issuance_id"],
        fee=int(row["fee"]),
        expires_at=from_micros(row["expires_at"]) if row["expires_at"] is not None else None,
        state=row["state"],
        failure_cause=row["failure_cause"],
        kept=int(row["kept"]),
        refunded=int(row["refunded"]),
        centre_state=row["centre_state"],
        charged=None if row["charged"] is None else int(row["charged"]),
    )


class Journal:
    """The journal file. Every method is one durable write (or read)."""

    def __init__(self, store: Store, clock: Clock | None = None) -> None:
        self._store = store
        self._clock = clock or SystemClock()

    @classmethod
    def open(cls, path: Path, clock: Clock | None = None) -> Journal:
        """Open (or create) the journal at ``path``."""
        path = path.resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        return cls(open_store(f"sqlite://{path}", migrations=MIGRATIONS), clock)

    def close(self) -> None:
        """Close the file."""
        self._store.close()

    def _stamp(self) -> int:
        return to_micros(self._clock.now())

    def begin(self, txn_id: str, request_id: str, completion_request_id: str,
              job_id: str) -> None:
        """REQUESTING: written before RequestIssuance is sent."""
        now = self._stamp()
        self._store.run(lambda tx: tx.execute(
            "INSERT INTO txn (txn_id, request_id, completion_request_id, job_id, state,"
            " created_at, updated_at) VALUES (?, ?, ?, ?, 'REQUESTING', ?, ?)",
            (txn_id, request_id, completion_request_id, job_id, now, now)))

    def _move(self, txn_id: str, allowed: tuple[str, ...], state: str,
              extra: dict[str, object] | None = None) -> None:
        extra = extra or {}
        sets = "".join(f", {k} = ?" for k in extra)
        params = (state, *extra.values(), self._stamp(), txn_id)

        def fn(tx: Tx) -> None:
            row = tx.execute("SELECT state FROM txn WHERE txn_id = ?", (txn_id,)).fetchone()
            if row is None:
                raise JournalError(f"no transaction {txn_id}")
            if row["state"] not in allowed:
                raise JournalError(f"{txn_id}: {row['state']} -> {state} is not allowed")
            tx.execute(f"UPDATE txn SET state = ?{sets}, updated_at = ? WHERE txn_id = ?",  # noqa: S608 - column names are ours
                       params)

        self._store.run(fn)

    def delivered(self, txn_id: str, issuance_id: str, fee: int,
                  expires_at: dt.datetime) -> None:
        """DELIVERED: the issuance id, fee and expiry are known."""
        self._move(txn_id, ("REQUESTING",), "DELIVERED",
                   {"issuance_id": issuance_id, "fee": fee, "expires_at": to_micros(expires_at)})

    def paid(self, txn_id: str, kept: int) -> None:
        """PAID: written before the device keeps ``kept`` yen."""
        self._move(txn_id, ("DELIVERED",), "PAID", {"kept": kept})

    def printing(self, txn_id: str) -> None:
        """PRINTING: written before the job starts."""
        self._move(txn_id, ("PAID",), "PRINTING")

    def printed(self, txn_id: str) -> None:
        """PRINTED: every page came out."""
        self._move(txn_id, ("PRINTING",), "PRINTED")

    def failing(self, txn_id: str, cause: str, issuance_id: str | None = None) -> None:
        """FAILING: the completion will say FAILED with ``cause`` (decided once). From
        REQUESTING, ``issuance_id`` is the id the centre reported after a restart."""
        extra: dict[str, object] = {"failure_cause": cause}
        if issuance_id is not None:
            extra["issuance_id"] = issuance_id
        self._move(txn_id, ("REQUESTING", "DELIVERED", "PAID", "PRINTING"), "FAILING", extra)

    def completed(self, txn_id: str, centre_state: str, charged: int) -> None:
        """COMPLETED: the centre's answer is recorded; a refund may still be owed."""
        self._move(txn_id, ("PRINTED", "FAILING"), "COMPLETED",
                   {"centre_state": centre_state, "charged": charged})

    def refund(self, txn_id: str, yen: int) -> None:
        """Record a refund, written before the device pays it (so a crash never pays twice)."""
        def fn(tx: Tx) -> None:
            row = tx.execute("SELECT state, kept, refunded FROM txn WHERE txn_id = ?",
                             (txn_id,)).fetchone()
            if row is None or row["state"] not in ("FAILING", "COMPLETED"):
                raise JournalError(f"{txn_id}: refund outside FAILING or COMPLETED")
            if yen <= 0 or yen > int(row["kept"]) - int(row["refunded"]):
                raise JournalError(f"{txn_id}: refund not covered by what is kept")
            tx.execute("UPDATE txn SET refunded = refunded + ?, updated_at = ? WHERE txn_id = ?",
                       (yen, self._stamp(), txn_id))

        self._store.run(fn)

    def done(self, txn_id: str) -> None:
        """DONE without a refund (nothing was owed, or nothing happened)."""
        self._move(txn_id, ("COMPLETED", "REQUESTING"), "DONE")

    def get(self, txn_id: str) -> TxnRecord:
        """One transaction."""
        row = self._store.run(
            lambda tx: tx.execute("SELECT * FROM txn WHERE txn_id = ?", (txn_id,)).fetchone(),
            write=False)
        if row is None:
            raise JournalError(f"no transaction {txn_id}")
        return _record(row)

    def by_job(self, job_id: str) -> TxnRecord | None:
        """The transaction of a print job."""
        row = self._store.run(
            lambda tx: tx.execute("SELECT * FROM txn WHERE job_id = ?", (job_id,)).fetchone(),
            write=False)
        return _record(row) if row is not None else None

    def unfinished(self) -> list[TxnRecord]:
        """Every transaction not DONE, oldest first."""
        rows = self._store.run(lambda tx: tx.execute(
            "SELECT * FROM txn WHERE state <> 'DONE' ORDER BY created_at, txn_id").fetchall(),
            write=False)
        return [_record(r) for r in rows]

    def all(self) -> list[TxnRecord]:
        """Every transaction, oldest first."""
        rows = self._store.run(lambda tx: tx.execute(
            "SELECT * FROM txn ORDER BY created_at, txn_id").fetchall(), write=False)
        return [_record(r) for r in rows]
