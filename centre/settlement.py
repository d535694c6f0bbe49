"""Settlement reports: committed issuances of one municipality for one Japan-time day
(SETTLE-COMMITTED-ONLY, SETTLE-PER-DAY).

:func:`settlement_report` turns ledger rows into a ``GetSettlementReportResponse``: one line per
(kind, store operator), the totals, and the same as CSV. The ledger passes committed rows only
(``ledger_rows(tx, code, start, end)``); each row is a mapping with the keys
``municipality_code``, ``kind`` (CertificateKind number), ``store_operator``, ``copies``,
``fee_yen`` (the fee charged for the whole issuance, all copies), ``committed_at``
(microseconds, UTC) and ``issuance_id``.

The store commission is ``commission_yen`` per copy printed: the store is paid for each sheet
set it hands over, whatever the kind (the real service pays a flat amount per certificate).
:func:`jst_day_window` gives the ``[start, end)`` microsecond window of a Japan-time date.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from konbini.clock import JST
from konbini.common.v1 import types_pb2
from konbini.platform.v1 import platform_pb2
from konbini.storage import to_micros

CSV_HEADER = (
    "kind", "store_operator", "issuances", "copies", "fees_yen", "commissions_yen",
)
TOTAL_LABEL = "TOTAL"


def jst_day_window(day: dt.date) -> tuple[int, int]:
    """(start, end) microseconds UTC of the Japan-time calendar day ``day``, end exclusive."""
    start = dt.datetime(day.year, day.month, day.day, tzinfo=JST)
    return to_micros(start), to_micros(start + dt.timedelta(days=1))


def date_of(message: types_pb2.Date) -> dt.date:
    """A ``konbini.common.v1.Date`` as a date; ValueError when it is not a calendar day."""
    return dt.date(message.year, message.month, message.day)


@dataclass
class _Line:
    issuances: int = 0
    copies: int = 0
    fees: int = 0
    commissions: int = 0


def _kind_name(kind: int) -> str:
    try:
        return types_pb2.CertificateKind.Name(kind)  # type: ignore[arg-type]
    except ValueError:  # a kind newer than these stubs: keep its number
        return str(kind)


def settlement_report(
    rows: Iterable[Mapping[str, object]], *, commission_yen: int
) -> platform_pb2.GetSettlementReportResponse:
    """The report of ``rows`` (committed issuances, see the module docstring), lines sorted by
    kind then store operator. Raises ValueError on a repeated issuance_id or a negative amount
    (the ledger never produces them; counting one twice would pay twice)."""
    if commission_yen < 0:
        raise ValueError("commission_yen must not be negative")
    lines: dict[tuple[int, str], _Line] = {}
    seen: set[str] = set()
    for row in rows:
        issuance_id = str(row["issuance_id"])
        if issuance_id in seen:
            raise ValueError(f"issuance {issuance_id} appears twice in the settlement rows")
        seen.add(issuance_id)
        copies = int(row["copies"])  # type: ignore[call-overload]
        fee = int(row["fee_yen"])  # type: ignore[call-overload]
        if copies < 1 or fee < 0:
            raise ValueError(f"issuance {issuance_id} has {copies} copies and fee {fee}")
        key = (int(row["kind"]), str(row["store_operator"]))  # type: ignore[call-overload]
        line = lines.setdefault(key, _Line())
        line.issuances += 1
        line.copies += copies
        line.fees += fee
        line.commissions += copies * commission_yen
    response = platform_pb2.GetSettlementReportResponse()
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    total = _Line()
    for (kind, operator), line in sorted(lines.items()):
        response.lines.append(
            platform_pb2.SettlementLine(
                kind=kind,  # type: ignore[arg-type]
                store_operator=operator,
                issuances=line.issuances,
                copies=line.copies,
                fees=types_pb2.Money(yen=line.fees),
                commissions=types_pb2.Money(yen=line.commissions),
            )
        )
        writer.writerow(
            (_kind_name(kind), operator, line.issuances, line.copies, line.fees,
             line.commissions)
        )
        total.issuances += line.issuances
        total.copies += line.copies
        total.fees += line.fees
        total.commissions += line.commissions
    writer.writerow(
        (TOTAL_LABEL, "", total.issuances, total.copies, total.fees, total.commissions)
    )
    response.total_fees.yen = total.fees
    response.total_commissions.yen = total.commissions
    response.csv = out.getvalue().encode("utf-8")
    return response
