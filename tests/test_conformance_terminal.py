"""The terminal role of the suite against the reference terminal's driver (it passes) and against
broken variants of it built here (it fails, naming the right requirement): a terminal that
retries a PIN by itself, one that prints before payment, one that does not refund a jam.

The reference driver runs in this process in test mode, its journal and spool in tmp_path,
pointed at the port the suite's fake centre will listen on (reserved first)."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

from conformance.checks import load_checks
from conformance.checks.terminal.cards import CardFactory
from conformance.cli import main as cli_main
from conformance.engine import run_checks
from conformance.events import CheckResult, Outcome
from conformance.fakes.centre import CentreTls, centre_state, running_centre
from conformance.harness import background_server
from conformance.session import RunOptions, build_context
from konbini.errors import parse_rpc_error
from konbini.kiosk.v1 import kiosk_pb2, kiosk_pb2_grpc
from konbini.pki import PkiDir, pki_init
from konbini.pki.mtls import channel_credentials, server_credentials
from konbini.server import (
    ServerOptions,
    ServiceBinding,
    contract_authorization,
    create_server,
    drain,
    reserve_port,
    start,
)
from konbini.testing.v1 import testing_pb2_grpc
from terminal.centre import CentreEndpoint, GrpcCentre
from terminal.driver import SERVICE, TerminalDriver
from terminal.flow import Choice, Kiosk, Screen, ScreenId
from terminal.journal import Journal
from terminal.payment import SimulatedCashDevice
from terminal.printer import ScriptedPrinter, SpoolPrinter


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PkiDir:
    path = tmp_path_factory.mktemp("cf-terminal-pki")
    pki_init(path, now=dt.datetime.now(dt.UTC))
    return PkiDir(path)


# -- broken terminals ----------------------------------------------------------------------
class AutoRetryKiosk(Kiosk):
    """Defect: after PIN_WRONG it sends the same PIN to the card again by itself."""

    def enter_pin(self, pin: str) -> Screen:
        screen = super().enter_pin(pin)
        if screen.reason == "PIN_WRONG":
            screen = super().enter_pin(pin)
        return screen


class PrintEarlyKiosk(Kiosk):
    """Defect: prints the documents as soon as they arrive, before the fee is paid."""

    def choose(self, choice: Choice) -> Screen:
        screen = super().choose(choice)
        txn = self._session.txn if self._session is not None else None
        if screen.id is ScreenId.PAYMENT and txn is not None:
            self._printer.print_job(f"{txn.job_id}-early", txn.documents)
        return screen


class LateKiosk(Kiosk):
    """Defect: trusts the reservation an hour past its expiry (prints expired documents)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, expiry_margin=-dt.timedelta(hours=1), **kwargs)


class FreshIdCentre(GrpcCentre):
    """Defect: retries a failed call under a new request_id."""

    def _call(self, name: str, method: Callable[..., Any], request: Any) -> Any:
        try:
            return method(request, timeout=10)
        except grpc.RpcError:
            retry = type(request)()
            retry.CopyFrom(request)
            retry.request_id = secrets.token_urlsafe(8)
            return super()._call(name, method, retry)


class CrashingKiosk(Kiosk):
    """Defect: the cash drawer code raises on any payment (an unexpected exception)."""

    def pay(self, yen: int) -> Screen:
        raise ValueError(f"cash drawer refused {yen}")


class NoRefundCash(SimulatedCashDevice):
    """Defect: the refund never pays anything back."""

    def refund(self, yen: int) -> None:
        self.events.append(("refund-lost", yen))


# -- running a terminal under test ---------------------------------------------------------
@dataclass(frozen=True)
class TerminalUnderTest:
    driver_port: int
    centre_port: int


@contextlib.contextmanager
def terminal(pki: PkiDir, tmp: Path, kiosk_class: type[Kiosk] = Kiosk,
             cash: SimulatedCashDevice | None = None,
             centre_class: type[GrpcCentre] = GrpcCentre,
             max_message_bytes: int | None = None) -> Iterator[TerminalUnderTest]:
    """A reference-built terminal driver (with ``kiosk_class``) whose centre is the port the
    suite's fake centre will take."""
    reserved, centre_port = reserve_port("127.0.0.1", 0)
    cards = tmp / "cards"
    cards.mkdir(parents=True, exist_ok=True)
    centre = centre_class.connect(
        CentreEndpoint(f"127.0.0.1:{centre_port}", pki, "seven", "T0001"))
    journal = Journal.open(tmp / "journal.db")
    money = cash or SimulatedCashDevice()
    printer = ScriptedPrinter(SpoolPrinter(tmp / "spool"))
    kiosk = kiosk_class(centre, money, printer, journal)
    driver = TerminalDriver(kiosk, printer, money, journal, cards)
    # The centre's server certificate stands in for the terminal's (it names localhost).
    cert, key = pki.centre_server.read()
    creds = server_credentials(cert, key, pki.network_ca_cert.read_bytes())

    limits = {} if max_message_bytes is None else {"max_message_bytes": max_message_bytes}

    @contextlib.asynccontextmanager
    async def serving() -> AsyncIterator[int]:
        server, port, health = create_server(
            [ServiceBinding(testing_pb2_grpc.add_TerminalDriverServiceServicer_to_server,
                            driver, SERVICE)],
            ServerOptions(credentials=creds, test_mode=True,
                          interceptors=(contract_authorization(),), **limits))
        await start(server, health, [SERVICE])
        try:
            yield port
        finally:
            await drain(server, health, grace=0.5)

    try:
        with background_server(serving) as driver_port:
            yield TerminalUnderTest(driver_port, centre_port)
    finally:
        reserved.close()
        centre.close()
        journal.close()


def run_suite(pki: PkiDir, under_test: TerminalUnderTest,
              names: tuple[str, ...] = ()) -> dict[str, CheckResult]:
    opts = RunOptions(role="terminal", target=f"127.0.0.1:{under_test.driver_port}",
                      pki=pki.root, seed=11,
                      extra={"centre_listen": f"127.0.0.1:{under_test.centre_port}"})
    ctx, wire = build_context(opts)
    try:
        checks = [c for c in load_checks("terminal") if not names or c.name in names]
        results = run_checks(checks, ctx, [])
    finally:
        wire.close()
        ctx.close()
    return {r.name: r for r in results}


def _failed_on(result: CheckResult, requirement: str) -> bool:
    return (result.outcome is Outcome.FAIL and result.counterexample is not None
            and result.counterexample.requirement == requirement)


# -- the tests -----------------------------------------------------------------------------
def test_reference_terminal_passes_every_check(pki: PkiDir, tmp_path: Path) -> None:
    with terminal(pki, tmp_path) as under_test:
        results = run_suite(pki, under_test)
    assert len(results) == len(load_checks("terminal"))
    bad = {n: f"{r.outcome.name}: {r.message}" for n, r in results.items()
           if r.outcome is not Outcome.PASS}
    assert bad == {}


@pytest.mark.parametrize(
    ("variant", "names", "requirement"),
    [
        ("auto_retry", ("MUST.terminal.pin.no_auto_retry", "MUST.terminal.pin.tries_shown"),
         "PIN-NO-AUTO-RETRY"),
        ("print_early", ("MUST.terminal.fees.paid_before_print",), "FEE-PAID-BEFORE-PRINT"),
        ("no_refund", ("MUST.terminal.fees.refund_on_jam",), "FEE-REFUND-ON-FAILURE"),
        ("late", ("MUST.terminal.sessions.expired_reservation",), "ISSUE-EXPIRY"),
        ("fresh_id", ("MUST.terminal.once.retry_same_request",), "ONCE-REQUEST-ID"),
    ],
)
def test_broken_terminal_fails_on_its_requirement(
    pki: PkiDir, tmp_path: Path, variant: str, names: tuple[str, ...], requirement: str
) -> None:
    kiosk_class = {"auto_retry": AutoRetryKiosk, "print_early": PrintEarlyKiosk,
                   "late": LateKiosk}.get(variant, Kiosk)
    cash = NoRefundCash() if variant == "no_refund" else None
    centre_class = FreshIdCentre if variant == "fresh_id" else GrpcCentre
    with terminal(pki, tmp_path, kiosk_class, cash, centre_class) as under_test:
        results = run_suite(pki, under_test, names)
    for name in names:
        result = results[name]
        assert _failed_on(result, requirement), (name, result.outcome, result.message,
                                                  result.counterexample)


@pytest.mark.parametrize(
    ("variant", "name", "requirement"),
    [
        ("crash", "MUST.terminal.input.junk_never_crashes", "INPUT-NO-CRASH"),
        ("no_size_limit", "MUST.terminal.limits.message_size", "LIMIT-SIZE"),
    ],
)
def test_fragile_terminal_fails_on_its_requirement(
    pki: PkiDir, tmp_path: Path, variant: str, name: str, requirement: str
) -> None:
    kiosk_class = CrashingKiosk if variant == "crash" else Kiosk
    # Far above the suite's 64 MiB probe: the driver then accepts anything.
    limit = 256 * 1024 * 1024 if variant == "no_size_limit" else None
    with terminal(pki, tmp_path, kiosk_class, max_message_bytes=limit) as under_test:
        result = run_suite(pki, under_test, (name,))[name]
    assert _failed_on(result, requirement), (result.outcome, result.message,
                                              result.counterexample)


def test_cli_runs_the_terminal_role_and_stops_its_centre(pki: PkiDir, tmp_path: Path) -> None:
    report = tmp_path / "terminal.json"
    with terminal(pki, tmp_path) as under_test:
        listen = f"127.0.0.1:{under_test.centre_port}"
        args = ["run", "--role", "terminal", "--target", f"127.0.0.1:{under_test.driver_port}",
                "--pki", str(pki.root), "--centre-listen", listen, "--seed", "3",
                "--only", "PIN-LOCKED", "ELIG-PIN-LESS", "--report-json", str(report)]
        assert cli_main(args) == 0
        # The fake centre was stopped: the same address can be served again at once.
        assert cli_main(args) == 0
    data = json.loads(report.read_text(encoding="utf-8"))
    assert "MUST.terminal.pin.locked" in json.dumps(data)


def test_fake_centre_verifies_the_card_signature_over_the_exact_intent(pki: PkiDir) -> None:
    now = dt.datetime.now(dt.UTC)
    cards = CardFactory(now, seed=1)
    state = centre_state(cards.ca.certificate, cards.crl, fiscal_year=now.year - 1)
    card = cards.card()
    state.bindings[card.serial or 0] = "192015"
    cert, key = pki.centre_server.read()
    tls = CentreTls(cert, key, pki.network_ca_cert.read_bytes())
    key_obj = serialization.load_der_private_key(card.spec.private_key_pkcs8_der, None)
    with running_centre(state, "127.0.0.1:0", tls) as centre:
        tcert, tkey = pki.terminal_client("seven", "T0001").read()
        channel = grpc.secure_channel(
            f"127.0.0.1:{centre.port}",
            channel_credentials(pki.network_ca_cert.read_bytes(), tcert, tkey))
        stub = kiosk_pb2_grpc.KioskServiceStub(channel)
        session = stub.CreateSession(kiosk_pb2.CreateSessionRequest(request_id="s1"))
        intent = kiosk_pb2.AuthIntent(session_id=session.session_id,
                                      challenge=session.challenge).SerializeToString()
        signature = key_obj.sign(intent, padding.PKCS1v15(), hashes.SHA256())  # type: ignore[union-attr,call-arg]
        other = kiosk_pb2.AuthIntent(session_id=session.session_id, challenge=session.challenge)
        other.created_at.FromDatetime(now)  # the same session and challenge, other bytes
        with pytest.raises(grpc.RpcError) as err:
            stub.Authenticate(kiosk_pb2.AuthenticateRequest(
                request_id="a1", session_id=session.session_id,
                auth_certificate_der=card.spec.auth_certificate_der,
                intent=other.SerializeToString(), signature=signature))
        assert parse_rpc_error(err.value).reason == "CARD_SIGNATURE_INVALID"
        ok = stub.Authenticate(kiosk_pb2.AuthenticateRequest(
            request_id="a2", session_id=session.session_id,
            auth_certificate_der=card.spec.auth_certificate_der, intent=intent,
            signature=signature))
        assert ok.residence_municipality_code.value == "192015"
        channel.close()
    assert state.rejected_signatures == ["Authenticate"]
    assert [c.method for c in state.calls] == ["CreateSession", "Authenticate", "Authenticate"]
