"""End to end completion: a print failure is cancelled at the municipality and refunded; a
delivery nobody completes is expired by the centre's sweeper and cancelled at the municipality
(the clocks of every side are moved, not waited for)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from test_e2e_support import (
    RR,
    K,
    Network,
    Rig,
    entry_of,
    start_network,
    wait_for,
)

from centre import ledger
from konbini.clock import JST
from konbini.storage import from_micros
from municipality.sample import KOFU
from terminal.flow import Choice, ScreenId

pytestmark = pytest.mark.asyncio(loop_scope="module")

SELF_ONLY = K.CertificateOptions(residence_record=K.ResidenceRecordOptions(
    scope=K.HOUSEHOLD_SCOPE_SELF))


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def net(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Network]:
    root = tmp_path_factory.mktemp("e2e-completion")
    async with contextlib.AsyncExitStack() as stack:
        yield await start_network(root, lambda name: f"sqlite://{root / name}.db", stack)


async def delivered(net: Network, tmp_path: Path) -> tuple[Rig, ledger.LedgerRow, int]:
    """A kiosk on the payment screen of a residence record; the ledger row and the fee."""
    rig = net.kiosk(tmp_path)
    assert (await rig.to_menu(net.cards["taro"])).id is ScreenId.MENU
    fee = entry_of(rig.kiosk.screen.menu, RR).fee.yen
    screen = await rig.run(rig.kiosk.choose, Choice(RR, SELF_ONLY))
    assert screen.id is ScreenId.PAYMENT and screen.fee == fee
    row = net.ledger_rows()[-1]
    assert row.state == ledger.DELIVERED and row.reservation_id
    return rig, row, fee


def reservation_state(net: Network, reservation_id: str) -> str:
    return next(r["state"] for r in net.reservations(KOFU) if r["id"] == reservation_id)


def ledger_state(net: Network, issuance_id: str) -> str:
    return next(r.state for r in net.ledger_rows() if r.issuance_id == issuance_id)


async def no_issue_record(net: Network, issuance_id: str) -> None:
    day = net.clock.now().astimezone(JST).date()
    assert issuance_id not in {r.issuance_id for r in await net.issue_records(KOFU, day)}
    assert issuance_id not in {r["issuance_id"] for r in net.committed(KOFU, day)}


async def test_print_failure_is_cancelled_and_refunded(net: Network, tmp_path: Path) -> None:
    rig, row, fee = await delivered(net, tmp_path)
    rig.printer.jam_next = True
    screen = await rig.run(rig.kiosk.pay, fee + 500)
    assert screen.id is ScreenId.REFUSED and screen.reason == "PRINT_FAILED", screen
    # FEE-REFUND-ON-FAILURE: the fee taken before printing is paid back, change given.
    assert rig.cash.kept_total == 0 and rig.cash.refunded_total == fee
    assert screen.returned == fee + 500
    assert rig.printer.tray == []
    await net.outbox_drained()
    assert ledger_state(net, row.issuance_id) == ledger.CANCELLED
    assert reservation_state(net, row.reservation_id or "") == "CANCELLED"
    await no_issue_record(net, row.issuance_id)
    assert [t.state for t in rig.journal.all()] == ["DONE"]


async def test_abandoned_delivery_is_swept_and_cancelled(net: Network, tmp_path: Path) -> None:
    rig, row, fee = await delivered(net, tmp_path)
    assert row.expires_at and row.municipality_expires_at
    # Past the centre's deadline for the terminal, before the municipality's own expiry: only
    # the centre's sweeper can end it, and it must tell the municipality (ISSUE-SWEEPER).
    centre_deadline = from_micros(row.expires_at)
    municipality_expiry = from_micros(row.municipality_expires_at)
    assert centre_deadline < municipality_expiry
    # The clocks stay moved (about ten minutes on, still within the hours): moving them back
    # would put the servers' stored times in the future.
    await net.set_now(centre_deadline + (municipality_expiry - centre_deadline) / 2)

    async def swept() -> bool:
        return (ledger_state(net, row.issuance_id) == ledger.EXPIRED
                and reservation_state(net, row.reservation_id or "") == "CANCELLED")

    await wait_for(swept, "the sweeper to expire and cancel the reservation")
    await net.outbox_drained()
    # The resident comes back and pays: the kiosk prints nothing and gives the money back.
    screen = await rig.run(rig.kiosk.pay, fee)
    assert screen.id is ScreenId.REFUSED and screen.reason == "RESERVATION_EXPIRED"
    assert rig.cash.kept_total == 0 and rig.printer.attempts == 0
    assert screen.returned == fee
    assert ledger_state(net, row.issuance_id) == ledger.EXPIRED
    await no_issue_record(net, row.issuance_id)
