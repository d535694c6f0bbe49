"""Helpers for the centre's tests (imported by tests/test_centre_*.py; holds no tests itself):
a fake municipality IssuingService over mTLS, software cards, terminal and suite clients."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pikepdf
from cryptography.hazmat.primitives.asymmetric import ec
from test_time_support import pinned_clock, pki_instant

from centre.config import CentreConfig
from centre.server import CentreServer, build_centre
from konbini.card import JpkiCard, SoftCard
from konbini.card.issue import issue_soft_card
from konbini.clock import Clock
from konbini.common.v1 import types_pb2
from konbini.errors import KonbiniError
from konbini.issuing.v1 import issuing_pb2, issuing_pb2_grpc
from konbini.kiosk.v1 import kiosk_pb2, kiosk_pb2_grpc
from konbini.pki import PkiDir, ScrambleKeySet, key_id_of, sign_p1363
from konbini.pki.mtls import channel_credentials, peer_identity, server_credentials
from konbini.server import ServerOptions, ServiceBinding, contract_authorization, create_server
from konbini.testing.v1 import testing_pb2, testing_pb2_grpc

REPO = Path(__file__).resolve().parent.parent
KOFU = "192015"
CHIYODA = "131016"
PIN = "1234"
BACK_MARK = b"\n%BACK-SIDE%"


def fake_back_sides(front: bytes, keys: ScrambleKeySet, at: dt.datetime) -> bytes:
    """Stands in for centre.backside in tests that do not look at images: marks the key id."""
    return front + BACK_MARK + keys.current_key_at(at).key_id.encode()


def a4_pdf(seed: int) -> bytes:
    """A real one-page A4 PDF (vector shapes only) that differs with ``seed``."""
    pdf = pikepdf.new()
    shapes = "".join(f"{40 + (seed * 37 + i * 53) % 400} {60 + i * 70} 120 40 re f\n"
                     for i in range(8))
    page = pikepdf.Page(pikepdf.Dictionary(
        Type=pikepdf.Name.Page, MediaBox=[0, 0, 595.276, 841.89],
        Contents=pdf.make_stream(("0 g\n" + shapes).encode())))
    pdf.pages.append(page)
    out = io.BytesIO()
    pdf.save(out)
    return out.getvalue()


def subject_digest(code: str, subject_id: str) -> bytes:
    """SubjectDigest of one person (docs/protocol.md)."""
    data = b"konbini.subject.v1" + b"\x1f" + code.encode() + b"\x1e" + subject_id.encode()
    return hashlib.sha256(data + b"\x1e" + subject_id.encode()).digest()


@dataclass
class Reservation:
    """What the fake municipality holds for one prepare."""

    reservation_id: str
    prepare_request_id: str
    code: str
    serial: str
    kind: int
    copies: int
    fee: int
    expires_at: dt.datetime
    state: int = types_pb2.ISSUANCE_STATE_RESERVED
    documents: list[types_pb2.Document] = field(default_factory=list)
    issuance_id: str = ""
    store_operator: str = ""
    committed_at: dt.datetime | None = None
    commits: int = 0
    cancels: int = 0


class FakeMunicipality(issuing_pb2_grpc.IssuingServiceServicer):
    """An in-memory IssuingService for centre-only behaviours (one server, several tenants).

    Residents are card serials; each gets a signed document whose subject digest names the
    card serial, so a test can tell whose document reached whom.
    """

    def __init__(self, pki: PkiDir, codes: tuple[str, ...], *, fee: int = 300,
                 ttl: dt.timedelta = dt.timedelta(minutes=10), max_copies: int = 5,
                 clock: Clock | None = None) -> None:
        self.pki = pki
        # Pinned inside service hours by default, like the centre of start_centre.
        self.clock = clock or pinned_clock()
        self.codes = codes
        self.fee = fee
        self.ttl = ttl
        self.max_copies = max_copies
        self.reservations: dict[str, Reservation] = {}
        self.by_prepare: dict[str, str] = {}
        self.prepare_calls = 0
        self.refuse: dict[int, str] = {}  # kind -> reason
        self.prepare_delay = 0.0
        self.lose_answers = False  # reserve, then fail as if the answer was lost
        # Awaited after a new reservation is made, before answering (crash tests hold it).
        self.after_reserve: Callable[[], Awaitable[None]] | None = None
        self.hours = types_pb2.ServiceHours()  # standard hours
        self.links: dict[str, int] = {}
        self.link_decision = issuing_pb2.LINK_DECISION_PENDING
        self.caller_ids: set[str] = set()
        self.lock = asyncio.Lock()

    def _signer(self, code: str) -> tuple[ec.EllipticCurvePrivateKey, str]:
        issued = self.pki.document_signer(code).load()
        assert isinstance(issued.key, ec.EllipticCurvePrivateKey)
        return issued.key, key_id_of(issued.certificate)

    def _tenant(self, code: str) -> None:
        if code not in self.codes:
            raise KonbiniError("TENANT_NOT_SERVED", "not served here")

    async def GetCatalogue(self, request: Any, context: Any) -> Any:
        self.caller_ids.add(peer_identity(context).uri)
        self._tenant(request.municipality_code.value)
        kinds = [types_pb2.CERTIFICATE_KIND_RESIDENCE_RECORD,
                 types_pb2.CERTIFICATE_KIND_FAMILY_REGISTER_FULL]
        return issuing_pb2.GetCatalogueResponse(entries=[
            types_pb2.CatalogueEntry(
                municipality_code=request.municipality_code, kind=k,
                fee=types_pb2.Money(yen=self.fee), hours=self.hours, available_now=True,
                max_copies=self.max_copies)
            for k in kinds])

    async def PrepareIssuance(self, request: Any, context: Any) -> Any:
        code = request.municipality_code.value
        self._tenant(code)
        if self.prepare_delay:
            await asyncio.sleep(self.prepare_delay)
        async with self.lock:
            self.prepare_calls += 1
            if request.kind in self.refuse:
                raise KonbiniError(self.refuse[request.kind], "refused by the fake")
            existing = self.by_prepare.get(request.request_id)
            if existing is not None:
                r = self.reservations[existing]
                return self._prepared(r)
            rid = uuid.uuid4().hex
            now = self.clock.now()
            r = Reservation(rid, request.request_id, code, request.card.certificate_serial,
                            request.kind, request.copies, self.fee * request.copies,
                            now + self.ttl, issuance_id=request.origin.issuance_id,
                            store_operator=request.origin.store_operator)
            key, key_id = self._signer(code)
            for i in range(request.copies):
                pdf = a4_pdf(len(self.reservations) * 7 + i)
                meta = types_pb2.DocumentMetadata(
                    municipality_code=types_pb2.MunicipalityCode(value=code), kind=request.kind,
                    issue_number=f"{rid[:8]}-{i}",
                    subject_digest=subject_digest(code, request.card.certificate_serial),
                    front_pdf_sha256=hashlib.sha256(pdf).digest(), page_count=1,
                    copy_index=i + 1, copy_count=request.copies, signing_key_id=key_id,
                    reservation_id=rid)
                meta.issued_at.FromDatetime(now)
                signed = meta.SerializeToString()
                r.documents.append(types_pb2.Document(pdf=pdf, signed_metadata=signed,
                                                      signature=sign_p1363(key, signed)))
            self.reservations[rid] = r
            self.by_prepare[request.request_id] = rid
            if self.lose_answers:
                raise RuntimeError("the answer is lost")  # INTERNAL on the wire
        if self.after_reserve is not None:
            await self.after_reserve()
        return self._prepared(r)

    @staticmethod
    def _prepared(r: Reservation) -> Any:
        response = issuing_pb2.PrepareIssuanceResponse(
            reservation_id=r.reservation_id, documents=r.documents,
            fee=types_pb2.Money(yen=r.fee))
        response.expires_at.FromDatetime(r.expires_at)
        return response

    def _reservation(self, code: str, rid: str) -> Reservation:
        self._tenant(code)
        r = self.reservations.get(rid)
        if r is None or r.code != code:
            raise KonbiniError("RESERVATION_NOT_FOUND", "no such reservation")
        return r

    async def CommitIssuance(self, request: Any, context: Any) -> Any:
        r = self._reservation(request.municipality_code.value, request.reservation_id)
        if r.state == types_pb2.ISSUANCE_STATE_CANCELLED:
            raise KonbiniError("RESERVATION_CANCELLED", "cancelled")
        if r.state == types_pb2.ISSUANCE_STATE_RESERVED:
            now = self.clock.now()
            if now > r.expires_at:
                raise KonbiniError("RESERVATION_EXPIRED", "expired")
            r.state = types_pb2.ISSUANCE_STATE_COMMITTED
            r.committed_at = now
            r.commits += 1
        response = issuing_pb2.CommitIssuanceResponse(
            state=types_pb2.ISSUANCE_STATE_COMMITTED,
            issue_numbers=[f"{r.reservation_id[:8]}-{i}" for i in range(r.copies)])
        assert r.committed_at is not None
        response.committed_at.FromDatetime(r.committed_at)
        return response

    async def CancelIssuance(self, request: Any, context: Any) -> Any:
        r = self._reservation(request.municipality_code.value, request.reservation_id)
        if r.state == types_pb2.ISSUANCE_STATE_COMMITTED:
            raise KonbiniError("RESERVATION_COMMITTED", "committed")
        if r.state == types_pb2.ISSUANCE_STATE_RESERVED:
            r.state = types_pb2.ISSUANCE_STATE_CANCELLED
            r.cancels += 1
        return issuing_pb2.CancelIssuanceResponse(state=r.state)

    async def GetReservation(self, request: Any, context: Any) -> Any:
        rid = request.reservation_id or self.by_prepare.get(request.prepare_request_id, "")
        r = self._reservation(request.municipality_code.value, rid)
        response = issuing_pb2.GetReservationResponse(
            reservation_id=r.reservation_id, state=r.state, fee=types_pb2.Money(yen=r.fee))
        response.expires_at.FromDatetime(r.expires_at)
        return response

    async def ListIssueRecords(self, request: Any, context: Any) -> Any:
        self._tenant(request.municipality_code.value)
        records = []
        for r in self.reservations.values():
            if r.code == request.municipality_code.value and r.committed_at is not None:
                rec = issuing_pb2.IssueRecord(
                    reservation_id=r.reservation_id, kind=r.kind, copies=r.copies,
                    fee=types_pb2.Money(yen=r.fee), issuance_id=r.issuance_id,
                    store_operator=r.store_operator)
                rec.committed_at.FromDatetime(r.committed_at)
                records.append(rec)
        return issuing_pb2.ListIssueRecordsResponse(records=records)

    async def GetCardHolder(self, request: Any, context: Any) -> Any:
        self._tenant(request.municipality_code.value)
        return issuing_pb2.GetCardHolderResponse(
            name="甲府 太郎", birth_date=types_pb2.Date(year=1980, month=4, day=1))

    async def LinkFamilyRegister(self, request: Any, context: Any) -> Any:
        self._tenant(request.municipality_code.value)
        self.links[request.registration_id] = self.link_decision
        return issuing_pb2.LinkFamilyRegisterResponse(decision=self.link_decision)

    async def GetFamilyRegisterLink(self, request: Any, context: Any) -> Any:
        self._tenant(request.municipality_code.value)
        return issuing_pb2.GetFamilyRegisterLinkResponse(
            decision=self.links.get(request.registration_id, self.link_decision))


async def start_fake_municipality(
    pki: PkiDir, fake: FakeMunicipality, server_name: str
) -> tuple[grpc.aio.Server, int]:
    """Serve ``fake`` over mTLS on 127.0.0.1:0 with the municipality server certificate."""
    cert, key = pki.municipality_server(server_name).read()
    creds = server_credentials(cert, key, pki.network_ca_cert.read_bytes())
    server, port, _health = create_server(
        [ServiceBinding(issuing_pb2_grpc.add_IssuingServiceServicer_to_server, fake,
                        "konbini.issuing.v1.IssuingService")],
        ServerOptions(credentials=creds, interceptors=(contract_authorization(),)))
    await server.start()
    return server, port


def centre_config(pki: PkiDir, store_url: str, **changes: Any) -> CentreConfig:
    """A test-mode centre on loopback port 0."""
    values: dict[str, Any] = {"pki_dir": pki.root, "bind": "127.0.0.1:0", "public_bind": "",
                              "store_url": store_url, "test_mode": True,
                              "relay_interval_s": 0.2, "sweep_interval_s": 0.5}
    values.update(changes)
    return CentreConfig(**values)


async def start_centre(config: CentreConfig, **kwargs: Any) -> CentreServer:
    """Build and start an in-process centre (fake back sides unless given; its clock pinned
    inside service hours unless given, see test_time_support)."""
    kwargs.setdefault("back_sides", fake_back_sides)
    kwargs.setdefault("clock", pinned_clock())
    built = build_centre(config, **kwargs)
    await built.start()
    return built


def client_channel(pki: PkiDir, port: int, paths: Any) -> grpc.aio.Channel:
    """An mTLS channel to the centre with the client certificate ``paths``."""
    cert, key = paths.read()
    creds = channel_credentials(pki.network_ca_cert.read_bytes(), cert, key)
    return grpc.aio.secure_channel(f"127.0.0.1:{port}", creds)


def kiosk_stub(pki: PkiDir, port: int, operator: str = "seven", terminal: str = "T0001") -> Any:
    """A KioskService stub as terminal operator:terminal."""
    return kiosk_pb2_grpc.KioskServiceStub(
        client_channel(pki, port, pki.terminal_client(operator, terminal)))


def fixture_stub(pki: PkiDir, port: int) -> Any:
    """A FixtureService stub as the conformance suite."""
    return testing_pb2_grpc.FixtureServiceStub(client_channel(pki, port, pki.conformance_client))


async def pin_clock(fixtures: Any, clock: Clock | None = None) -> dt.datetime:
    """Move a test-mode centre's clock to ``clock.now()`` (default: a pinned_clock, inside
    service hours) through FixtureService.SetClock; the offset is stored, so every process on
    the store moves. Returns the time set."""
    request = testing_pb2.SetClockRequest(request_id=uuid.uuid4().hex)
    request.now.FromDatetime((clock or pinned_clock()).now())
    answer = await fixtures.SetClock(request)
    return answer.now.ToDatetime(tzinfo=dt.UTC)


async def load_routes(fixtures: Any, routes: dict[str, tuple[str, list[int]]],
                      bindings: dict[str, str]) -> None:
    """Load routes {code: (tls name, ports)} and card bindings {serial: code}."""
    await fixtures.LoadDataset(testing_pb2.LoadDatasetRequest(
        request_id=uuid.uuid4().hex, centre=testing_pb2.CentreDataset(
            routes=[testing_pb2.MunicipalityRoute(
                code=types_pb2.MunicipalityCode(value=code), name=f"m{code}",
                endpoints=[f"127.0.0.1:{p}" for p in ports], tls_server_name=name)
                for code, (name, ports) in routes.items()],
            card_bindings=[testing_pb2.CentreCardBinding(
                certificate_serial=serial, municipality_code=types_pb2.MunicipalityCode(value=c))
                for serial, c in bindings.items()])))


class Card:
    """A software card driven through APDUs, as a terminal would."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.card = JpkiCard(SoftCard.open(path))
        self.card.select_jpki()
        self.certificate = self.card.read_auth_certificate()
        self.card.verify_pin(PIN)

    @classmethod
    def issue(cls, pki: PkiDir, directory: Path, *, expired: bool = False) -> tuple[Card, str]:
        """A new card and its serial (lowercase hex), valid from before the pinned time."""
        path = directory / f"card-{uuid.uuid4().hex}.json"
        serial = issue_soft_card(pki.jpki_ca(), path, PIN, now=pki_instant(),
                                 expired=expired)
        assert serial is not None
        return cls(path), format(serial, "x")

    def sign(self, data: bytes) -> bytes:
        """The card's signature over ``data`` (PIN verified)."""
        return self.card.sign_sha256(data)


async def open_session(kiosk: Any, card: Card) -> tuple[str, bytes]:
    """CreateSession + Authenticate; returns (session_id, challenge)."""
    created = await kiosk.CreateSession(kiosk_pb2.CreateSessionRequest(
        request_id=uuid.uuid4().hex))
    intent = kiosk_pb2.AuthIntent(session_id=created.session_id,
                                  challenge=created.challenge).SerializeToString()
    await kiosk.Authenticate(kiosk_pb2.AuthenticateRequest(
        request_id=uuid.uuid4().hex, session_id=created.session_id,
        auth_certificate_der=card.certificate, intent=intent, signature=card.sign(intent)))
    return created.session_id, created.challenge


def issuance_request(card: Card, session_id: str, challenge: bytes, code: str,
                     request_id: str | None = None, *, copies: int = 1,
                     kind: int = types_pb2.CERTIFICATE_KIND_RESIDENCE_RECORD) -> Any:
    """A card-signed RequestIssuanceRequest."""
    request_id = request_id or uuid.uuid4().hex
    intent = kiosk_pb2.IssuanceIntent(
        session_id=session_id, challenge=challenge, request_id=request_id,
        municipality_code=types_pb2.MunicipalityCode(value=code), kind=kind, copies=copies,
        options=types_pb2.CertificateOptions(residence_record=types_pb2.ResidenceRecordOptions(
            scope=types_pb2.HOUSEHOLD_SCOPE_SELF))).SerializeToString()
    return kiosk_pb2.RequestIssuanceRequest(request_id=request_id, session_id=session_id,
                                            intent=intent, signature=card.sign(intent))


class CentreProcess:
    """`python -m centre.cli serve` with a port file; killable and restartable on one store."""

    def __init__(self, config: Path, directory: Path) -> None:
        self.config = config
        self.directory = directory
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    async def start(self) -> int:
        port_file = self.directory / f"ports-{uuid.uuid4().hex}.json"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "centre.cli", "serve", "--config", str(self.config),
             "--port-file", str(port_file)],
            cwd=REPO, stdout=subprocess.DEVNULL, stderr=open(self.directory / "centre.log", "ab"),  # noqa: SIM115
            env={**os.environ, "PYTHONPATH": os.pathsep.join(  # keep the caller's entries
                p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)})
        loop = asyncio.get_running_loop()
        end = loop.time() + 30
        while not port_file.exists():  # the server writes it once it serves
            assert self.proc.poll() is None, (self.directory / "centre.log").read_text()
            assert loop.time() < end, "the centre did not start"
            await asyncio.sleep(0.05)
        self.port = int(json.loads(port_file.read_text())["port"])
        return self.port

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
