"""TerminalDriverService over loopback mTLS: the conformance suite's way of scripting this
terminal (card, PIN, choice, payment, printer jam, printed list), test mode only."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from cryptography.hazmat.primitives import serialization
from test_terminal_support import KOFU, RESIDENCE, FakeState, ServerThread, start_fake_centre

from konbini.common.v1 import types_pb2
from konbini.contracts import reason_enum_value
from konbini.errors import parse_rpc_error
from konbini.pki import PkiDir, pki_init
from konbini.pki.mtls import channel_credentials, server_credentials
from konbini.pki.x509util import new_rsa_key
from konbini.server import ServerOptions, contract_authorization
from konbini.testing.v1 import testing_pb2, testing_pb2_grpc
from terminal.centre import CentreEndpoint
from terminal.driver import DriverConfig, build_driver, driver_bindings

S = testing_pb2


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PkiDir:
    root = tmp_path_factory.mktemp("pki")
    pki_init(root)
    return PkiDir(root)


@dataclass
class DriverRig:
    state: FakeState
    stub: testing_pb2_grpc.TerminalDriverServiceStub
    fixtures: testing_pb2_grpc.FixtureServiceStub
    port: int
    n: int = 0

    def rid(self) -> str:
        self.n += 1
        return f"r{self.n}"


def _channel(pki: PkiDir, port: int, identity: str) -> grpc.Channel:
    pair = pki.conformance_client if identity == "conformance" else \
        pki.terminal_client("seven", "T0001")
    cert, key = pair.read()
    creds = channel_credentials(pki.network_ca_cert.read_bytes(), cert, key)
    return grpc.secure_channel(f"127.0.0.1:{port}", creds)


def _driver_server(pki: PkiDir, centre_port: int, tmp: Path, *, test_mode: bool
                   ) -> tuple[ServerThread, object]:
    config = DriverConfig(CentreEndpoint(f"127.0.0.1:{centre_port}", pki, "seven", "T0001"),
                          journal=tmp / "journal.db", spool=tmp / "spool")
    cards = tmp / "cards"
    cards.mkdir(exist_ok=True)
    driver, journal, centre = build_driver(config, cards)
    # The centre's server certificate stands in for the terminal's (it names localhost).
    cert, key = pki.centre_server.read()
    creds = server_credentials(cert, key, pki.network_ca_cert.read_bytes())
    thread = ServerThread(
        driver_bindings(driver),
        ServerOptions(credentials=creds, test_mode=test_mode,
                      interceptors=(contract_authorization(),)))
    thread.start()
    return thread, (journal, centre)


@pytest.fixture
def rig(pki: PkiDir, tmp_path: Path) -> Iterator[DriverRig]:
    state = FakeState(pki)
    centre_thread = start_fake_centre(state)
    thread, (journal, centre) = _driver_server(pki, centre_thread.port, tmp_path,
                                               test_mode=True)
    channel = _channel(pki, thread.port, "conformance")
    yield DriverRig(state, testing_pb2_grpc.TerminalDriverServiceStub(channel),
                    testing_pb2_grpc.FixtureServiceStub(channel), thread.port)
    channel.close()
    thread.stop()
    journal.close()  # type: ignore[attr-defined]
    centre.close()  # type: ignore[attr-defined]
    centre_thread.stop()


def _spec(pki: PkiDir, state: FakeState, *, tries: int = 3) -> S.SoftCardSpec:
    ca = pki.jpki_ca()
    key = new_rsa_key()
    cert = ca.issue_at(dt.datetime.now(dt.UTC), key.public_key())
    state.bindings[cert.serial_number] = KOFU
    return S.SoftCardSpec(
        auth_certificate_der=cert.public_bytes(serialization.Encoding.DER),
        auth_ca_certificate_der=ca.certificate.public_bytes(serialization.Encoding.DER),
        private_key_pkcs8_der=key.private_bytes(serialization.Encoding.DER,
                                                serialization.PrivateFormat.PKCS8,
                                                serialization.NoEncryption()),
        pin="2468", pin_tries_left=tries)


def _choose(rig: DriverRig) -> S.Screen:
    return rig.stub.Choose(S.ChooseRequest(
        request_id=rig.rid(), kind=RESIDENCE, copies=1,
        options=types_pb2.CertificateOptions(residence_record=types_pb2.ResidenceRecordOptions(
            scope=types_pb2.HOUSEHOLD_SCOPE_SELF)))).screen


def test_driver_walks_pin_jam_refund_and_issuance(pki: PkiDir, rig: DriverRig) -> None:
    screen = rig.stub.InsertCard(S.InsertCardRequest(request_id=rig.rid(),
                                                     card=_spec(pki, rig.state))).screen
    assert screen.id == S.SCREEN_ID_ENTER_PIN and screen.pin_tries_left == 3
    bad = rig.stub.EnterPin(S.EnterPinRequest(request_id=rig.rid(), pin="12a4")).screen
    assert bad.reason == reason_enum_value("PIN_FORMAT_INVALID") and bad.pin_tries_left == 3
    wrong = rig.stub.EnterPin(S.EnterPinRequest(request_id=rig.rid(), pin="1111")).screen
    assert wrong.id == S.SCREEN_ID_ENTER_PIN and wrong.pin_tries_left == 2
    assert wrong.reason == reason_enum_value("PIN_WRONG")
    assert wrong.message == "暗証番号が違います。"
    assert rig.stub.GetScreen(S.GetScreenRequest()).screen.pin_tries_left == 2
    menu = rig.stub.EnterPin(S.EnterPinRequest(request_id=rig.rid(), pin="2468")).screen
    assert menu.id == S.SCREEN_ID_MENU and menu.menu[0].fee.yen == 200

    assert _choose(rig).fee.yen == 200
    rig.stub.SetPrinter(S.SetPrinterRequest(request_id=rig.rid(),
                                            behaviour=S.PRINTER_BEHAVIOUR_JAM))
    jam = rig.stub.Pay(S.PayRequest(request_id=rig.rid(),
                                    amount=types_pb2.Money(yen=200))).screen
    assert jam.id == S.SCREEN_ID_REFUSED and jam.returned.yen == 200
    printed = rig.stub.ListPrinted(S.ListPrintedRequest())
    assert list(printed.jobs) == [] and printed.refunded.yen == 200

    rig.stub.Cancel(S.CancelRequest(request_id=rig.rid()))
    assert _choose(rig).id == S.SCREEN_ID_PAYMENT
    pay = S.PayRequest(request_id=rig.rid(), amount=types_pb2.Money(yen=500))
    done = rig.stub.Pay(pay).screen
    assert done.id == S.SCREEN_ID_DONE and (done.fee.yen, done.returned.yen) == (200, 300)
    assert rig.stub.Pay(pay).screen == done  # a retried Pay is answered, not paid again
    [job] = rig.stub.ListPrinted(S.ListPrintedRequest()).jobs
    assert job.charged.yen == 200 and job.documents[0].pdf.startswith(b"%PDF-")
    states = sorted(i.state for i in rig.state.issuances.values())
    assert states == ["CANCELLED", "COMMITTED"]


def test_driver_card_with_no_tries_left_is_locked(pki: PkiDir, rig: DriverRig) -> None:
    screen = rig.stub.InsertCard(S.InsertCardRequest(
        request_id=rig.rid(), card=_spec(pki, rig.state, tries=0))).screen
    assert screen.id == S.SCREEN_ID_REFUSED and screen.reason == reason_enum_value("PIN_LOCKED")


def test_driver_refuses_other_roles_and_bad_cards(pki: PkiDir, rig: DriverRig) -> None:
    terminal = testing_pb2_grpc.TerminalDriverServiceStub(_channel(pki, rig.port, "terminal"))
    with pytest.raises(grpc.RpcError) as err:
        terminal.GetScreen(S.GetScreenRequest())
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    spec = _spec(pki, rig.state)
    spec.pin = "12"
    with pytest.raises(grpc.RpcError) as err:
        rig.stub.InsertCard(S.InsertCardRequest(request_id=rig.rid(), card=spec))
    parsed = parse_rpc_error(err.value)
    assert parsed.reason == "FIELD_INVALID" and parsed.violations[0].field == "card.pin"


def test_driver_outside_test_mode_is_disabled(pki: PkiDir, tmp_path: Path) -> None:
    state = FakeState(pki)
    centre_thread = start_fake_centre(state)
    thread, (journal, centre) = _driver_server(pki, centre_thread.port, tmp_path,
                                               test_mode=False)
    try:
        stub = testing_pb2_grpc.TerminalDriverServiceStub(
            _channel(pki, thread.port, "conformance"))
        with pytest.raises(grpc.RpcError) as err:
            stub.GetScreen(S.GetScreenRequest())
        assert parse_rpc_error(err.value).reason == "TEST_MODE_DISABLED"
    finally:
        thread.stop()
        journal.close()  # type: ignore[attr-defined]
        centre.close()  # type: ignore[attr-defined]
        centre_thread.stop()


def _to_menu(pki: PkiDir, rig: DriverRig) -> None:
    rig.stub.InsertCard(S.InsertCardRequest(request_id=rig.rid(), card=_spec(pki, rig.state)))
    menu = rig.stub.EnterPin(S.EnterPinRequest(request_id=rig.rid(), pin="2468")).screen
    assert menu.id == S.SCREEN_ID_MENU


def test_card_removed_during_payment_reports_the_money_returned(pki: PkiDir,
                                                                rig: DriverRig) -> None:
    _to_menu(pki, rig)
    assert _choose(rig).id == S.SCREEN_ID_PAYMENT
    paid = rig.stub.Pay(S.PayRequest(request_id=rig.rid(),
                                     amount=types_pb2.Money(yen=100))).screen
    assert paid.id == S.SCREEN_ID_PAYMENT and paid.paid.yen == 100
    start = rig.stub.Cancel(S.CancelRequest(request_id=rig.rid(), remove_card=True)).screen
    assert start.id == S.SCREEN_ID_INSERT_CARD and start.returned.yen == 100
    [issuance] = rig.state.issuances.values()
    assert issuance.state == "CANCELLED"


def test_reset_clears_the_printed_list_and_the_remembered_request_ids(pki: PkiDir,
                                                                      rig: DriverRig) -> None:
    _to_menu(pki, rig)
    _choose(rig)
    pay = S.PayRequest(request_id="pay-1", amount=types_pb2.Money(yen=200))
    assert rig.stub.Pay(pay).screen.id == S.SCREEN_ID_DONE
    assert len(rig.stub.ListPrinted(S.ListPrintedRequest()).jobs) == 1
    other = S.PayRequest(request_id="pay-1", amount=types_pb2.Money(yen=500))
    with pytest.raises(grpc.RpcError) as err:
        rig.stub.Pay(other)
    assert parse_rpc_error(err.value).reason == "REQUEST_ID_REUSED"

    rig.fixtures.Reset(S.ResetRequest(request_id=rig.rid()))
    printed = rig.stub.ListPrinted(S.ListPrintedRequest())
    assert list(printed.jobs) == [] and printed.refunded.yen == 0
    assert rig.stub.GetScreen(S.GetScreenRequest()).screen.id == S.SCREEN_ID_INSERT_CARD
    # "pay-1" is forgotten: the same id with other content is a new call (refused by the flow,
    # as nothing is being paid for now), not REQUEST_ID_REUSED.
    with pytest.raises(grpc.RpcError) as err:
        rig.stub.Pay(other)
    assert parse_rpc_error(err.value).reason == "FIELD_INVALID"


def test_reset_during_a_payment_returns_the_money(pki: PkiDir, rig: DriverRig) -> None:
    _to_menu(pki, rig)
    _choose(rig)
    rig.stub.Pay(S.PayRequest(request_id=rig.rid(), amount=types_pb2.Money(yen=100)))
    rig.fixtures.Reset(S.ResetRequest(request_id=rig.rid()))
    [issuance] = rig.state.issuances.values()
    assert issuance.state == "CANCELLED"
    assert rig.state.sessions == {}  # the centre session was ended too


def test_fixture_calls_a_terminal_has_no_use_for_are_unimplemented(rig: DriverRig) -> None:
    with pytest.raises(grpc.RpcError) as err:
        rig.fixtures.SetClock(S.SetClockRequest(request_id=rig.rid()))
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
    with pytest.raises(grpc.RpcError) as err:
        rig.fixtures.LoadDataset(S.LoadDatasetRequest(request_id=rig.rid()))
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
