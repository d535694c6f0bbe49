"""TerminalDriverService: the conformance suite scripts this terminal as a resident would.

Test mode only (the server layer refuses every call with TEST_MODE_DISABLED otherwise, and
admits only the conformance role). The servicer translates wire messages to the same
:class:`~terminal.flow.Kiosk` the web kiosk and the CLI use; the rules stay in the flow.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from konbini.card import SoftCard, SoftCardReader
from konbini.card.apdu import select_aid, select_ef, valid_pin_format, verify
from konbini.card.constants import AUTH_PIN_TRIES, EF_AUTH_PIN
from konbini.common.v1 import types_pb2
from konbini.contracts import reasons
from konbini.errors import FieldViolation, KonbiniError, invalid
from konbini.pki.mtls import server_credentials
from konbini.server import (
    ServerOptions,
    ServiceBinding,
    contract_authorization,
    create_server,
    serve,
)
from konbini.testing.v1 import testing_pb2, testing_pb2_grpc
from terminal.centre import CentreEndpoint, GrpcCentre
from terminal.flow import Choice, FlowError, Kiosk, Screen
from terminal.journal import Journal
from terminal.payment import SimulatedCashDevice
from terminal.printer import ScriptedPrinter, SpoolPrinter
from terminal.recent import RecentAnswers

SERVICE = "konbini.testing.v1.TerminalDriverService"
FIXTURE_SERVICE = "konbini.testing.v1.FixtureService"


def screen_proto(screen: Screen) -> testing_pb2.Screen:
    """The flow's screen as the contract's Screen."""
    out = testing_pb2.Screen(
        id=screen.id.value, pin_tries_left=screen.pin_tries_left, message=screen.message_ja,
        menu=screen.menu, fee=types_pb2.Money(yen=screen.fee),
        paid=types_pb2.Money(yen=screen.paid), returned=types_pb2.Money(yen=screen.returned))
    if screen.reason in reasons():
        out.reason = reasons()[screen.reason].number
    return out


def write_soft_card(spec: testing_pb2.SoftCardSpec, path: Path) -> None:
    """Write the suite's card as a software card file, with its tries left."""
    if not spec.auth_certificate_der:
        SoftCard.create(path, auth_certificate_der=None,
                        auth_ca_certificate_der=spec.auth_ca_certificate_der, auth_key=None,
                        pin=None)
        return
    if not valid_pin_format(spec.pin):
        raise invalid([FieldViolation("card.pin", "exactly 4 digits")])
    if spec.pin_tries_left > AUTH_PIN_TRIES:
        raise invalid([FieldViolation("card.pin_tries_left", "0 to 3")])
    try:
        key = serialization.load_der_private_key(spec.private_key_pkcs8_der, password=None)
    except ValueError:
        raise invalid([FieldViolation("card.private_key_pkcs8_der", "not PKCS#8 DER")]) \
            from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise invalid([FieldViolation("card.private_key_pkcs8_der", "not an RSA key")])
    card = SoftCard.create(path, auth_certificate_der=spec.auth_certificate_der,
                           auth_ca_certificate_der=spec.auth_ca_certificate_der,
                           auth_key=key, pin=spec.pin)
    # Spend tries the way a card does: wrong VERIFYs, before the card is "inserted".
    wrong = f"{(int(spec.pin) + 1) % 10000:04d}".encode()
    card.transmit(select_aid())
    card.transmit(select_ef(EF_AUTH_PIN))
    for _ in range(AUTH_PIN_TRIES - spec.pin_tries_left):
        card.transmit(verify(wrong))
    card.close()


class TerminalDriver(testing_pb2_grpc.TerminalDriverServiceServicer):
    """The servicer: one kiosk, driven one call at a time."""

    def __init__(self, kiosk: Kiosk, printer: ScriptedPrinter, cash: SimulatedCashDevice,
                 journal: Journal, card_dir: Path, *, answers: RecentAnswers | None = None
                 ) -> None:
        self._kiosk = kiosk
        self._journal = journal
        self._printer = printer
        self._cash = cash
        self._card_dir = card_dir
        self._lock = asyncio.Lock()
        # Bounded (LRU and a time window, see terminal.recent): a driver runs for days.
        self.answers = answers or RecentAnswers()

    async def _once(self, request: Any, action: Callable[[], Any], response_type: type) -> Any:
        """Run ``action`` in a worker thread, once per request_id (mutating calls)."""
        fingerprint = request.SerializeToString(deterministic=True)
        async with self._lock:
            seen = self.answers.get(request.request_id)
            if seen is not None:
                if seen.fingerprint != fingerprint:
                    raise KonbiniError("REQUEST_ID_REUSED", "request id reused")
                return response_type.FromString(seen.response)
            try:
                response = await asyncio.to_thread(action)
            except FlowError as exc:
                raise invalid([FieldViolation("request_id", str(exc))]) from None
            self.answers.put(request.request_id, fingerprint, response.SerializeToString())
            return response

    async def reset(self, request: testing_pb2.ResetRequest) -> testing_pb2.ResetResponse:
        """FixtureService.Reset: the resident walks away (money in is returned, the centre
        session ends), the tray is emptied and every remembered request_id is forgotten."""
        def action() -> testing_pb2.ResetResponse:
            self._kiosk.cancel(remove_card=True)
            self._printer.tray.clear()
            self._printer.jam_next = False
            self._cash.refunded_total = 0
            for card in self._card_dir.glob("*.card"):
                card.unlink(missing_ok=True)
            self.answers.clear()
            return testing_pb2.ResetResponse()
        # Through _once, so a retried Reset is answered and not run again after new calls.
        return await self._once(request, action, testing_pb2.ResetResponse)

    async def InsertCard(self, request, context):
        def action() -> testing_pb2.InsertCardResponse:
            path = self._card_dir / f"{secrets.token_hex(8)}.card"
            write_soft_card(request.card, path)
            return testing_pb2.InsertCardResponse(
                screen=screen_proto(self._kiosk.insert_card(SoftCardReader(path))))
        return await self._once(request, action, testing_pb2.InsertCardResponse)

    async def EnterPin(self, request, context):
        return await self._once(request, lambda: testing_pb2.EnterPinResponse(
            screen=screen_proto(self._kiosk.enter_pin(request.pin))),
            testing_pb2.EnterPinResponse)

    async def Choose(self, request, context):
        choice = Choice(request.kind, request.options, request.copies or 1,
                        request.municipality_code.value)
        return await self._once(request, lambda: testing_pb2.ChooseResponse(
            screen=screen_proto(self._kiosk.choose(choice))), testing_pb2.ChooseResponse)

    async def Pay(self, request, context):
        if request.amount.yen <= 0:
            raise invalid([FieldViolation("amount.yen", "a positive amount")])
        return await self._once(request, lambda: testing_pb2.PayResponse(
            screen=screen_proto(self._kiosk.pay(request.amount.yen))), testing_pb2.PayResponse)

    async def SetPrinter(self, request, context):
        def action() -> testing_pb2.SetPrinterResponse:
            self._printer.jam_next = request.behaviour == testing_pb2.PRINTER_BEHAVIOUR_JAM
            return testing_pb2.SetPrinterResponse()
        return await self._once(request, action, testing_pb2.SetPrinterResponse)

    async def Cancel(self, request, context):
        return await self._once(request, lambda: testing_pb2.CancelResponse(
            screen=screen_proto(self._kiosk.cancel(remove_card=request.remove_card))),
            testing_pb2.CancelResponse)

    async def GetScreen(self, request, context):
        async with self._lock:
            return testing_pb2.GetScreenResponse(screen=screen_proto(self._kiosk.screen))

    async def ListPrinted(self, request, context):
        async with self._lock:
            response = testing_pb2.ListPrintedResponse(
                refunded=types_pb2.Money(yen=self._cash.refunded_total))
            for job in self._printer.tray:
                out = response.jobs.add()
                out.documents.extend(types_pb2.Document(pdf=pdf) for pdf in job.pdfs)
                out.printed_at.FromDatetime(job.printed_at)
                rec = await asyncio.to_thread(self._journal.by_job, job.job_id)
                out.charged.yen = rec.kept - rec.refunded if rec is not None else 0
            return response


class DriverFixtures(testing_pb2_grpc.FixtureServiceServicer):
    """FixtureService on the driver: Reset only. A terminal has no dataset and reads the
    centre's time, so LoadDataset and SetClock answer UNIMPLEMENTED (the generated base)."""

    def __init__(self, driver: TerminalDriver) -> None:
        self._driver = driver

    async def Reset(self, request, context):
        return await self._driver.reset(request)


def driver_bindings(driver: TerminalDriver) -> list[ServiceBinding]:
    """The services a driver server offers: TerminalDriverService and FixtureService."""
    return [ServiceBinding(testing_pb2_grpc.add_TerminalDriverServiceServicer_to_server,
                           driver, SERVICE),
            ServiceBinding(testing_pb2_grpc.add_FixtureServiceServicer_to_server,
                           DriverFixtures(driver), FIXTURE_SERVICE)]


@dataclass(frozen=True)
class DriverConfig:
    """How `konbini terminal driver` runs."""

    endpoint: CentreEndpoint  # the centre this terminal talks to
    listen: str = "127.0.0.1:0"
    journal: Path = Path("konbini-terminal-journal.db")
    spool: Path = Path("konbini-spool")
    # TLS of the driver service (client certificates: the conformance role); both or neither.
    server_cert: Path | None = None
    server_key: Path | None = None


def build_driver(config: DriverConfig, card_dir: Path) -> tuple[TerminalDriver, Journal,
                                                                GrpcCentre]:
    """The servicer with its kiosk, devices and journal (recovery already run)."""
    centre = GrpcCentre.connect(config.endpoint)
    journal = Journal.open(config.journal)
    cash = SimulatedCashDevice()
    printer = ScriptedPrinter(SpoolPrinter(config.spool))
    kiosk = Kiosk(centre, cash, printer, journal)
    kiosk.recover()
    return TerminalDriver(kiosk, printer, cash, journal, card_dir), journal, centre


async def serve_driver(config: DriverConfig, on_started: Callable[[int], None]) -> int:
    """Serve until SIGTERM/SIGINT (test mode, conformance callers only)."""
    insecure = config.endpoint.insecure_dev and config.server_cert is None
    credentials: grpc.ServerCredentials | None = None
    if not insecure:
        if config.server_cert is None or config.server_key is None or \
                config.endpoint.pki is None:
            raise SystemExit("--server-cert and --server-key (and --pki) are required")
        credentials = server_credentials(config.server_cert.read_bytes(),
                                         config.server_key.read_bytes(),
                                         config.endpoint.pki.network_ca_cert.read_bytes())
    with tempfile.TemporaryDirectory(prefix="konbini-driver-cards-") as cards:
        driver, journal, centre = await asyncio.to_thread(build_driver, config, Path(cards))
        try:
            server, port, health = create_server(
                driver_bindings(driver),
                ServerOptions(bind=config.listen, credentials=credentials,
                              insecure_dev=insecure, test_mode=True,
                              interceptors=(contract_authorization(insecure_dev=insecure),)))
            await serve(server, health, [SERVICE, FIXTURE_SERVICE],
                        on_started=lambda: on_started(port))
        finally:
            with contextlib.suppress(Exception):
                journal.close()
            centre.close()
    return 0
