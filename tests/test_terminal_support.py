"""Shared pieces of the terminal tests (no tests here): a faithful fake KioskService, a server
thread that runs it on loopback with mTLS, software cards, and an APDU-counting reader.

The fake centre verifies the card's signature over the exact intent bytes with the real
CardVerifier (chain, validity, CRL), binds sessions to the calling terminal, is idempotent on
request_id, returns small image-only PDFs, honours reservation expiry and records every
completion, so the terminal's behaviour can be checked against what the centre holds. Use
registrations (利用登録) are verified the same way and APPROVED for the one register it knows
(REJECTED otherwise); an approval adds that municipality's family-register kinds to the card's
catalogue.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from google.protobuf import timestamp_pb2
from PIL import Image

from konbini.card import SoftCardReader
from konbini.card.apdu import CardTransport
from konbini.card.issue import issue_soft_card
from konbini.common.v1 import types_pb2
from konbini.errors import KonbiniError
from konbini.kiosk.v1 import kiosk_pb2, kiosk_pb2_grpc
from konbini.pki import CardVerifier, CrlFile, PkiDir
from konbini.pki.mtls import peer_identity, server_credentials
from konbini.pki.x509util import load_certificate
from konbini.server import ServerOptions, ServiceBinding, contract_authorization, create_server

KOFU = "192015"
CHIYODA = "131016"
RESIDENCE = types_pb2.CERTIFICATE_KIND_RESIDENCE_RECORD
SEAL = types_pb2.CERTIFICATE_KIND_SEAL_REGISTRATION
INCOME_TAX = types_pb2.CERTIFICATE_KIND_INCOME_TAX
REGISTER_FULL = types_pb2.CERTIFICATE_KIND_FAMILY_REGISTER_FULL
REGISTER_INDIVIDUAL = types_pb2.CERTIFICATE_KIND_FAMILY_REGISTER_INDIVIDUAL
# Names as registered, with Ideographic Variation Sequences (邉 + VS18, 葛 + VS17): the kiosk
# must pass them through untouched.
WATANABE = "渡邉\U000E0101"
KATSURAGI = "葛\U000E0100城"
# The one register the fake register municipality knows: (code, 本籍, 筆頭者).
CHIYODA_REGISTER = (CHIYODA, "東京都千代田区千代田1番", "葛城 太郎")


def small_pdf(label: int) -> bytes:
    """A one-page image-only A4-proportioned PDF (no fonts, no text operators)."""
    image = Image.new("L", (124, 175), 255)
    for x in range(10, 10 + (label % 90) + 10):
        image.putpixel((x, 20), 0)
    out = io.BytesIO()
    image.save(out, "PDF", resolution=15.0)
    return out.getvalue()


def _ts(value: dt.datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value)
    return stamp


def default_catalogue() -> list[types_pb2.CatalogueEntry]:
    code = types_pb2.MunicipalityCode(value=KOFU)
    return [
        types_pb2.CatalogueEntry(
            municipality_code=code, municipality_name="甲府市", kind=RESIDENCE,
            fee=types_pb2.Money(yen=200), available_now=True, max_copies=3,
            permitted_options=types_pb2.ResidenceRecordOptions(
                show_registered_domicile=True, show_household_head=True),
            selectable=[
                types_pb2.Person(ref="p1", display_name=f"{WATANABE} 太郎", relationship="本人"),
                types_pb2.Person(ref="p2", display_name=f"{WATANABE} 花子", relationship="妻"),
                types_pb2.Person(ref="p3", display_name=f"{WATANABE} 一郎", relationship="子"),
            ]),
        types_pb2.CatalogueEntry(
            municipality_code=code, municipality_name="甲府市", kind=SEAL,
            fee=types_pb2.Money(yen=200), available_now=True, max_copies=2),
        types_pb2.CatalogueEntry(
            municipality_code=code, municipality_name="甲府市", kind=INCOME_TAX,
            fee=types_pb2.Money(yen=300), available_now=True, max_copies=2,
            fiscal_years=[2025]),
    ]


def register_catalogue() -> dict[str, list[types_pb2.CatalogueEntry]]:
    """The family-register kinds of the register municipality, listed once a use registration
    for it is approved (USEREG-CATALOGUE)."""
    code = types_pb2.MunicipalityCode(value=CHIYODA)
    members = [types_pb2.Person(ref="m1", display_name=f"{KATSURAGI} 太郎", relationship="本人"),
               types_pb2.Person(ref="m2", display_name=f"{KATSURAGI} 花子", relationship="妻")]
    return {CHIYODA: [
        types_pb2.CatalogueEntry(
            municipality_code=code, municipality_name="千代田区", kind=REGISTER_FULL,
            fee=types_pb2.Money(yen=450), available_now=True, max_copies=2),
        types_pb2.CatalogueEntry(
            municipality_code=code, municipality_name="千代田区", kind=REGISTER_INDIVIDUAL,
            fee=types_pb2.Money(yen=450), available_now=True, max_copies=2, selectable=members),
    ]}


@dataclass
class UseRecord:
    """What the fake centre holds about one use registration."""

    registration_id: str
    terminal: str
    serial: int
    code: str
    status: str  # PENDING, APPROVED or REJECTED


@dataclass
class Issuance:
    """What the fake centre holds about one issuance."""

    issuance_id: str
    request_id: str
    terminal: str
    fee: int
    expires_at: dt.datetime
    state: str = "DELIVERED"
    outcome: str | None = None
    failure_cause: str | None = None
    charged: int = 0
    completions: int = 0
    # What the card signed for: the municipality, the kind and the options as sent.
    municipality_code: str = ""
    options: types_pb2.CertificateOptions = field(default_factory=types_pb2.CertificateOptions)


@dataclass
class FakeState:
    """The fake centre's records and its knobs (shared between the server thread and tests)."""

    pki: PkiDir
    now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)
    bindings: dict[int, str] = field(default_factory=dict)
    refusals: dict[int, str] = field(default_factory=dict)  # serial -> reason at RequestIssuance
    catalogue: list[types_pb2.CatalogueEntry] = field(default_factory=default_catalogue)
    reservation_ttl: dt.timedelta = dt.timedelta(minutes=5)
    fail_next: dict[str, int] = field(default_factory=dict)  # method -> UNAVAILABLE count
    lose_response: dict[str, int] = field(default_factory=dict)  # effect done, answer lost
    sessions: dict[str, dict] = field(default_factory=dict)
    issuances: dict[str, Issuance] = field(default_factory=dict)
    # Use registrations: the registers known, the register municipalities' kinds, whether
    # decisions wait (PENDING until a test approves), and the registrations made.
    registers: set[tuple[str, str, str]] = field(default_factory=lambda: {CHIYODA_REGISTER})
    register_entries: dict[str, list[types_pb2.CatalogueEntry]] = field(
        default_factory=register_catalogue)
    hold_use_registrations: bool = False
    use_registrations: dict[str, UseRecord] = field(default_factory=dict)
    answers: dict[tuple[str, str, str], tuple[bytes, bytes]] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def by_request(self, request_id: str) -> Issuance | None:
        return next((i for i in self.issuances.values() if i.request_id == request_id), None)

    def catalogue_for(self, serial: int | None) -> list[types_pb2.CatalogueEntry]:
        """The residence municipality's kinds, plus those of every register municipality with
        an approved use registration for this card."""
        approved = sorted({u.code for u in self.use_registrations.values()
                           if u.serial == serial and u.status == "APPROVED"})
        return [*self.catalogue, *(e for code in approved
                                   for e in self.register_entries.get(code, []))]


class FakeKioskService(kiosk_pb2_grpc.KioskServiceServicer):
    """KioskService as a centre would answer it, with one municipality behind it."""

    def __init__(self, state: FakeState) -> None:
        self.s = state
        self._verifier = CardVerifier([load_certificate(state.pki.jpki_ca_cert)],
                                      CrlFile(state.pki.jpki_crl), dt.timedelta(days=1))

    async def _inject(self, method: str, context: grpc.aio.ServicerContext) -> None:
        self.s.calls.append(method)
        if self.s.fail_next.get(method, 0) > 0:
            self.s.fail_next[method] -= 1
            await context.abort(grpc.StatusCode.UNAVAILABLE, "injected outage")

    async def _lost(self, method: str, context: grpc.aio.ServicerContext) -> None:
        if self.s.lose_response.get(method, 0) > 0:
            self.s.lose_response[method] -= 1
            await context.abort(grpc.StatusCode.UNAVAILABLE, "answer lost")

    def _once(self, method: str, terminal: str, request: object, make: Callable[[], object],
              response_type: type) -> object:
        key = (method, terminal, request.request_id)  # type: ignore[attr-defined]
        fingerprint = request.SerializeToString(deterministic=True)  # type: ignore[attr-defined]
        with self.s.lock:
            if key in self.s.answers:
                seen, answer = self.s.answers[key]
                if seen != fingerprint:
                    raise KonbiniError("REQUEST_ID_REUSED", "request id reused")
                return response_type.FromString(answer)
            response = make()
            self.s.answers[key] = (fingerprint, response.SerializeToString())  # type: ignore[attr-defined]
            return response

    def _session(self, session_id: str, terminal: str, *, authenticated: bool) -> dict:
        found = self.s.sessions.get(session_id)
        if found is None or found["terminal"] != terminal:
            raise KonbiniError("SESSION_UNKNOWN", "no such session")
        if self.s.now() > found["expires_at"]:
            raise KonbiniError("SESSION_EXPIRED", "session expired")
        if authenticated and found["serial"] is None:
            raise KonbiniError("SESSION_NOT_AUTHENTICATED", "not authenticated")
        return found

    async def CreateSession(self, request, context):
        await self._inject("CreateSession", context)
        terminal = peer_identity(context).id

        def make() -> kiosk_pb2.CreateSessionResponse:
            session_id, challenge = secrets.token_hex(8), secrets.token_bytes(32)
            expires = self.s.now() + dt.timedelta(minutes=10)
            self.s.sessions[session_id] = {"terminal": terminal, "challenge": challenge,
                                           "expires_at": expires, "serial": None,
                                           "challenge_used": False}
            return kiosk_pb2.CreateSessionResponse(session_id=session_id, challenge=challenge,
                                                   expires_at=_ts(expires))

        return self._once("CreateSession", terminal, request, make,
                          kiosk_pb2.CreateSessionResponse)

    async def Authenticate(self, request, context):
        await self._inject("Authenticate", context)
        terminal = peer_identity(context).id

        def make() -> kiosk_pb2.AuthenticateResponse:
            session = self._session(request.session_id, terminal, authenticated=False)
            intent = kiosk_pb2.AuthIntent.FromString(request.intent)
            if intent.session_id != request.session_id or intent.challenge != \
                    session["challenge"]:
                raise KonbiniError("CHALLENGE_MISMATCH", "intent does not match the session")
            if session["challenge_used"]:
                raise KonbiniError("CHALLENGE_REPLAYED", "challenge used")
            card = self._verifier.verify_at(self.s.now(), request.auth_certificate_der,
                                            request.intent, request.signature)
            code = self.s.bindings.get(card.serial)
            if code is None:
                raise KonbiniError("CARD_NOT_BOUND", "no binding")
            session["challenge_used"] = True
            session["serial"] = card.serial
            session["certificate_der"] = request.auth_certificate_der
            return kiosk_pb2.AuthenticateResponse(
                residence_municipality_code=types_pb2.MunicipalityCode(value=code),
                residence_municipality_name="甲府市", expires_at=_ts(session["expires_at"]))

        return self._once("Authenticate", terminal, request, make,
                          kiosk_pb2.AuthenticateResponse)

    async def GetCatalogue(self, request, context):
        await self._inject("GetCatalogue", context)
        with self.s.lock:
            session = self._session(request.session_id, peer_identity(context).id,
                                    authenticated=True)
            return kiosk_pb2.GetCatalogueResponse(entries=self.s.catalogue_for(session["serial"]))

    async def RequestIssuance(self, request, context):
        await self._inject("RequestIssuance", context)
        terminal = peer_identity(context).id

        def make() -> kiosk_pb2.RequestIssuanceResponse:
            session = self._session(request.session_id, terminal, authenticated=True)
            # CARD-SIGNATURE: the same card signed the exact intent bytes.
            card = self._verifier.verify_at(self.s.now(), session["certificate_der"],
                                            request.intent, request.signature)
            intent = kiosk_pb2.IssuanceIntent.FromString(request.intent)
            if (intent.session_id != request.session_id or intent.challenge !=
                    session["challenge"] or intent.request_id != request.request_id):
                raise KonbiniError("CHALLENGE_MISMATCH", "intent does not match the request")
            entry = next((e for e in self.s.catalogue_for(card.serial) if e.kind == intent.kind and
                          e.municipality_code.value == intent.municipality_code.value), None)
            if entry is None:
                raise KonbiniError("KIND_NOT_OFFERED", "not offered")
            if not 1 <= intent.copies <= entry.max_copies:
                raise KonbiniError("TOO_MANY_COPIES", "copies")
            if card.serial in self.s.refusals:
                raise KonbiniError(self.s.refusals[card.serial], "refused")
            issuance_id = "iss-" + secrets.token_hex(6)
            expires = self.s.now() + self.s.reservation_ttl
            fee = entry.fee.yen * intent.copies
            self.s.issuances[issuance_id] = Issuance(
                issuance_id, request.request_id, terminal, fee, expires,
                municipality_code=intent.municipality_code.value, options=intent.options)
            # Each issuance's pages differ, so a test can tell whose paper came out.
            base = len(self.s.issuances) * 3
            docs = [types_pb2.Document(pdf=small_pdf(base + n), signed_metadata=b"m",
                                       signature=b"s") for n in range(intent.copies)]
            return kiosk_pb2.RequestIssuanceResponse(
                issuance_id=issuance_id, documents=docs, fee=types_pb2.Money(yen=fee),
                expires_at=_ts(expires), state=types_pb2.ISSUANCE_STATE_DELIVERED)

        response = self._once("RequestIssuance", terminal, request, make,
                              kiosk_pb2.RequestIssuanceResponse)
        await self._lost("RequestIssuance", context)
        return response

    async def CompleteIssuance(self, request, context):
        await self._inject("CompleteIssuance", context)
        terminal = peer_identity(context).id

        def make() -> kiosk_pb2.CompleteIssuanceResponse:
            found = self.s.issuances.get(request.issuance_id)
            if found is None or found.terminal != terminal:
                raise KonbiniError("RESERVATION_NOT_FOUND", "no such issuance")
            found.completions += 1
            outcome = kiosk_pb2.PrintOutcome.Name(request.outcome).removeprefix(
                "PRINT_OUTCOME_")
            if found.state in ("COMMITTED", "CANCELLED", "EXPIRED"):
                raise KonbiniError(f"RESERVATION_{found.state}", "already final")
            found.outcome = outcome
            if outcome == "PRINTED":
                if self.s.now() > found.expires_at:
                    found.state = "EXPIRED"
                    raise KonbiniError("RESERVATION_EXPIRED", "expired")
                found.state, found.charged = "COMMITTED", found.fee
            else:
                found.state = "CANCELLED"
                found.failure_cause = kiosk_pb2.FailureCause.Name(
                    request.failure_cause).removeprefix("FAILURE_CAUSE_")
            return kiosk_pb2.CompleteIssuanceResponse(
                state=types_pb2.IssuanceState.Value(f"ISSUANCE_STATE_{found.state}"),
                charged=types_pb2.Money(yen=found.charged))

        response = self._once("CompleteIssuance", terminal, request, make,
                              kiosk_pb2.CompleteIssuanceResponse)
        await self._lost("CompleteIssuance", context)
        return response

    async def GetIssuance(self, request, context):
        await self._inject("GetIssuance", context)
        terminal = peer_identity(context).id
        with self.s.lock:
            found = (self.s.issuances.get(request.issuance_id) if request.issuance_id
                     else self.s.by_request(request.request_id))
            if found is None or found.terminal != terminal:
                raise KonbiniError("RESERVATION_NOT_FOUND", "no such issuance")
            return kiosk_pb2.GetIssuanceResponse(
                issuance_id=found.issuance_id,
                state=types_pb2.IssuanceState.Value(f"ISSUANCE_STATE_{found.state}"),
                fee=types_pb2.Money(yen=found.fee), expires_at=_ts(found.expires_at))

    async def RegisterFamilyRegisterUse(self, request, context):
        await self._inject("RegisterFamilyRegisterUse", context)
        terminal = peer_identity(context).id

        def make() -> kiosk_pb2.RegisterFamilyRegisterUseResponse:
            session = self._session(request.session_id, terminal, authenticated=True)
            # CARD-SIGNATURE: the card of the session signed these exact intent bytes.
            card = self._verifier.verify_at(self.s.now(), session["certificate_der"],
                                            request.intent, request.signature)
            intent = kiosk_pb2.UseRegistrationIntent.FromString(request.intent)
            if (intent.session_id != request.session_id or intent.challenge !=
                    session["challenge"] or intent.request_id != request.request_id):
                raise KonbiniError("CHALLENGE_MISMATCH", "intent does not match the request")
            code = intent.register_municipality_code.value
            known = (code, intent.registered_domicile, intent.head_of_register) in \
                self.s.registers
            status = ("REJECTED" if not known else
                      "PENDING" if self.s.hold_use_registrations else "APPROVED")
            record = UseRecord("ur-" + secrets.token_hex(6), terminal, card.serial, code,
                               status)
            self.s.use_registrations[record.registration_id] = record
            return kiosk_pb2.RegisterFamilyRegisterUseResponse(
                registration_id=record.registration_id,
                status=kiosk_pb2.UseRegistrationStatus.Value(
                    f"USE_REGISTRATION_STATUS_{status}"))

        return self._once("RegisterFamilyRegisterUse", terminal, request, make,
                          kiosk_pb2.RegisterFamilyRegisterUseResponse)

    async def GetUseRegistration(self, request, context):
        await self._inject("GetUseRegistration", context)
        terminal = peer_identity(context).id
        with self.s.lock:
            found = self.s.use_registrations.get(request.registration_id)
            if found is None or found.terminal != terminal:
                raise KonbiniError("RESERVATION_NOT_FOUND", "no such use registration")
            return kiosk_pb2.GetUseRegistrationResponse(
                registration_id=found.registration_id,
                status=kiosk_pb2.UseRegistrationStatus.Value(
                    f"USE_REGISTRATION_STATUS_{found.status}"),
                register_municipality_code=types_pb2.MunicipalityCode(value=found.code))

    async def EndSession(self, request, context):
        await self._inject("EndSession", context)
        with self.s.lock:
            self.s.sessions.pop(request.session_id, None)
        return kiosk_pb2.EndSessionResponse()


class ServerThread:
    """Runs grpc.aio servers in a thread with its own event loop (the tests stay synchronous)."""

    def __init__(self, bindings: list[ServiceBinding], options: ServerOptions) -> None:
        self._bindings, self._options = bindings, options
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self.port = 0
        self.error: BaseException | None = None

    def _run(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            server, self.port, _health = create_server(self._bindings, self._options)
            await server.start()
            self._ready.set()
            await self._stop.wait()
            await server.stop(0.5)

        try:
            asyncio.run(main())
        except BaseException as exc:
            self.error = exc
            self._ready.set()

    def start(self) -> int:
        self._thread.start()
        if not self._ready.wait(30) or self.error is not None:
            raise RuntimeError(f"server did not start: {self.error!r}")
        return self.port

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


def start_fake_centre(state: FakeState) -> ServerThread:
    """The fake centre on 127.0.0.1:0 with the centre's server certificate and mTLS."""
    pki = state.pki
    cert, key = pki.centre_server.read()
    creds = server_credentials(cert, key, pki.network_ca_cert.read_bytes())
    binding = ServiceBinding(kiosk_pb2_grpc.add_KioskServiceServicer_to_server,
                             FakeKioskService(state), "konbini.kiosk.v1.KioskService")
    thread = ServerThread([binding], ServerOptions(credentials=creds,
                                                   interceptors=(contract_authorization(),)))
    thread.start()
    return thread


def make_card(pki: PkiDir, directory: Path, name: str, pin: str | None = "1234",
              *, now: dt.datetime | None = None) -> tuple[Path, int | None]:
    """A software card file in ``directory``; returns its path and serial."""
    path = directory / f"{name}.card"
    serial = issue_soft_card(pki.jpki_ca(), path, pin,
                             now=now or dt.datetime.now(dt.UTC))
    return path, serial


class CountingTransport:
    """Wraps a card transport and counts the VERIFY APDUs that carry a PIN."""

    def __init__(self, inner: CardTransport) -> None:
        self._inner = inner
        self.pin_verifies: list[bytes] = []

    def transmit(self, apdu: bytes) -> bytes:
        if apdu[:4] == bytes([0x00, 0x20, 0x00, 0x80]) and len(apdu) > 4:
            self.pin_verifies.append(apdu[5:])
        return self._inner.transmit(apdu)


class CountingReader:
    """A SoftCardReader whose transport is a CountingTransport."""

    def __init__(self, path: Path) -> None:
        self._reader = SoftCardReader(path)
        self.transport: CountingTransport | None = None

    def connect(self) -> CardTransport:
        self.transport = CountingTransport(self._reader.connect())
        return self.transport

    def disconnect(self) -> None:
        self._reader.disconnect()

    @property
    def pin_verifies(self) -> list[bytes]:
        return self.transport.pin_verifies if self.transport else []
