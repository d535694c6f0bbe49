"""The whole reference network in one test process (imported by tests/test_e2e_*.py; holds no
tests itself): a PKI, two municipality issuing servers (Kofu on "kofu", Chiyoda on
"tokyo-cloud"), the centre, software cards bound on both sides, and kiosks with the terminal
library (GrpcCentre over mTLS, simulated cash, spool printer).

Every server runs in test mode with its clock moved (FixtureService.SetClock) to the last
weekday noon in Japan before now, so the per-kind hours (family registers: weekdays 09-17)
hold whenever the suite runs; the PKI and the cards are made an hour before that instant, so
certificates, the CRL and TLS are all valid at it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import grpc
import grpc.aio
from cryptography.hazmat.primitives.serialization import Encoding
from google.protobuf.timestamp_pb2 import Timestamp
from test_time_support import service_instant

from centre import ledger, outbox
from centre.config import CentreConfig
from centre.server import CentreServer, build_centre
from centre.verification import verify_pdf
from konbini.card import JpkiCard, SoftCard, SoftCardReader
from konbini.card.issue import issue_soft_card
from konbini.clock import JST, OffsetClock
from konbini.common.v1 import trust_pb2, types_pb2
from konbini.errors import ParsedError, parse_rpc_error
from konbini.issuing.v1 import issuing_pb2, issuing_pb2_grpc
from konbini.kiosk.v1 import kiosk_pb2, kiosk_pb2_grpc
from konbini.pki import PkiDir, pki_init
from konbini.pki.mtls import channel_credentials
from konbini.pki.x509util import load_certificate, new_rsa_key
from konbini.platform.v1 import platform_pb2, platform_pb2_grpc
from konbini.register.v1 import register_pb2
from konbini.storage import Tx, to_micros
from konbini.testing.v1 import testing_pb2, testing_pb2_grpc
from konbini.verification.v1 import verification_pb2
from municipality.config import MunicipalityConfig
from municipality.sample import CHIYODA, DOMICILE, KOFU, chiyoda_data, kofu_data
from municipality.server import running
from terminal.centre import CentreEndpoint, GrpcCentre, RetryPolicy
from terminal.flow import Choice, Kiosk, Screen, ScreenId
from terminal.journal import Journal
from terminal.payment import SimulatedCashDevice
from terminal.printer import ScriptedPrinter, SpoolPrinter

T = TypeVar("T")
K = types_pb2
PIN = "1234"
RR = K.CERTIFICATE_KIND_RESIDENCE_RECORD
RR_ITEMS = K.CERTIFICATE_KIND_RESIDENCE_RECORD_ITEMS
SEAL = K.CERTIFICATE_KIND_SEAL_REGISTRATION
TAX = K.CERTIFICATE_KIND_INCOME_TAX
FR_FULL = K.CERTIFICATE_KIND_FAMILY_REGISTER_FULL
FR_INDIVIDUAL = K.CERTIFICATE_KIND_FAMILY_REGISTER_INDIVIDUAL
FR_HISTORY = K.CERTIFICATE_KIND_FAMILY_REGISTER_ADDRESS_HISTORY

# Card name -> (municipality that binds it, resident id there). The residents come from
# municipality.sample; "jiro" is added to Chiyoda (he lives there; his register is in Kofu).
CARD_RESIDENTS = {
    "taro": (KOFU, "r-taro"),  # household head, seal registered, tax FY2025, register fr-1
    "hanako": (KOFU, "r-hanako"),
    "ichiro": (KOFU, "r-ichiro"),  # under 15
    "dv": (KOFU, "r-dv"),  # support measure
    "abolished": (KOFU, "r-abolished"),  # seal registration abolished
    "jiro": (CHIYODA, "r-jiro"),  # member m-jiro of Kofu's register fr-1
    "revoked": (KOFU, "r-hanako"),
    "wrong_key": (KOFU, "r-hanako"),
}
JIRO = register_pb2.Resident(
    id="r-jiro", name="葛西 次郎", name_kana="カサイ ジロウ", household_id="h-jiro",
    birth_date=K.Date(year=1999, month=3, day=3), sex=register_pb2.SEX_MALE,
    address="東京都千代田区九段南一丁目2番1号", relationship="世帯主",
    registered_domicile=DOMICILE, head_of_register="葛西 太郎",
    moved_in_on=K.Date(year=2020, month=4, day=1), status=register_pb2.RESIDENT_STATUS_ACTIVE)


def rid() -> str:
    return uuid.uuid4().hex


def ts(instant: dt.datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(instant)
    return stamp


@dataclass(frozen=True)
class CardFile:
    """A software card on disk and its certificate serial (lowercase hex, as bound)."""

    path: Path
    serial: str
    serial_int: int


def make_card(pki: PkiDir, directory: Path, name: str, at: dt.datetime, *,
              expired: bool = False) -> CardFile:
    """A card with PIN 1234 from the network's JPKI CA."""
    path = directory / f"card-{name}-{uuid.uuid4().hex[:8]}.json"
    serial = issue_soft_card(pki.jpki_ca(), path, PIN, now=at, expired=expired)
    assert serial is not None
    return CardFile(path, format(serial, "x"), serial)


def make_wrong_key_card(pki: PkiDir, directory: Path, at: dt.datetime) -> CardFile:
    """A card whose private key does not belong to its certificate: every signature it makes
    is well formed but does not verify (CARD-SIGNATURE)."""
    genuine = make_card(pki, directory, "genuine", at)
    card = JpkiCard(SoftCard.open(genuine.path))
    card.select_jpki()
    certificate = card.read_auth_certificate()
    path = directory / f"card-wrongkey-{uuid.uuid4().hex[:8]}.json"
    ca_der = pki.jpki_ca().certificate.public_bytes(Encoding.DER)
    SoftCard.create(path, auth_certificate_der=certificate, auth_ca_certificate_der=ca_der,
                    auth_key=new_rsa_key(), pin=PIN)
    return CardFile(path, genuine.serial, genuine.serial_int)


def kofu_dataset(today: dt.date, cards: dict[str, CardFile]) -> register_pb2.MunicipalityData:
    """Kofu's sample records with the sample's card serials replaced by real cards'."""
    data = kofu_data(today)
    del data.card_bindings[:]
    del data.register_links[:]  # the sample's pre-made link; "jiro" applies for his own
    for name, (code, resident) in CARD_RESIDENTS.items():
        if code == KOFU and name in cards:
            data.card_bindings.add(certificate_serial=cards[name].serial, resident_id=resident)
    return data


def chiyoda_dataset(cards: dict[str, CardFile]) -> register_pb2.MunicipalityData:
    """Chiyoda's sample records plus 次郎, whose family register is held by Kofu."""
    data = chiyoda_data()
    data.residents.append(JIRO)
    del data.card_bindings[:]
    for name, (code, resident) in CARD_RESIDENTS.items():
        if code == CHIYODA and name in cards:
            data.card_bindings.add(certificate_serial=cards[name].serial, resident_id=resident)
    return data


def _channel(pki: PkiDir, port: int, paths: Any) -> grpc.aio.Channel:
    cert, key = paths.read()
    creds = channel_credentials(pki.network_ca_cert.read_bytes(), cert, key)
    return grpc.aio.secure_channel(f"127.0.0.1:{port}", creds,
                                   options=[("grpc.max_receive_message_length", 64 << 20)])


@dataclass
class Network:
    """The running network and the clients a test needs."""

    pki: PkiDir
    root: Path
    now: dt.datetime  # the instant every clock was set to at start
    clock: OffsetClock  # the terminals' clock, moved with the servers'
    centre: CentreServer
    kofu_port: int
    tokyo_port: int
    kofu_app: Any
    tokyo_app: Any
    cards: dict[str, CardFile]
    channels: list[grpc.aio.Channel] = field(default_factory=list)
    kiosks: list[Rig] = field(default_factory=list)

    # -- clients ------------------------------------------------------------------------

    def _open(self, port: int, paths: Any) -> grpc.aio.Channel:
        channel = _channel(self.pki, port, paths)
        self.channels.append(channel)
        return channel

    def fixtures(self, port: int) -> Any:
        return testing_pb2_grpc.FixtureServiceStub(self._open(port, self.pki.conformance_client))

    def issuing(self, port: int) -> Any:
        """IssuingService of a municipality server, called as the centre."""
        return issuing_pb2_grpc.IssuingServiceStub(self._open(port, self.pki.centre_client))

    def kiosk_stub(self, operator: str = "seven", terminal: str = "T0001") -> Any:
        return kiosk_pb2_grpc.KioskServiceStub(
            self._open(self.centre.port, self.pki.terminal_client(operator, terminal)))

    def platform(self, code: str = KOFU) -> Any:
        return platform_pb2_grpc.PlatformServiceStub(
            self._open(self.centre.port, self.pki.municipality_client(code)))

    def port_of(self, code: str) -> int:
        return self.kofu_port if code == KOFU else self.tokyo_port

    def app_of(self, code: str) -> Any:
        return self.kofu_app if code == KOFU else self.tokyo_app

    # -- clocks -------------------------------------------------------------------------

    async def set_now(self, instant: dt.datetime) -> None:
        """Move every clock (centre, both municipalities, terminals) to ``instant``."""
        for port in (self.centre.port, self.kofu_port, self.tokyo_port):
            await self.fixtures(port).SetClock(testing_pb2.SetClockRequest(
                request_id=rid(), now=ts(instant)))
        self.clock.set_now(instant)

    # -- kiosks -------------------------------------------------------------------------

    def kiosk(self, tmp: Path, *, terminal: str = "T0001",
              wrap: Callable[[GrpcCentre], Any] | None = None) -> Rig:
        """A terminal with its own journal, cash device and spool printer; ``wrap`` puts
        something between the flow and its centre client (a tampering man in the middle)."""
        operator = {"T0001": "seven", "T0002": "lawson", "T0003": "family"}[terminal]
        endpoint = CentreEndpoint(f"127.0.0.1:{self.centre.port}", self.pki, operator, terminal)
        centre = GrpcCentre.connect(endpoint, policy=RetryPolicy(attempts=2,
                                                                 first_backoff_s=0.05))
        directory = tmp / f"kiosk-{uuid.uuid4().hex[:8]}"
        directory.mkdir()
        journal = Journal.open(directory / "journal.db")
        cash = SimulatedCashDevice()
        printer = ScriptedPrinter(SpoolPrinter(directory / "spool"))
        flow_centre = wrap(centre) if wrap is not None else centre
        rig = Rig(Kiosk(flow_centre, cash, printer, journal, clock=self.clock), centre, journal,
                  cash, printer)
        self.kiosks.append(rig)
        return rig

    # -- state --------------------------------------------------------------------------

    def centre_read(self, fn: Callable[[Tx], T]) -> T:
        return self.centre.store.run(fn, write=False)

    def ledger_rows(self) -> list[ledger.LedgerRow]:
        def read(tx: Tx) -> list[ledger.LedgerRow]:
            ids = [r["issuance_id"] for r in tx.execute(
                "SELECT issuance_id FROM ledger ORDER BY created_at").fetchall()]
            return [row for i in ids if (row := ledger.by_id(tx, str(i))) is not None]

        return self.centre_read(read)

    def reservations(self, code: str) -> list[dict[str, Any]]:
        """The municipality's reservations of tenant ``code`` (id, state, kind, copies, fee)."""
        store = self.app_of(code).store
        return store.run(lambda tx: [dict(r) for r in tx.execute(
            "SELECT id, state, kind, copies, fee_yen FROM reservations WHERE tenant = ?"
            " ORDER BY created_at", (code,)).fetchall()], write=False)

    async def outbox_drained(self, timeout: float = 10.0) -> None:
        """Wait until the centre's relay has every commit and cancel acknowledged."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while await asyncio.to_thread(lambda: self.centre_read(outbox.pending)):
            assert loop.time() < end, "the outbox was not drained"
            await asyncio.sleep(0.05)

    async def trust_list(self) -> trust_pb2.SignedTrustList:
        """The signed trust list as a municipality fetches it from the centre."""
        response = await self.platform().GetTrustList(platform_pb2.GetTrustListRequest())
        return response.trust_list

    async def verify(self, pdf: bytes) -> verification_pb2.VerifyDocumentResponse:
        """Verify a printed PDF offline against the centre's published trust list."""
        signed = await self.trust_list()
        roots = [load_certificate(self.pki.docsign_ca.cert)]
        return await asyncio.to_thread(verify_pdf, pdf, signed, roots, self.clock.now())

    async def issue_records(self, code: str, day: dt.date) -> list[issuing_pb2.IssueRecord]:
        """Every issue record of ``code`` on ``day`` (all pages)."""
        stub = self.issuing(self.port_of(code))
        records: list[issuing_pb2.IssueRecord] = []
        token = ""
        while True:
            page = await stub.ListIssueRecords(issuing_pb2.ListIssueRecordsRequest(
                municipality_code=K.MunicipalityCode(value=code),
                day=K.Date(year=day.year, month=day.month, day=day.day), page_token=token))
            records += page.records
            token = page.next_page_token
            if not token:
                return records

    def committed(self, code: str, day: dt.date) -> list[dict[str, Any]]:
        """The centre ledger's committed (and acknowledged) issuances of ``code`` on ``day``."""
        start = dt.datetime(day.year, day.month, day.day, tzinfo=JST)
        end = start + dt.timedelta(days=1)
        return self.centre_read(lambda tx: ledger.committed_rows(
            tx, code, to_micros(start), to_micros(end)))


@dataclass
class Rig:
    """One kiosk and its devices; every kiosk call runs in a thread (the servers share the
    test's event loop, and the terminal library is synchronous)."""

    kiosk: Kiosk
    centre: GrpcCentre
    journal: Journal
    cash: SimulatedCashDevice
    printer: ScriptedPrinter

    async def run(self, fn: Callable[..., Screen], *args: Any) -> Screen:
        return await asyncio.to_thread(fn, *args)

    async def to_menu(self, card: CardFile) -> Screen:
        """Insert the card, enter the PIN: the menu (or the refusal screen)."""
        screen = await self.run(self.kiosk.insert_card, SoftCardReader(card.path))
        assert screen.id is ScreenId.ENTER_PIN, screen
        return await self.run(self.kiosk.enter_pin, PIN)

    async def buy(self, choice: Choice) -> Screen:
        """Choose, pay the exact fee (plus 100 yen for change), print: the DONE screen."""
        screen = await self.run(self.kiosk.choose, choice)
        assert screen.id is ScreenId.PAYMENT, screen
        return await self.run(self.kiosk.pay, screen.fee + 100)

    def close(self) -> None:
        self.journal.close()
        self.centre.close()


def entry_of(menu: tuple[K.CatalogueEntry, ...], kind: int,
             code: str | None = None) -> K.CatalogueEntry:
    for entry in menu:
        if entry.kind == kind and (code is None or entry.municipality_code.value == code):
            return entry
    raise AssertionError(f"{K.CertificateKind.Name(kind)} not on the menu")


async def start_network(root: Path, store_urls: Callable[[str], str],
                        stack: contextlib.AsyncExitStack, **centre_changes: Any) -> Network:
    """Make the PKI and the cards, start both municipality servers and the centre, load the
    data and set every clock; everything stops when ``stack`` closes. ``store_urls(name)``
    gives each server's store URL; ``centre_changes`` override CentreConfig settings."""
    real_now = dt.datetime.now(dt.UTC)
    now = service_instant(real_now)
    made = now - dt.timedelta(hours=1)
    pki_dir = root / "pki"
    await asyncio.to_thread(pki_init, pki_dir, now=made)
    pki = PkiDir(pki_dir)
    card_dir = root / "cards"
    card_dir.mkdir()
    cards = {name: make_card(pki, card_dir, name, made)
             for name in CARD_RESIDENTS if name != "wrong_key"}
    cards["wrong_key"] = make_wrong_key_card(pki, card_dir, made)
    cards["expired"] = make_card(pki, card_dir, "expired", made, expired=True)

    def muni_config(codes: tuple[str, ...], server: str) -> MunicipalityConfig:
        return MunicipalityConfig(
            tenants=codes, pki_dir=pki.root, server_name=server,
            store_url=store_urls(f"muni_{server.replace('-', '_')}"), test_mode=True,
            sweep_interval=dt.timedelta(hours=1))

    kofu_port, kofu_app = await stack.enter_async_context(
        running(muni_config((KOFU,), "kofu")))
    tokyo_port, tokyo_app = await stack.enter_async_context(
        running(muni_config((CHIYODA,), "tokyo-cloud")))
    config = CentreConfig(pki_dir=pki.root, bind="127.0.0.1:0", public_bind="",
                          store_url=store_urls("centre"), test_mode=True,
                          relay_interval_s=0.1, sweep_interval_s=0.2).with_changes(
                              **centre_changes)
    centre = build_centre(config)
    await centre.start()
    stack.push_async_callback(centre.stop, 1.0)
    net = Network(pki, root, now, OffsetClock(), centre, kofu_port, tokyo_port, kofu_app,
                  tokyo_app, cards)

    async def close_clients() -> None:
        for rig in net.kiosks:
            rig.close()
        for channel in net.channels:
            await channel.close()

    stack.push_async_callback(close_clients)
    today = now.astimezone(JST).date()
    for port, dataset in ((kofu_port, kofu_dataset(today, cards)),
                          (tokyo_port, chiyoda_dataset(cards))):
        await net.fixtures(port).LoadDataset(testing_pb2.LoadDatasetRequest(
            request_id=rid(), replace=True,
            municipality=register_pb2.Dataset(municipalities=[dataset])))
    await net.fixtures(centre.port).LoadDataset(testing_pb2.LoadDatasetRequest(
        request_id=rid(), centre=testing_pb2.CentreDataset(
            routes=[
                testing_pb2.MunicipalityRoute(
                    code=K.MunicipalityCode(value=KOFU), name="甲府市",
                    endpoints=[f"127.0.0.1:{kofu_port}"], tls_server_name="kofu"),
                testing_pb2.MunicipalityRoute(
                    code=K.MunicipalityCode(value=CHIYODA), name="千代田区",
                    endpoints=[f"127.0.0.1:{tokyo_port}"], tls_server_name="tokyo-cloud"),
            ],
            card_bindings=[
                testing_pb2.CentreCardBinding(
                    certificate_serial=cards[name].serial,
                    municipality_code=K.MunicipalityCode(value=code))
                for name, (code, _resident) in CARD_RESIDENTS.items()
            ] + [testing_pb2.CentreCardBinding(
                certificate_serial=cards["expired"].serial,
                municipality_code=K.MunicipalityCode(value=KOFU))])))
    await net.set_now(now)
    return net


# -- gRPC-level helpers (what a terminal does, without the kiosk flow) --------------------------


def card_signer(card: CardFile) -> tuple[bytes, Callable[[bytes], bytes]]:
    """The card's auth certificate and a signing function (PIN verified)."""
    jpki = JpkiCard(SoftCard.open(card.path))
    jpki.select_jpki()
    certificate = jpki.read_auth_certificate()
    jpki.verify_pin(PIN)
    return certificate, jpki.sign_sha256


async def open_session(kiosk: Any, card: CardFile) -> tuple[str, bytes, Callable[[bytes], bytes]]:
    """CreateSession + Authenticate; (session_id, challenge, sign)."""
    certificate, sign = card_signer(card)
    created = await kiosk.CreateSession(kiosk_pb2.CreateSessionRequest(request_id=rid()))
    intent = kiosk_pb2.AuthIntent(session_id=created.session_id,
                                  challenge=created.challenge).SerializeToString()
    await kiosk.Authenticate(kiosk_pb2.AuthenticateRequest(
        request_id=rid(), session_id=created.session_id, auth_certificate_der=certificate,
        intent=intent, signature=sign(intent)))
    return created.session_id, created.challenge, sign


async def register_use(net: Network, card: CardFile, register_code: str, domicile: str,
                       head: str) -> kiosk_pb2.RegisterFamilyRegisterUseResponse:
    """A card-signed use registration (利用登録) in its own session."""
    kiosk = net.kiosk_stub()
    session_id, challenge, sign = await open_session(kiosk, card)
    request_id = rid()
    intent = kiosk_pb2.UseRegistrationIntent(
        session_id=session_id, challenge=challenge, request_id=request_id,
        register_municipality_code=K.MunicipalityCode(value=register_code),
        registered_domicile=domicile, head_of_register=head).SerializeToString()
    try:
        return await kiosk.RegisterFamilyRegisterUse(kiosk_pb2.RegisterFamilyRegisterUseRequest(
            request_id=request_id, session_id=session_id, intent=intent,
            signature=sign(intent)))
    finally:
        await kiosk.EndSession(kiosk_pb2.EndSessionRequest(request_id=rid(),
                                                           session_id=session_id))


async def request_refusal(net: Network, card: CardFile, kind: int,
                          options: K.CertificateOptions, code: str = KOFU) -> ParsedError:
    """A card-signed RequestIssuance at the gRPC level that must be refused: the parsed
    error (reason, code, message)."""
    kiosk = net.kiosk_stub()
    session_id, challenge, sign = await open_session(kiosk, card)
    request_id = rid()
    intent = kiosk_pb2.IssuanceIntent(
        session_id=session_id, challenge=challenge, request_id=request_id,
        municipality_code=K.MunicipalityCode(value=code), kind=kind,  # type: ignore[arg-type]
        options=options, copies=1).SerializeToString()
    try:
        answer = await kiosk.RequestIssuance(kiosk_pb2.RequestIssuanceRequest(
            request_id=request_id, session_id=session_id, intent=intent,
            signature=sign(intent)))
    except grpc.aio.AioRpcError as error:
        return parse_rpc_error(error)
    finally:
        await kiosk.EndSession(kiosk_pb2.EndSessionRequest(request_id=rid(),
                                                           session_id=session_id))
    raise AssertionError(f"not refused: {answer.issuance_id}")


async def wait_for(check: Callable[[], Awaitable[bool]], what: str,
                   timeout: float = 10.0) -> None:
    """Poll ``check`` until it holds (background work of a server), failing after ``timeout``."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not await check():
        assert loop.time() < end, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)
