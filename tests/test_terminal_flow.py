"""The kiosk flow against a faithful fake centre on loopback mTLS: issuance, PIN rules,
refusals, payment, print failure, expiry, retries, the journal and recovery."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from test_terminal_support import (
    CHIYODA,
    CHIYODA_REGISTER,
    INCOME_TAX,
    KOFU,
    REGISTER_FULL,
    REGISTER_INDIVIDUAL,
    RESIDENCE,
    CountingReader,
    FakeState,
    ServerThread,
    make_card,
    start_fake_centre,
)

from konbini.card import SoftCardReader
from konbini.common.v1 import types_pb2
from konbini.contracts import reasons
from konbini.pki import PkiDir, pki_init
from terminal.centre import CentreEndpoint, GrpcCentre, RetryPolicy
from terminal.flow import Choice, Kiosk, ScreenId
from terminal.journal import Journal
from terminal.payment import SimulatedCashDevice
from terminal.printer import ScriptedPrinter, SpoolPrinter


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PkiDir:
    root = tmp_path_factory.mktemp("pki")
    pki_init(root)
    return PkiDir(root)


@dataclass
class Rig:
    """A kiosk wired to the fake centre, with its devices and journal."""

    state: FakeState
    kiosk: Kiosk
    cash: SimulatedCashDevice
    printer: ScriptedPrinter
    journal: Journal
    centre: GrpcCentre
    spool: Path
    tmp: Path
    port: int

    def card(self, name: str, pin: str | None = "1234", *, bind: bool = True
             ) -> tuple[Path, int | None]:
        path, serial = make_card(self.state.pki, self.tmp, name, pin)
        if bind and serial is not None:
            self.state.bindings[serial] = KOFU
        return path, serial

    def new_kiosk(self) -> Kiosk:
        """A kiosk as after a restart: same journal file, new memory."""
        self.journal.close()
        self.journal = Journal.open(self.tmp / "journal.db")
        self.cash = SimulatedCashDevice()
        self.printer = ScriptedPrinter(SpoolPrinter(self.spool))
        self.kiosk = Kiosk(self.centre, self.cash, self.printer, self.journal)
        return self.kiosk


def _centre(pki: PkiDir, port: int, attempts: int = 4) -> GrpcCentre:
    endpoint = CentreEndpoint(f"127.0.0.1:{port}", pki, "seven", "T0001")
    return GrpcCentre.connect(endpoint, policy=RetryPolicy(attempts=attempts,
                                                           first_backoff_s=0.01))


@pytest.fixture
def rig(pki: PkiDir, tmp_path: Path) -> Iterator[Rig]:
    state = FakeState(pki)
    server: ServerThread = start_fake_centre(state)
    centre = _centre(pki, server.port)
    journal = Journal.open(tmp_path / "journal.db")
    cash = SimulatedCashDevice()
    spool = tmp_path / "spool"
    printer = ScriptedPrinter(SpoolPrinter(spool))
    kiosk = Kiosk(centre, cash, printer, journal)
    r = Rig(state, kiosk, cash, printer, journal, centre, spool, tmp_path, server.port)
    yield r
    r.journal.close()
    centre.close()
    server.stop()


def _residence(copies: int = 1) -> Choice:
    return Choice(RESIDENCE, types_pb2.CertificateOptions(
        residence_record=types_pb2.ResidenceRecordOptions(
            scope=types_pb2.HOUSEHOLD_SCOPE_SELF, show_household_head=True)), copies)


def _to_menu(rig: Rig, name: str = "alice") -> tuple[CountingReader, int | None]:
    path, serial = rig.card(name)
    reader = CountingReader(path)
    assert rig.kiosk.insert_card(reader).id is ScreenId.ENTER_PIN
    screen = rig.kiosk.enter_pin("1234")
    assert screen.id is ScreenId.MENU, screen
    return reader, serial


def test_successful_issuance_takes_fee_prints_and_commits(rig: Rig) -> None:
    _to_menu(rig)
    menu = rig.kiosk.screen.menu
    assert next(e.kind for e in menu) == RESIDENCE and menu[0].fee.yen == 200
    screen = rig.kiosk.choose(_residence(copies=2))
    assert screen.id is ScreenId.PAYMENT and screen.fee == 400
    assert rig.kiosk.pay(100).paid == 100  # not enough yet: still on PAYMENT
    assert rig.printer.attempts == 0
    done = rig.kiosk.pay(500)
    assert done.id is ScreenId.DONE
    assert (done.fee, done.paid, done.returned) == (400, 600, 200)
    [issuance] = rig.state.issuances.values()
    assert (issuance.state, issuance.charged, issuance.outcome) == ("COMMITTED", 400, "PRINTED")
    assert rig.cash.kept_total == 400
    # Two copies in the spool, named by an opaque job id only.
    files = sorted(p.name for p in rig.spool.glob("*.pdf"))
    assert len(files) == 2 and all(f.startswith(done.printed[0].name[:-7]) for f in files)
    assert all(p.read_bytes().startswith(b"%PDF-") for p in done.printed)
    [txn] = rig.journal.all()
    assert (txn.state, txn.kept, txn.refunded, txn.centre_state) == ("DONE", 400, 0,
                                                                     "COMMITTED")
    assert txn.issuance_id == issuance.issuance_id


def test_wrong_pin_shows_tries_left_and_is_never_retried(rig: Rig) -> None:
    path, _ = rig.card("bob")
    reader = CountingReader(path)
    assert rig.kiosk.insert_card(reader).pin_tries_left == 3
    screen = rig.kiosk.enter_pin("9999")
    assert screen.id is ScreenId.ENTER_PIN and screen.pin_tries_left == 2
    assert screen.reason == "PIN_WRONG" and screen.message_ja == reasons()["PIN_WRONG"].message_ja
    assert reader.pin_verifies == [b"9999"]  # exactly one VERIFY, with what was typed
    assert rig.kiosk.screen.id is ScreenId.ENTER_PIN
    assert rig.kiosk.enter_pin("1234").id is ScreenId.MENU
    assert reader.pin_verifies == [b"9999", b"1234"]


@pytest.mark.parametrize("pin", ["123", "12345", "12a4", "１２３４", ""])
def test_pin_format_is_refused_before_the_card(rig: Rig, pin: str) -> None:
    path, _ = rig.card("carol")
    reader = CountingReader(path)
    rig.kiosk.insert_card(reader)
    screen = rig.kiosk.enter_pin(pin)
    assert screen.id is ScreenId.ENTER_PIN and screen.reason == "PIN_FORMAT_INVALID"
    assert screen.pin_tries_left == 3
    assert reader.pin_verifies == []
    assert rig.state.calls == []  # nothing sent to the centre either


def test_locked_card_stops_and_is_refused_on_insertion(rig: Rig) -> None:
    path, _ = rig.card("dave")
    reader = CountingReader(path)
    rig.kiosk.insert_card(reader)
    assert rig.kiosk.enter_pin("0000").pin_tries_left == 2
    assert rig.kiosk.enter_pin("0001").pin_tries_left == 1
    locked = rig.kiosk.enter_pin("0002")
    assert locked.id is ScreenId.REFUSED and locked.reason == "PIN_LOCKED"
    assert len(reader.pin_verifies) == 3
    again = CountingReader(path)
    assert rig.kiosk.insert_card(again).reason == "PIN_LOCKED"
    assert again.pin_verifies == []
    assert "CreateSession" not in rig.state.calls


def test_pin_less_card_is_refused(rig: Rig) -> None:
    path, serial = rig.card("face-only", pin=None)
    assert serial is None
    screen = rig.kiosk.insert_card(SoftCardReader(path))
    assert screen.id is ScreenId.REFUSED and screen.reason == "CARD_WITHOUT_PIN"
    assert screen.message_en == reasons()["CARD_WITHOUT_PIN"].message_en


def test_revoked_card_is_refused_in_plain_words(rig: Rig) -> None:
    path, serial = rig.card("erin")
    ca = rig.state.pki.jpki_ca()
    now = dt.datetime.now(dt.UTC)
    assert serial is not None
    ca.revoke_at(now - dt.timedelta(minutes=1), serial)
    ca.publish_crl_at(now - dt.timedelta(seconds=30), dt.timedelta(days=1))
    rig.kiosk.insert_card(SoftCardReader(path))
    screen = rig.kiosk.enter_pin("1234")
    assert screen.id is ScreenId.REFUSED and screen.reason == "CARD_REVOKED"
    assert screen.message_ja == reasons()["CARD_REVOKED"].message_ja
    assert rig.journal.all() == []


def test_unbound_card_is_refused(rig: Rig) -> None:
    path, _ = rig.card("frank", bind=False)
    rig.kiosk.insert_card(SoftCardReader(path))
    assert rig.kiosk.enter_pin("1234").reason == "CARD_NOT_BOUND"


@pytest.mark.parametrize("reason", ["UNDER_15", "SUPPORT_MEASURE", "MOVED_OUT", "DECEASED"])
def test_eligibility_refusal_takes_no_money_and_prints_nothing(rig: Rig, reason: str) -> None:
    _, serial = _to_menu(rig)
    assert serial is not None
    rig.state.refusals[serial] = reason
    screen = rig.kiosk.choose(_residence())
    assert screen.id is ScreenId.REFUSED and screen.reason == reason
    assert (screen.message_ja, screen.message_en) == (reasons()[reason].message_ja,
                                                      reasons()[reason].message_en)
    assert rig.state.issuances == {} and rig.printer.attempts == 0 and rig.cash.events == []
    [txn] = rig.journal.all()
    assert txn.state == "DONE" and txn.issuance_id is None
    # The session goes on: cancel returns to the menu.
    assert rig.kiosk.cancel().id is ScreenId.MENU


def test_catalogue_refusals_are_local(rig: Rig) -> None:
    _to_menu(rig)
    assert rig.kiosk.choose(_residence(copies=4)).reason == "TOO_MANY_COPIES"
    rig.kiosk.cancel()
    tax = Choice(INCOME_TAX, types_pb2.CertificateOptions(
        income_tax=types_pb2.IncomeTaxOptions(fiscal_year=2019)))
    assert rig.kiosk.choose(tax).reason == "FISCAL_YEAR_NOT_OFFERED"
    rig.kiosk.cancel()
    number = Choice(RESIDENCE, types_pb2.CertificateOptions(
        residence_record=types_pb2.ResidenceRecordOptions(show_individual_number=True)))
    assert rig.kiosk.choose(number).reason == "OPTION_NOT_OFFERED"
    assert "RequestIssuance" not in rig.state.calls


def test_print_jam_cancels_and_refunds(rig: Rig) -> None:
    _to_menu(rig)
    rig.kiosk.choose(_residence())
    rig.printer.jam_next = True
    screen = rig.kiosk.pay(500)
    assert screen.id is ScreenId.REFUSED and screen.reason == "PRINT_FAILED"
    assert screen.returned == 500 and screen.message_ja.startswith("印刷できません")
    [issuance] = rig.state.issuances.values()
    assert (issuance.state, issuance.failure_cause, issuance.charged) == ("CANCELLED",
                                                                          "PRINTER", 0)
    assert rig.cash.kept_total == 0 and rig.cash.refunded_total == 200
    assert rig.printer.tray == [] and list(rig.spool.glob("*.pdf")) == []
    [txn] = rig.journal.all()
    assert (txn.state, txn.kept, txn.refunded) == ("DONE", 200, 200)


def test_expired_reservation_is_never_printed(rig: Rig) -> None:
    rig.state.reservation_ttl = dt.timedelta(seconds=3)  # inside the kiosk's 10 s margin
    _to_menu(rig)
    assert rig.kiosk.choose(_residence()).id is ScreenId.PAYMENT
    screen = rig.kiosk.pay(200)
    assert screen.id is ScreenId.REFUSED and screen.reason == "RESERVATION_EXPIRED"
    assert screen.returned == 200
    assert rig.printer.attempts == 0 and rig.cash.kept_total == 0
    [issuance] = rig.state.issuances.values()
    assert issuance.state == "CANCELLED" and issuance.charged == 0


def test_transient_failures_are_retried_with_the_same_request_id(rig: Rig) -> None:
    _to_menu(rig)
    rig.state.fail_next["RequestIssuance"] = 2
    rig.state.lose_response["RequestIssuance"] = 1  # the first answer is lost after the effect
    rig.state.lose_response["CompleteIssuance"] = 1
    assert rig.kiosk.choose(_residence()).id is ScreenId.PAYMENT
    assert rig.kiosk.pay(200).id is ScreenId.DONE
    assert len(rig.state.issuances) == 1  # the retries reached one issuance, not three
    [issuance] = rig.state.issuances.values()
    assert issuance.completions == 1 and issuance.state == "COMMITTED"
    assert rig.state.calls.count("RequestIssuance") == 4
    assert rig.state.calls.count("CompleteIssuance") == 2


def test_cancel_during_payment_returns_the_money(rig: Rig) -> None:
    _to_menu(rig)
    rig.kiosk.choose(_residence())
    rig.kiosk.pay(100)
    screen = rig.kiosk.cancel()
    assert screen.id is ScreenId.MENU and screen.returned == 100
    [issuance] = rig.state.issuances.values()
    assert (issuance.state, issuance.failure_cause) == ("CANCELLED", "USER_CANCELLED")
    assert rig.cash.kept_total == 0 and rig.printer.attempts == 0


def test_nothing_of_a_session_is_printed_for_the_next_user(rig: Rig) -> None:
    _to_menu(rig, "first")
    rig.kiosk.choose(_residence())
    rig.kiosk.pay(200)
    assert rig.kiosk.done().id is ScreenId.INSERT_CARD
    assert rig.kiosk.screen.menu == ()
    assert rig.kiosk._session is None
    _to_menu(rig, "second")
    rig.kiosk.choose(_residence())
    rig.kiosk.pay(200)
    first, second = rig.printer.tray
    assert first.pdfs != second.pdfs and first.job_id != second.job_id
    assert "EndSession" in rig.state.calls


class Crash(Exception):
    """Stands for the power going off at a hook point."""


def _crash_at(point: str):
    def hook(name: str) -> None:
        if name == point:
            raise Crash(name)
    return hook


def _crash(rig: Rig, point: str) -> None:
    rig.kiosk = Kiosk(rig.centre, rig.cash, rig.printer, rig.journal, pause_at=_crash_at(point))
    _to_menu(rig)
    rig.kiosk.choose(_residence())
    with pytest.raises(Crash):
        rig.kiosk.pay(300)


def test_recovery_after_payment_cancels_and_refunds(rig: Rig) -> None:
    _crash(rig, "after-payment")
    [open_txn] = rig.journal.unfinished()
    assert open_txn.state == "PAID" and open_txn.kept == 200
    kiosk = rig.new_kiosk()
    [result] = kiosk.recover()
    assert (result.centre_state, result.charged, result.refunded) == ("CANCELLED", 0, 200)
    [issuance] = rig.state.issuances.values()
    assert (issuance.state, issuance.failure_cause) == ("CANCELLED", "TERMINAL_RESTART")
    assert rig.cash.refunded_total == 200 and rig.journal.unfinished() == []
    assert kiosk.recover() == []  # settled once, never twice


def test_recovery_after_print_commits_and_keeps_the_charge(rig: Rig) -> None:
    _crash(rig, "after-print")
    kiosk = rig.new_kiosk()
    [result] = kiosk.recover()
    assert (result.centre_state, result.charged, result.refunded) == ("COMMITTED", 200, 0)
    [issuance] = rig.state.issuances.values()
    assert issuance.state == "COMMITTED" and rig.cash.refunded_total == 0


def test_recovery_of_a_print_that_was_cut_off(rig: Rig) -> None:
    _crash(rig, "after-payment")
    rig.journal.printing(rig.journal.unfinished()[0].txn_id)  # the crash hit mid-print
    kiosk = rig.new_kiosk()
    [result] = kiosk.recover()
    # The spool never finished the job, so it was not printed: cancel and refund.
    assert (result.centre_state, result.refunded) == ("CANCELLED", 200)


def test_lost_request_answer_is_found_and_cancelled(rig: Rig) -> None:
    rig.kiosk = Kiosk(_centre(rig.state.pki, rig.port, attempts=1), rig.cash, rig.printer,
                      rig.journal)
    _to_menu(rig)
    rig.state.lose_response["RequestIssuance"] = 1
    screen = rig.kiosk.choose(_residence())
    assert screen.id is ScreenId.REFUSED and screen.reason == "CENTRE_UNREACHABLE"
    [issuance] = rig.state.issuances.values()
    assert (issuance.state, issuance.failure_cause) == ("CANCELLED", "TERMINAL_RESTART")
    assert rig.journal.unfinished() == [] and rig.cash.events == []


def test_card_removed_during_payment_shows_the_money_returned(rig: Rig) -> None:
    _to_menu(rig)
    rig.kiosk.choose(_residence())
    rig.kiosk.pay(100)
    screen = rig.kiosk.cancel(remove_card=True)
    # The start screen says 100 yen came back (it said 0 before).
    assert screen.id is ScreenId.INSERT_CARD and screen.returned == 100
    assert rig.cash.returned_total == 100 and rig.cash.kept_total == 0
    [issuance] = rig.state.issuances.values()
    assert issuance.state == "CANCELLED"


def test_chosen_household_members_reach_the_centre(rig: Rig) -> None:
    _to_menu(rig)
    options = types_pb2.CertificateOptions(residence_record=types_pb2.ResidenceRecordOptions(
        scope=types_pb2.HOUSEHOLD_SCOPE_SELECTED_MEMBERS, member_refs=["p1", "p3"]))
    assert rig.kiosk.choose(Choice(RESIDENCE, options)).id is ScreenId.PAYMENT
    [issuance] = rig.state.issuances.values()
    assert list(issuance.options.residence_record.member_refs) == ["p1", "p3"]


@pytest.mark.parametrize(("refs", "reason"), [([], "FIELD_INVALID"),
                                              (["p1", "stranger"], "NOT_ENTITLED")])
def test_members_not_listed_are_refused_before_signing(rig: Rig, refs: list[str],
                                                       reason: str) -> None:
    _to_menu(rig)
    options = types_pb2.CertificateOptions(residence_record=types_pb2.ResidenceRecordOptions(
        scope=types_pb2.HOUSEHOLD_SCOPE_SELECTED_MEMBERS, member_refs=refs))
    screen = rig.kiosk.choose(Choice(RESIDENCE, options))
    assert screen.id is ScreenId.REFUSED and screen.reason == reason
    assert "RequestIssuance" not in rig.state.calls


def test_use_registration_approved_adds_the_register_kinds(rig: Rig) -> None:
    _to_menu(rig)
    assert all(e.municipality_code.value != CHIYODA for e in rig.kiosk.screen.menu)
    answer = rig.kiosk.register_use(*CHIYODA_REGISTER)
    assert answer.status == "APPROVED" and answer.reason is None
    screen = rig.kiosk.screen
    assert screen.id is ScreenId.MENU
    assert {e.kind for e in screen.menu if e.municipality_code.value == CHIYODA} == {
        REGISTER_FULL, REGISTER_INDIVIDUAL}
    options = types_pb2.CertificateOptions(
        family_register=types_pb2.FamilyRegisterOptions(member_refs=["m2"]))
    paying = rig.kiosk.choose(Choice(REGISTER_INDIVIDUAL, options, 1, CHIYODA))
    assert paying.id is ScreenId.PAYMENT and paying.fee == 450


def test_use_registration_rejected_pending_then_approved(rig: Rig) -> None:
    _to_menu(rig)
    code, domicile, _head = CHIYODA_REGISTER
    rejected = rig.kiosk.register_use(code, domicile, "別人 太郎")
    assert rejected.status == "REJECTED" and rig.kiosk.screen.id is ScreenId.MENU
    rig.state.hold_use_registrations = True
    pending = rig.kiosk.register_use(*CHIYODA_REGISTER)
    assert pending.status == "PENDING"
    assert all(e.municipality_code.value != CHIYODA for e in rig.kiosk.screen.menu)
    rig.state.use_registrations[pending.registration_id].status = "APPROVED"
    again = rig.kiosk.use_registration_status(pending.registration_id)
    assert again.status == "APPROVED"
    assert any(e.municipality_code.value == CHIYODA for e in rig.kiosk.screen.menu)


@pytest.mark.parametrize("typed", [("131015", "東京都千代田区千代田1番", "葛城 太郎"),
                                   ("131016", " ", "葛城 太郎"),
                                   ("131016", "東京都千代田区千代田1番", "")])
def test_use_registration_with_impossible_input_is_not_sent(rig: Rig,
                                                            typed: tuple[str, str, str]) -> None:
    _to_menu(rig)
    answer = rig.kiosk.register_use(*typed)
    assert (answer.status, answer.reason) == ("REFUSED", "FIELD_INVALID")
    assert rig.kiosk.screen.id is ScreenId.REFUSED
    assert "RegisterFamilyRegisterUse" not in rig.state.calls
    assert rig.kiosk.cancel().id is ScreenId.MENU  # back to the menu, session kept
