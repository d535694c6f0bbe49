"""Finishing a transaction from whatever state the journal holds (TERM-JOURNAL, TERM-COMPLETE).

The live flow and the start-up recovery use the same code: from PRINTED the completion says
PRINTED and the charge is kept; from any earlier state it says FAILED and whatever was kept is
refunded. Each completion is sent with the journal's completion_request_id, so repeating it
after a crash gets the centre's first answer, never a second effect. The money kept in the end
always equals what the centre charged: never both a refund and a charge, never neither.
"""

from __future__ import annotations

from dataclasses import dataclass

from konbini.common.v1 import types_pb2
from konbini.errors import KonbiniError
from konbini.kiosk.v1 import kiosk_pb2
from terminal.centre import Centre
from terminal.journal import Journal, TxnRecord
from terminal.payment import PaymentDevice
from terminal.printer import Printer

# Refusals of a completion that mean "no charge": the reservation is gone.
_NOT_CHARGED = {
    "RESERVATION_EXPIRED": "EXPIRED",
    "RESERVATION_CANCELLED": "CANCELLED",
    "RESERVATION_NOT_FOUND": "CANCELLED",
}


@dataclass(frozen=True)
class Settlement:
    """How a transaction ended."""

    txn_id: str
    issuance_id: str | None
    centre_state: str  # COMMITTED, CANCELLED, EXPIRED, or NONE (nothing reached the centre)
    charged: int
    refunded: int


def _state_name(value: int) -> str:
    return types_pb2.IssuanceState.Name(value).removeprefix("ISSUANCE_STATE_")


def _complete(centre: Centre, rec: TxnRecord, outcome: str) -> tuple[str, int]:
    """Send the completion; return (centre state, charged)."""
    request = kiosk_pb2.CompleteIssuanceRequest(
        request_id=rec.completion_request_id,
        issuance_id=rec.issuance_id or "",
        outcome=kiosk_pb2.PrintOutcome.Value(f"PRINT_OUTCOME_{outcome}"),
    )
    if outcome == "FAILED":
        request.failure_cause = kiosk_pb2.FailureCause.Value(
            f"FAILURE_CAUSE_{rec.failure_cause or 'TERMINAL_RESTART'}")
    try:
        response = centre.complete_issuance(request)
    except KonbiniError as error:
        if error.reason in _NOT_CHARGED:
            return _NOT_CHARGED[error.reason], 0
        raise
    state = _state_name(response.state)
    charged = response.charged.yen if state == "COMMITTED" else 0
    return state, charged


def _find_issuance(centre: Centre, rec: TxnRecord) -> str | None:
    """After a crash during RequestIssuance: the issuance id, if the centre made one."""
    try:
        found = centre.get_issuance(kiosk_pb2.GetIssuanceRequest(request_id=rec.request_id))
    except KonbiniError as error:
        if error.reason in ("RESERVATION_NOT_FOUND",):
            return None
        raise
    return found.issuance_id or None


def _refund(journal: Journal, payment: PaymentDevice, rec: TxnRecord, owed: int) -> None:
    if owed > 0:
        journal.refund(rec.txn_id, owed)  # written first: a crash never refunds twice
        payment.refund(owed)


def settle(
    journal: Journal,
    centre: Centre,
    payment: PaymentDevice,
    printer: Printer | None,
    txn_id: str,
    *,
    restart: bool = False,
) -> Settlement:
    """Drive one transaction to DONE. ``restart`` marks a start-up recovery: a transaction that
    was not yet printed fails with TERMINAL_RESTART. Raises KonbiniError (the journal keeps the
    state) when the centre cannot be reached; run it again later."""
    rec = journal.get(txn_id)
    if rec.state == "REQUESTING":
        if not restart:
            raise ValueError("a live transaction is settled only after delivery")
        issuance_id = _find_issuance(centre, rec)
        if issuance_id is None:
            journal.done(txn_id)
            return Settlement(txn_id, None, "NONE", 0, 0)
        # Record the id we learnt, then cancel as for any unprinted transaction.
        journal.failing(txn_id, "TERMINAL_RESTART", issuance_id)
        rec = journal.get(txn_id)
    elif rec.state == "PRINTING":
        came_out = printer.job_printed(rec.job_id) if printer is not None else None
        if came_out:
            journal.printed(txn_id)
        else:
            journal.failing(txn_id, "TERMINAL_RESTART" if restart else "PRINTER")
        rec = journal.get(txn_id)
    elif rec.state in ("DELIVERED", "PAID"):
        if not restart:
            raise ValueError("a live transaction is settled once printed or failed")
        journal.failing(txn_id, "TERMINAL_RESTART")
        rec = journal.get(txn_id)

    if rec.state == "FAILING":
        # A failed transaction is never charged, whatever the centre says: refund at once,
        # so the resident is not kept waiting on the network.
        _refund(journal, payment, rec, rec.kept - rec.refunded)
        rec = journal.get(txn_id)

    if rec.state in ("PRINTED", "FAILING"):
        outcome = "PRINTED" if rec.state == "PRINTED" else "FAILED"
        state, charged = _complete(centre, rec, outcome)
        journal.completed(txn_id, state, charged)
        rec = journal.get(txn_id)

    if rec.state == "COMPLETED":
        # Printed but not committed (the reservation expired): the charge is given back.
        _refund(journal, payment, rec, rec.kept - rec.refunded - (rec.charged or 0))
        journal.done(txn_id)
        rec = journal.get(txn_id)

    return Settlement(txn_id, rec.issuance_id, rec.centre_state or "NONE", rec.charged or 0,
                      rec.refunded)


def recover(
    journal: Journal, centre: Centre, payment: PaymentDevice, printer: Printer | None
) -> list[Settlement]:
    """Start-up: settle every unfinished transaction (TERM-JOURNAL)."""
    return [settle(journal, centre, payment, printer, rec.txn_id, restart=True)
            for rec in journal.unfinished()]
