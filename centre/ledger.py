"""The issuance ledger: one row per (terminal, request_id), its state and what was delivered.

States (konbini.common.v1.IssuanceState names): REQUESTED (recorded, no answer from the
municipality yet), DELIVERED (documents with back sides stored and returned), COMMITTED
(printed; the commit is relayed through the outbox and ``committed_at`` is set once the
municipality acknowledged it), CANCELLED and EXPIRED (never charged). Every function takes
the caller's transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from konbini.storage import Tx

REQUESTED = "REQUESTED"
RESERVED = "RESERVED"
DELIVERED = "DELIVERED"
COMMITTED = "COMMITTED"
CANCELLED = "CANCELLED"
EXPIRED = "EXPIRED"
OPEN_STATES = (REQUESTED, RESERVED, DELIVERED)

_COLUMNS = (
    "issuance_id, terminal, request_id, fingerprint, session_id, card_serial, municipality_code,"
    " kind, copies, fee_yen, state, prepare_request_id, reservation_id, municipality_expires_at,"
    " expires_at, response, store_operator, terminal_id, created_at, updated_at, committed_at,"
    " issue_numbers"
)


@dataclass(frozen=True)
class LedgerRow:
    """One issuance."""

    issuance_id: str
    terminal: str
    request_id: str
    fingerprint: bytes
    session_id: str
    card_serial: str
    municipality_code: str
    kind: int
    copies: int
    fee_yen: int
    state: str
    prepare_request_id: str
    reservation_id: str | None
    municipality_expires_at: int | None
    expires_at: int | None
    response: bytes | None
    store_operator: str
    terminal_id: str
    created_at: int
    updated_at: int
    committed_at: int | None
    issue_numbers: str | None


def _row(raw: dict[str, Any] | None) -> LedgerRow | None:
    if raw is None:
        return None
    values = dict(raw)
    values["fingerprint"] = bytes(values["fingerprint"])
    if values["response"] is not None:
        values["response"] = bytes(values["response"])
    return LedgerRow(**values)


def by_request(tx: Tx, terminal: str, request_id: str) -> LedgerRow | None:
    """The issuance a terminal requested under ``request_id``."""
    return _row(tx.execute(
        f"SELECT {_COLUMNS} FROM ledger WHERE terminal = ? AND request_id = ?",  # noqa: S608
        (terminal, request_id),
    ).fetchone())


def by_id(tx: Tx, issuance_id: str) -> LedgerRow | None:
    """The issuance with this id."""
    return _row(tx.execute(
        f"SELECT {_COLUMNS} FROM ledger WHERE issuance_id = ?",  # noqa: S608
        (issuance_id,)
    ).fetchone())


def insert_requested(tx: Tx, row: LedgerRow) -> None:
    """Record a new request (state REQUESTED)."""
    tx.execute(
        f"INSERT INTO ledger ({_COLUMNS}) VALUES"  # noqa: S608
        " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (row.issuance_id, row.terminal, row.request_id, row.fingerprint, row.session_id,
         row.card_serial, row.municipality_code, row.kind, row.copies, row.fee_yen, row.state,
         row.prepare_request_id, row.reservation_id, row.municipality_expires_at,
         row.expires_at, row.response, row.store_operator, row.terminal_id, row.created_at,
         row.updated_at, row.committed_at, row.issue_numbers),
    )


def set_state(tx: Tx, issuance_id: str, state: str, now_us: int,
              *, only_from: tuple[str, ...]) -> bool:
    """Move to ``state`` if the row is in one of ``only_from``; True if it moved."""
    marks = ", ".join("?" for _ in only_from)
    result = tx.execute(
        "UPDATE ledger SET state = ?, updated_at = ? WHERE issuance_id = ?"  # noqa: S608
        f" AND state IN ({marks})",
        (state, now_us, issuance_id, *only_from),
    )
    return result.rowcount == 1


def mark_delivered(tx: Tx, issuance_id: str, *, reservation_id: str, fee_yen: int,
                   municipality_expires_at: int, expires_at: int, response: bytes,
                   now_us: int) -> bool:
    """REQUESTED → DELIVERED with the stored response; False if the row left REQUESTED."""
    result = tx.execute(
        "UPDATE ledger SET state = ?, reservation_id = ?, fee_yen = ?,"
        " municipality_expires_at = ?, expires_at = ?, response = ?, updated_at = ?"
        " WHERE issuance_id = ? AND state = ?",
        (DELIVERED, reservation_id, fee_yen, municipality_expires_at, expires_at, response,
         now_us, issuance_id, REQUESTED),
    )
    return result.rowcount == 1


def delete_requested(tx: Tx, issuance_id: str) -> None:
    """Forget a request the municipality refused (REFUSE-NO-STATE): a retry starts afresh."""
    tx.execute("DELETE FROM ledger WHERE issuance_id = ? AND state = ?", (issuance_id, REQUESTED))


def record_commit_ack(tx: Tx, issuance_id: str, committed_at: int, issue_numbers: str) -> None:
    """The municipality acknowledged the commit: its time and issue numbers."""
    tx.execute(
        "UPDATE ledger SET committed_at = ?, issue_numbers = ? WHERE issuance_id = ?",
        (committed_at, issue_numbers, issuance_id),
    )


def overdue(tx: Tx, now_us: int, requested_before: int, limit: int = 100) -> list[LedgerRow]:
    """Open issuances past their expiry, and requests with no answer since ``requested_before``."""
    rows = tx.execute(
        f"SELECT {_COLUMNS} FROM ledger WHERE (state IN (?, ?) AND expires_at < ?)"  # noqa: S608
        " OR (state = ? AND created_at < ?) ORDER BY created_at LIMIT ?",
        (DELIVERED, RESERVED, now_us, REQUESTED, requested_before, limit),
    ).fetchall()
    return [r for r in (_row(raw) for raw in rows) if r is not None]


def committed_rows(
    tx: Tx, municipality_code: str, day_start_micros: int, day_end_micros: int
) -> list[dict[str, Any]]:
    """Issuances committed and acknowledged by the municipality in [start, end), for
    settlement (SETTLE-COMMITTED-ONLY) and reconciliation with its issue records."""
    rows = tx.execute(
        "SELECT municipality_code, kind, store_operator, copies, fee_yen, committed_at,"
        " issuance_id FROM ledger WHERE municipality_code = ? AND state = ?"
        " AND committed_at >= ? AND committed_at < ? ORDER BY committed_at, issuance_id",
        (municipality_code, COMMITTED, day_start_micros, day_end_micros),
    ).fetchall()
    return [
        {
            "municipality_code": str(r["municipality_code"]),
            "kind": int(r["kind"]),
            "store_operator": str(r["store_operator"]),
            "copies": int(r["copies"]),
            "fee_yen": int(r["fee_yen"]),
            "committed_at": int(r["committed_at"]),
            "issuance_id": str(r["issuance_id"]),
        }
        for r in rows
    ]
