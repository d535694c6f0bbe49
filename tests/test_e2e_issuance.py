"""End to end: terminal → centre → municipality over loopback mTLS, every kind issued, printed
by the kiosk's spool printer and verified offline against the centre's trust list; the
municipality's issue records reconcile with the centre's ledger (same committed set, same fees,
same issue numbers)."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pikepdf
import pytest
import pytest_asyncio
from test_e2e_support import (
    FR_FULL,
    FR_HISTORY,
    FR_INDIVIDUAL,
    RR,
    RR_ITEMS,
    SEAL,
    TAX,
    K,
    Network,
    Rig,
    entry_of,
    start_network,
)

from centre import ledger
from konbini.clock import JST
from konbini.kiosk.v1 import kiosk_pb2
from konbini.platform.v1 import platform_pb2
from konbini.verification.v1 import verification_pb2
from municipality.sample import CHIYODA, DOMICILE, KOFU
from terminal.flow import Choice, Screen, ScreenId

pytestmark = pytest.mark.asyncio(loop_scope="module")

SELF = "本人"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def net(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Network]:
    root = tmp_path_factory.mktemp("e2e")
    async with contextlib.AsyncExitStack() as stack:
        yield await start_network(root, lambda name: f"sqlite://{root / name}.db", stack)


def residence(scope: int, refs: tuple[str, ...] = (), **shown: bool) -> K.CertificateOptions:
    return K.CertificateOptions(residence_record=K.ResidenceRecordOptions(
        scope=scope, member_refs=refs, **shown))  # type: ignore[arg-type]


async def issue_and_verify(net: Network, rig: Rig, choice: Choice
                           ) -> tuple[Screen, list[verification_pb2.VerifyDocumentResponse]]:
    """Buy ``choice`` on a kiosk at the menu; every printed copy verifies as GENUINE."""
    menu = rig.kiosk.screen.menu
    entry = entry_of(menu, choice.kind, choice.municipality_code or None)
    done = await rig.buy(choice)
    assert done.id is ScreenId.DONE, done
    # FEE-CATALOGUE: the catalogue fee per copy times the copies, charged once.
    assert done.fee == entry.fee.yen * choice.copies
    assert rig.cash.kept_total == done.fee and rig.cash.refunded_total == 0
    assert len(done.printed) == choice.copies
    verdicts = []
    for path in done.printed:
        verdict = await net.verify(path.read_bytes())
        assert verdict.verdict == verification_pb2.VERDICT_GENUINE, verdict.findings
        assert verdict.kind == choice.kind
        assert verdict.municipality_code.value == (choice.municipality_code or KOFU)
        verdicts.append(verdict)
    return done, verdicts


def last_subjects(net: Network, code: str = KOFU) -> int:
    """How many people the municipality's last reservation printed (ids only, no names)."""
    store = net.app_of(code).store
    row = store.run(lambda tx: tx.execute(
        "SELECT subject_ids FROM reservations WHERE tenant = ? ORDER BY created_at DESC",
        (code,)).fetchone(), write=False)
    return len(json.loads(row["subject_ids"]))


async def at_menu(net: Network, tmp_path: Path, card: str = "taro") -> Rig:
    rig = net.kiosk(tmp_path)
    screen = await rig.to_menu(net.cards[card])
    assert screen.id is ScreenId.MENU, screen
    return rig


async def reconcile(net: Network, code: str) -> int:
    """The municipality's issue records equal the centre's committed ledger rows."""
    await net.outbox_drained()
    day = net.clock.now().astimezone(JST).date()
    records = await net.issue_records(code, day)
    numbers = {row.issuance_id: tuple((row.issue_numbers or "").split(","))
               for row in net.ledger_rows() if row.state == ledger.COMMITTED}
    municipality = {r.issuance_id: (r.kind, r.copies, r.fee.yen, tuple(r.issue_numbers))
                    for r in records}
    centre = {r["issuance_id"]: (r["kind"], r["copies"], r["fee_yen"],
                                 numbers[r["issuance_id"]])
              for r in net.committed(code, day)}
    assert municipality == centre
    # The settlement report the municipality fetches from the centre counts the same.
    report = await net.platform(code).GetSettlementReport(
        platform_pb2.GetSettlementReportRequest(
            municipality_code=K.MunicipalityCode(value=code),
            day=K.Date(year=day.year, month=day.month, day=day.day)))
    assert report.total_fees.yen == sum(r.fee.yen for r in records)
    by_kind: dict[int, tuple[int, int]] = {}
    for r in records:
        issuances, copies = by_kind.get(r.kind, (0, 0))
        by_kind[r.kind] = (issuances + 1, copies + r.copies)
    reported: dict[int, tuple[int, int]] = {}
    for line in report.lines:
        issuances, copies = reported.get(line.kind, (0, 0))
        reported[line.kind] = (issuances + line.issuances, copies + line.copies)
    assert reported == by_kind
    return len(records)


async def test_residence_record_for_self(net: Network, tmp_path: Path) -> None:
    rig = await at_menu(net, tmp_path)
    _done, [verdict] = await issue_and_verify(
        net, rig, Choice(RR, residence(K.HOUSEHOLD_SCOPE_SELF)))
    assert verdict.issue_number.startswith(KOFU)
    assert last_subjects(net) == 1


async def test_residence_record_for_whole_household(net: Network, tmp_path: Path) -> None:
    rig = await at_menu(net, tmp_path)
    household = entry_of(rig.kiosk.screen.menu, RR).selectable
    assert household[0].relationship == SELF and len(household) == 3
    await issue_and_verify(net, rig, Choice(RR, residence(
        K.HOUSEHOLD_SCOPE_WHOLE_HOUSEHOLD, show_household_head=True,
        show_registered_domicile=True)))
    assert last_subjects(net) == 3


async def test_residence_record_for_selected_members(net: Network, tmp_path: Path) -> None:
    rig = await at_menu(net, tmp_path)
    people = entry_of(rig.kiosk.screen.menu, RR).selectable
    chosen = tuple(p.ref for p in people if p.relationship in (SELF, "妻"))
    assert len(chosen) == 2
    await issue_and_verify(net, rig, Choice(RR, residence(
        K.HOUSEHOLD_SCOPE_SELECTED_MEMBERS, chosen, show_household_head=True), copies=1))
    assert last_subjects(net) == 2


async def test_residence_record_items(net: Network, tmp_path: Path) -> None:
    rig = await at_menu(net, tmp_path)
    await issue_and_verify(net, rig, Choice(RR_ITEMS, residence(
        K.HOUSEHOLD_SCOPE_SELF, show_registered_domicile=True)))


async def test_seal_registration(net: Network, tmp_path: Path) -> None:
    rig = await at_menu(net, tmp_path)
    await issue_and_verify(net, rig, Choice(SEAL, K.CertificateOptions(
        seal_registration=K.SealRegistrationOptions())))


async def test_income_tax_for_a_fiscal_year(net: Network, tmp_path: Path) -> None:
    rig = await at_menu(net, tmp_path)
    assert list(entry_of(rig.kiosk.screen.menu, TAX).fiscal_years) == [2025]
    await issue_and_verify(net, rig, Choice(TAX, K.CertificateOptions(
        income_tax=K.IncomeTaxOptions(fiscal_year=2025))))


async def test_family_registers_through_a_use_registration(net: Network,
                                                           tmp_path: Path) -> None:
    """次郎 lives in Chiyoda (tokyo-cloud); his register is in Kofu. Before the use
    registration his menu has no Kofu entry; after it, each family-register kind issues."""
    rig = await at_menu(net, tmp_path, "jiro")
    assert {e.municipality_code.value for e in rig.kiosk.screen.menu} == {CHIYODA}
    # The resident applies at the kiosk; the card signs the application (the terminal's flow).
    registered = await rig.run(lambda: rig.kiosk.register_use(KOFU, DOMICILE, "葛西 太郎"))
    assert (registered.status, registered.reason) == ("APPROVED", None)
    assert KOFU in {e.municipality_code.value for e in rig.kiosk.screen.menu}
    await rig.run(rig.kiosk.done)
    status = await net.kiosk_stub().GetUseRegistration(kiosk_pb2.GetUseRegistrationRequest(
        registration_id=registered.registration_id))
    assert status.status == kiosk_pb2.USE_REGISTRATION_STATUS_APPROVED

    rig = await at_menu(net, tmp_path, "jiro")
    menu = rig.kiosk.screen.menu
    kofu_kinds = {e.kind for e in menu if e.municipality_code.value == KOFU}
    assert kofu_kinds == {FR_FULL, FR_INDIVIDUAL, FR_HISTORY}
    register = entry_of(menu, FR_INDIVIDUAL, KOFU).selectable
    assert register[0].relationship == SELF  # "self first" (types.proto CatalogueEntry)
    self_ref = register[0].ref
    for kind, refs in ((FR_FULL, ()), (FR_INDIVIDUAL, (self_ref,)), (FR_HISTORY, ())):
        if rig.kiosk.screen.id is not ScreenId.MENU:  # after DONE the card comes out
            rig = await at_menu(net, tmp_path, "jiro")
        await issue_and_verify(net, rig, Choice(kind, K.CertificateOptions(
            family_register=K.FamilyRegisterOptions(member_refs=refs)),
            municipality_code=KOFU))
        # The individual certificate shows the one member chosen; the full one all four.
        expected = {FR_FULL: 4, FR_INDIVIDUAL: 1}.get(kind)
        if expected is not None:
            assert last_subjects(net) == expected
        await rig.run(rig.kiosk.done)


async def test_two_copies_are_two_documents_with_their_own_numbers(net: Network,
                                                                    tmp_path: Path) -> None:
    rig = await at_menu(net, tmp_path)
    fee = entry_of(rig.kiosk.screen.menu, RR).fee.yen
    done, verdicts = await issue_and_verify(
        net, rig, Choice(RR, residence(K.HOUSEHOLD_SCOPE_SELF), copies=2))
    assert done.fee == 2 * fee
    numbers = [v.issue_number for v in verdicts]
    assert len(set(numbers)) == 2 and all(numbers)
    assert done.printed[0].read_bytes() != done.printed[1].read_bytes()
    await net.outbox_drained()
    rows = [r for r in net.ledger_rows() if r.state == ledger.COMMITTED and r.copies == 2]
    assert rows and rows[-1].fee_yen == 2 * fee
    assert sorted((rows[-1].issue_numbers or "").split(",")) == sorted(numbers)
    # The two sheets are told apart: copy 1's front with copy 2's back is rejected.
    swapped = await net.verify(mixed_sheet(done.printed[0], done.printed[1]))
    assert swapped.verdict == verification_pb2.VERDICT_REJECTED


def mixed_sheet(front_from: Path, back_from: Path) -> bytes:
    """A one-sheet PDF: the first page (front) of one file, the second (back) of another."""
    with pikepdf.open(front_from) as fronts, pikepdf.open(back_from) as backs:
        out = pikepdf.new()
        out.pages.append(fronts.pages[0])
        out.pages.append(backs.pages[1])
        buffer = io.BytesIO()
        out.save(buffer)
        return buffer.getvalue()


async def test_issue_records_reconcile_with_the_ledger(net: Network, tmp_path: Path) -> None:
    rig = await at_menu(net, tmp_path)
    await issue_and_verify(net, rig, Choice(RR, residence(K.HOUSEHOLD_SCOPE_SELF)))
    assert await reconcile(net, KOFU) >= 1
    assert await reconcile(net, CHIYODA) == 0  # 次郎's registers are Kofu's


@pytest.mark.parametrize("store_backend", [pytest.param("postgresql",
                                                        marks=pytest.mark.postgres)])
async def test_main_flow_on_postgresql(new_store_url: Callable[[], str],
                                       tmp_path: Path) -> None:
    async with contextlib.AsyncExitStack() as stack:
        urls: list[str] = []

        def pg_url(_name: str) -> str:
            urls.append(new_store_url())
            return urls[-1]

        pg = await start_network(tmp_path, pg_url, stack)
        assert len(urls) == 3 and all(u.startswith("postgresql://") for u in urls)
        rig = await at_menu(pg, tmp_path)
        await issue_and_verify(pg, rig, Choice(RR, residence(
            K.HOUSEHOLD_SCOPE_WHOLE_HOUSEHOLD, show_household_head=True), copies=2))
        assert last_subjects(pg) == 3
        assert await reconcile(pg, KOFU) == 1
