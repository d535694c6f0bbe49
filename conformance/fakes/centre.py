"""The suite's fake centre: the KioskService a terminal under test is configured to use.

It answers as a centre would (sessions bound to the calling terminal, the card's signature
verified over the exact intent bytes with :class:`konbini.pki.cardcheck.CardVerifier`,
idempotency on request_id, catalogue fees, reservation expiry, completions), builds its own
image-only documents, and records every call it receives — request bytes and metadata — so
that checks can see what the terminal sent. Checks steer it through :class:`Faults`: answer
UNAVAILABLE before doing anything, lose an answer after the effect, deliver a reservation that
expires at once, or a fee that disagrees with the catalogue.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import secrets
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
from cryptography import x509
from google.protobuf import timestamp_pb2
from google.protobuf.message import DecodeError, Message

from conformance.fakes.centre_documents import document_mark, document_pdf
from conformance.harness import background_server
from konbini.common.v1 import types_pb2
from konbini.errors import FieldViolation, KonbiniError, invalid
from konbini.kiosk.v1 import kiosk_pb2, kiosk_pb2_grpc
from konbini.pki.cardcheck import CardVerifier, StaticCrls
from konbini.pki.mtls import peer_identity, server_credentials
from konbini.server import (
    ServerOptions,
    ServiceBinding,
    contract_authorization,
    create_server,
    drain,
    start,
)

KIOSK = "konbini.kiosk.v1.KioskService"
KOFU = "192015"
KOFU_NAME = "甲府市"
SESSION_LIFETIME = dt.timedelta(minutes=10)
DEFAULT_RESERVATION_TTL = dt.timedelta(minutes=5)
CRL_GRACE = dt.timedelta(days=1)
K = types_pb2


def catalogue(fiscal_year: int) -> tuple[types_pb2.CatalogueEntry, ...]:
    """The fake's menu: three kinds of the one municipality behind it, with different fees."""
    code = K.MunicipalityCode(value=KOFU)
    return (
        K.CatalogueEntry(
            municipality_code=code, municipality_name=KOFU_NAME,
            kind=K.CERTIFICATE_KIND_RESIDENCE_RECORD, fee=K.Money(yen=200),
            available_now=True, max_copies=3,
            permitted_options=K.ResidenceRecordOptions(show_household_head=True),
            selectable=[K.Person(ref="self", display_name="本人", relationship="本人")]),
        K.CatalogueEntry(
            municipality_code=code, municipality_name=KOFU_NAME,
            kind=K.CERTIFICATE_KIND_SEAL_REGISTRATION, fee=K.Money(yen=250),
            available_now=True, max_copies=2),
        K.CatalogueEntry(
            municipality_code=code, municipality_name=KOFU_NAME,
            kind=K.CERTIFICATE_KIND_INCOME_TAX, fee=K.Money(yen=300), available_now=True,
            max_copies=2, fiscal_years=[fiscal_year]),
    )


def _ts(value: dt.datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value)
    return stamp


@dataclass
class ReceivedCall:
    """One call that reached the fake: exactly what the terminal sent."""

    method: str
    terminal: str
    request: Message
    request_bytes: bytes
    metadata: tuple[tuple[str, str | bytes], ...]
    outcome: str = "pending"  # "ok", "UNAVAILABLE (injected)", "REASON", "UNAVAILABLE (lost)"


@dataclass
class FakeSession:
    session_id: str
    terminal: str
    challenge: bytes
    expires_at: dt.datetime
    serial: int | None = None
    certificate_der: bytes = b""
    challenge_used: bool = False
    ended: bool = False


@dataclass
class Completion:
    request_id: str
    outcome: str  # PRINTED or FAILED (or UNSPECIFIED)
    cause: str


@dataclass
class FakeIssuance:
    """What the fake delivered for one RequestIssuance, and how it ended."""

    issuance_id: str
    request_id: str
    session_id: str
    serial: int
    terminal: str
    kind: int
    copies: int
    fee: int
    catalogue_fee: int  # catalogue fee per copy times copies (what a terminal may charge)
    expires_at: dt.datetime
    documents: tuple[bytes, ...]
    marks: tuple[str, ...]
    state: str = "DELIVERED"
    charged: int = 0
    completions: list[Completion] = field(default_factory=list)


@dataclass
class Faults:
    """What the fake does wrong on purpose (reset before every check)."""

    unavailable_before: dict[str, int] = field(default_factory=dict)  # method -> count
    lose_answer: dict[str, int] = field(default_factory=dict)  # effect done, answer lost
    reservation_ttl: dt.timedelta = DEFAULT_RESERVATION_TTL
    fee_delta: int = 0  # added to the fee of the next deliveries


@dataclass
class CentreState:
    """Everything the fake holds; shared between the server thread and the checks."""

    verifier: CardVerifier
    catalogue: tuple[types_pb2.CatalogueEntry, ...]
    now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)
    bindings: dict[int, str] = field(default_factory=dict)  # card serial -> municipality
    faults: Faults = field(default_factory=Faults)
    calls: list[ReceivedCall] = field(default_factory=list)
    sessions: dict[str, FakeSession] = field(default_factory=dict)
    issuances: dict[str, FakeIssuance] = field(default_factory=dict)
    rejected_signatures: list[str] = field(default_factory=list)  # methods
    answers: dict[tuple[str, str, str], tuple[bytes, bytes]] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock)

    def reset(self) -> None:
        """Forget every call, session and issuance (card bindings stay: cards are per run)."""
        with self.lock:
            self.faults = Faults()
            self.calls.clear()
            self.sessions.clear()
            self.issuances.clear()
            self.rejected_signatures.clear()
            self.answers.clear()

    def received(self, method: str | None = None) -> list[ReceivedCall]:
        with self.lock:
            return [c for c in self.calls if method is None or c.method == method]

    def issuance_list(self) -> list[FakeIssuance]:
        with self.lock:
            return list(self.issuances.values())

    def by_mark(self, mark: str) -> FakeIssuance | None:
        with self.lock:
            return next((i for i in self.issuances.values() if mark in i.marks), None)

    def by_pdf(self, pdf: bytes) -> FakeIssuance | None:
        with self.lock:
            return next((i for i in self.issuances.values() if pdf in i.documents), None)


class FakeKioskService(kiosk_pb2_grpc.KioskServiceServicer):
    """KioskService with one municipality behind it (unimplemented: use registration)."""

    def __init__(self, state: CentreState) -> None:
        self.s = state

    # -- plumbing --------------------------------------------------------------------------
    async def _receive(
        self, method: str, request: Message, context: grpc.aio.ServicerContext
    ) -> ReceivedCall:
        identity = peer_identity(context)
        call = ReceivedCall(
            method, f"{identity.store_operator}:{identity.id}", request,
            request.SerializeToString(), tuple(context.invocation_metadata() or ()))
        with self.s.lock:
            self.s.calls.append(call)
            left = self.s.faults.unavailable_before.get(method, 0)
            if left:
                self.s.faults.unavailable_before[method] = left - 1
        if left:
            call.outcome = "UNAVAILABLE (injected)"
            await context.abort(grpc.StatusCode.UNAVAILABLE, "injected outage")
        return call

    async def _answer(self, call: ReceivedCall, response: Message,
                      context: grpc.aio.ServicerContext) -> Message:
        with self.s.lock:
            left = self.s.faults.lose_answer.get(call.method, 0)
            if left:
                self.s.faults.lose_answer[call.method] = left - 1
        if left:
            call.outcome = "UNAVAILABLE (answer lost)"
            await context.abort(grpc.StatusCode.UNAVAILABLE, "answer lost")
        call.outcome = "ok"
        return response

    @staticmethod
    def _intent(message_type: type[Message], data: bytes) -> Any:
        try:
            return message_type.FromString(data)
        except DecodeError:
            raise invalid([FieldViolation("intent", "not a serialized intent")]) from None

    def _once(self, call: ReceivedCall, request: Any, make: Callable[[], Message]) -> Message:
        """Idempotency on (method, terminal, request_id); a refusal is remembered too."""
        key = (call.method, call.terminal, request.request_id)
        fingerprint = request.SerializeToString(deterministic=True)
        with self.s.lock:
            if key in self.s.answers:
                seen, answer = self.s.answers[key]
                if seen != fingerprint:
                    call.outcome = "REQUEST_ID_REUSED"
                    raise KonbiniError("REQUEST_ID_REUSED", "request id reused")
                return _response_type(call.method).FromString(answer)
            try:
                response = make()
            except KonbiniError as error:
                call.outcome = error.reason
                raise
            self.s.answers[key] = (fingerprint, response.SerializeToString())
            return response

    def _session(self, session_id: str, terminal: str, *, authenticated: bool) -> FakeSession:
        found = self.s.sessions.get(session_id)
        if found is None or found.terminal != terminal or found.ended:
            raise KonbiniError("SESSION_UNKNOWN", "no such session")
        if self.s.now() > found.expires_at:
            raise KonbiniError("SESSION_EXPIRED", "session expired")
        if authenticated and found.serial is None:
            raise KonbiniError("SESSION_NOT_AUTHENTICATED", "not authenticated")
        return found

    def _verify(self, method: str, cert_der: bytes, intent: bytes, signature: bytes) -> int:
        try:
            return self.s.verifier.verify_at(self.s.now(), cert_der, intent, signature).serial
        except KonbiniError:
            self.s.rejected_signatures.append(method)
            raise

    # -- KioskService ----------------------------------------------------------------------
    async def CreateSession(self, request, context):
        call = await self._receive("CreateSession", request, context)

        def make() -> kiosk_pb2.CreateSessionResponse:
            session = FakeSession(secrets.token_hex(8), call.terminal, secrets.token_bytes(32),
                                  self.s.now() + SESSION_LIFETIME)
            self.s.sessions[session.session_id] = session
            return kiosk_pb2.CreateSessionResponse(
                session_id=session.session_id, challenge=session.challenge,
                expires_at=_ts(session.expires_at))

        return await self._answer(call, self._once(call, request, make), context)

    async def Authenticate(self, request, context):
        call = await self._receive("Authenticate", request, context)

        def make() -> kiosk_pb2.AuthenticateResponse:
            session = self._session(request.session_id, call.terminal, authenticated=False)
            intent = self._intent(kiosk_pb2.AuthIntent, request.intent)
            if intent.session_id != session.session_id or intent.challenge != session.challenge:
                raise KonbiniError("CHALLENGE_MISMATCH", "intent does not match the session")
            if session.challenge_used:
                raise KonbiniError("CHALLENGE_REPLAYED", "challenge used")
            serial = self._verify("Authenticate", request.auth_certificate_der, request.intent,
                                  request.signature)
            code = self.s.bindings.get(serial)
            if code is None:
                raise KonbiniError("CARD_NOT_BOUND", "no binding")
            session.challenge_used, session.serial = True, serial
            session.certificate_der = request.auth_certificate_der
            return kiosk_pb2.AuthenticateResponse(
                residence_municipality_code=K.MunicipalityCode(value=code),
                residence_municipality_name=KOFU_NAME, expires_at=_ts(session.expires_at))

        return await self._answer(call, self._once(call, request, make), context)

    async def GetCatalogue(self, request, context):
        call = await self._receive("GetCatalogue", request, context)
        with self.s.lock:
            try:
                self._session(request.session_id, call.terminal, authenticated=True)
            except KonbiniError as error:
                call.outcome = error.reason
                raise
            response = kiosk_pb2.GetCatalogueResponse(entries=self.s.catalogue)
        return await self._answer(call, response, context)

    def _entry(self, intent: kiosk_pb2.IssuanceIntent) -> types_pb2.CatalogueEntry:
        entry = next((e for e in self.s.catalogue if e.kind == intent.kind and
                      e.municipality_code.value == intent.municipality_code.value), None)
        if entry is None:
            raise KonbiniError("KIND_NOT_OFFERED", "not offered")
        if not 1 <= intent.copies <= entry.max_copies:
            raise KonbiniError("TOO_MANY_COPIES", "copies")
        return entry

    async def RequestIssuance(self, request, context):
        call = await self._receive("RequestIssuance", request, context)

        def make() -> kiosk_pb2.RequestIssuanceResponse:
            session = self._session(request.session_id, call.terminal, authenticated=True)
            # The same card signed the exact intent bytes sent.
            serial = self._verify("RequestIssuance", session.certificate_der, request.intent,
                                  request.signature)
            intent = self._intent(kiosk_pb2.IssuanceIntent, request.intent)
            if (intent.session_id != session.session_id or intent.challenge !=
                    session.challenge or intent.request_id != request.request_id):
                raise KonbiniError("CHALLENGE_MISMATCH", "intent does not match the request")
            entry = self._entry(intent)
            issuance_id = "iss-" + secrets.token_hex(8)
            marks = tuple(document_mark(issuance_id, n) for n in range(1, intent.copies + 1))
            documents = tuple(document_pdf(issuance_id, n) for n in range(1, intent.copies + 1))
            fee = entry.fee.yen * intent.copies
            issuance = FakeIssuance(
                issuance_id, request.request_id, session.session_id, serial, call.terminal,
                intent.kind, intent.copies, fee + self.s.faults.fee_delta, fee,
                self.s.now() + self.s.faults.reservation_ttl, documents, marks)
            self.s.issuances[issuance_id] = issuance
            return kiosk_pb2.RequestIssuanceResponse(
                issuance_id=issuance_id,
                documents=[K.Document(pdf=pdf, signed_metadata=mark.encode(), signature=b"-")
                           for pdf, mark in zip(documents, marks, strict=True)],
                fee=K.Money(yen=issuance.fee), expires_at=_ts(issuance.expires_at),
                state=K.ISSUANCE_STATE_DELIVERED)

        return await self._answer(call, self._once(call, request, make), context)

    async def CompleteIssuance(self, request, context):
        call = await self._receive("CompleteIssuance", request, context)

        def make() -> kiosk_pb2.CompleteIssuanceResponse:
            found = self.s.issuances.get(request.issuance_id)
            if found is None or found.terminal != call.terminal:
                raise KonbiniError("RESERVATION_NOT_FOUND", "no such issuance")
            outcome = kiosk_pb2.PrintOutcome.Name(request.outcome).removeprefix(
                "PRINT_OUTCOME_")
            cause = kiosk_pb2.FailureCause.Name(request.failure_cause).removeprefix(
                "FAILURE_CAUSE_")
            found.completions.append(Completion(request.request_id, outcome, cause))
            if found.state != "DELIVERED":
                raise KonbiniError(f"RESERVATION_{found.state}", "already final")
            if outcome == "PRINTED":
                if self.s.now() > found.expires_at:
                    found.state = "EXPIRED"
                    raise KonbiniError("RESERVATION_EXPIRED", "expired")
                found.state, found.charged = "COMMITTED", found.fee
            elif outcome == "FAILED":
                found.state = "CANCELLED"
            else:
                raise KonbiniError("FIELD_INVALID", "outcome unspecified")
            return kiosk_pb2.CompleteIssuanceResponse(
                state=K.IssuanceState.Value(f"ISSUANCE_STATE_{found.state}"),
                charged=K.Money(yen=found.charged))

        return await self._answer(call, self._once(call, request, make), context)

    async def GetIssuance(self, request, context):
        call = await self._receive("GetIssuance", request, context)
        with self.s.lock:
            found = (self.s.issuances.get(request.issuance_id) if request.issuance_id else
                     next((i for i in self.s.issuances.values()
                           if i.request_id == request.request_id), None))
            if found is None or found.terminal != call.terminal:
                call.outcome = "RESERVATION_NOT_FOUND"
                raise KonbiniError("RESERVATION_NOT_FOUND", "no such issuance")
            response = kiosk_pb2.GetIssuanceResponse(
                issuance_id=found.issuance_id,
                state=K.IssuanceState.Value(f"ISSUANCE_STATE_{found.state}"),
                fee=K.Money(yen=found.fee), expires_at=_ts(found.expires_at))
        return await self._answer(call, response, context)

    async def EndSession(self, request, context):
        call = await self._receive("EndSession", request, context)
        with self.s.lock:
            found = self.s.sessions.get(request.session_id)
            if found is not None and found.terminal == call.terminal:
                found.ended = True
        return await self._answer(call, kiosk_pb2.EndSessionResponse(), context)


def _response_type(method: str) -> type[Message]:
    return {
        "CreateSession": kiosk_pb2.CreateSessionResponse,
        "Authenticate": kiosk_pb2.AuthenticateResponse,
        "RequestIssuance": kiosk_pb2.RequestIssuanceResponse,
        "CompleteIssuance": kiosk_pb2.CompleteIssuanceResponse,
    }[method]


@dataclass(frozen=True)
class CentreTls:
    """The fake centre's server certificate and the CA its terminal clients chain to."""

    cert_pem: bytes
    key_pem: bytes
    client_ca_pem: bytes


@dataclass
class FakeCentre:
    """A running fake centre: its state and the port it listens on."""

    state: CentreState
    port: int


def centre_state(jpki_ca: x509.Certificate, crl: x509.CertificateRevocationList,
                 fiscal_year: int) -> CentreState:
    """A fresh state trusting the suite's JPKI CA (and only it) for cards."""
    verifier = CardVerifier([jpki_ca], StaticCrls((crl,)), CRL_GRACE)
    return CentreState(verifier=verifier, catalogue=catalogue(fiscal_year))


@contextlib.contextmanager
def running_centre(state: CentreState, listen: str, tls: CentreTls) -> Iterator[FakeCentre]:
    """Serve the fake on ``listen`` (mTLS, terminals only) in a background thread."""

    @contextlib.asynccontextmanager
    async def serving() -> AsyncIterator[int]:
        server, port, health = create_server(
            [ServiceBinding(kiosk_pb2_grpc.add_KioskServiceServicer_to_server,
                            FakeKioskService(state), KIOSK)],
            ServerOptions(
                bind=listen,
                credentials=server_credentials(tls.cert_pem, tls.key_pem, tls.client_ca_pem),
                interceptors=(contract_authorization(),),
            ),
        )
        await start(server, health, [KIOSK])
        try:
            yield port
        finally:
            await drain(server, health, grace=0.5)

    with background_server(serving) as port:
        yield FakeCentre(state, port)
