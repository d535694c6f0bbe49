"""What the centre-role checks work with. Against a centre the suite plays terminals
(KioskService with terminal certificates), municipalities (PlatformService with a municipality
certificate) and the municipality servers the centre routes to (the fake IssuingService in
conformance.fakes, served in this process), and provisions the centre through FixtureService
(routes to the fakes, card bindings, the suite's JPKI CA and CRLs)."""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from google.protobuf.timestamp_pb2 import Timestamp

from conformance.checks.centre.cardkit import CRL_LIFETIME, CardAuthority, SuiteCard
from conformance.failures import CheckFailed
from conformance.fakes import FakeEndpoint, FakeMunicipality
from conformance.fixtures import jst_day
from conformance.target import Answer, ServiceProxy, Wire, attempt, short_text
from konbini.common.v1 import types_pb2
from konbini.kiosk.v1 import kiosk_pb2
from konbini.testing.v1 import testing_pb2

KIOSK = "konbini.kiosk.v1.KioskService"
PLATFORM = "konbini.platform.v1.PlatformService"
FIXTURE = "konbini.testing.v1.FixtureService"
K = types_pb2
RESIDENCE = K.CERTIFICATE_KIND_RESIDENCE_RECORD
FAMILY_REGISTER = K.CERTIFICATE_KIND_FAMILY_REGISTER_FULL
POLL = 0.05  # seconds between looks at the fake while waiting for the centre's relay


def timestamp(at: dt.datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(at)
    return ts


def residence_options() -> K.CertificateOptions:
    return K.CertificateOptions(
        residence_record=K.ResidenceRecordOptions(scope=K.HOUSEHOLD_SCOPE_SELF))


@dataclass
class Session:
    """An authenticated kiosk session as a terminal holds it."""

    terminal: str  # wire identity
    card: SuiteCard
    session_id: str
    challenge: bytes


@dataclass
class CentreContext:
    """One run against a centre (see the module doc)."""

    wire: Wire
    codes: tuple[str, ...]  # the tenants the fake municipality serves (first: main)
    now: dt.datetime  # the suite's clock (aware UTC), set on the centre and the fake
    seed: int
    examples: int
    fake: FakeMunicipality
    endpoint: FakeEndpoint
    cards: CardAuthority  # the CA the centre is told to trust (LoadDataset)
    stranger: CardAuthority  # a CA the centre never hears of (CARD-CHAIN)
    make_authority: Callable[[], CardAuthority]  # fresh CAs (CARD-CRL-FRESH)
    docsign_roots: tuple[x509.Certificate, ...] = ()  # trust-list anchors (TRUST-LIST-SIGNED)
    relay_wait: float = 30.0  # seconds the centre may take to relay a completion
    quiet_wait: float = 1.5  # seconds the fake is watched for calls that must not come
    role: str = "centre"
    cache: dict[str, Any] = field(default_factory=dict)
    closers: list[Callable[[], None]] = field(default_factory=list)
    _ids: itertools.count = field(default_factory=itertools.count)

    @property
    def target(self) -> str:
        return self.wire.config.address

    @property
    def code(self) -> str:
        return self.codes[0]

    @property
    def other_code(self) -> str:
        return self.codes[1]

    @property
    def today(self) -> dt.date:
        return jst_day(self.now)

    # -- engine hooks ----------------------------------------------------------------------
    def before_check(self) -> None:
        self.wire.start_example()

    def take_calls(self) -> tuple[Any, ...]:
        return self.wire.take_calls()

    def close(self) -> None:
        """Stop the fake municipality server (the run is over)."""
        while self.closers:
            with contextlib.suppress(Exception):
                self.closers.pop()()

    # -- services --------------------------------------------------------------------------
    def kiosk(self, terminal: str = "terminal") -> ServiceProxy:
        return self.wire.service(terminal, KIOSK)

    def platform(self, identity: str = "municipality") -> ServiceProxy:
        return self.wire.service(identity, PLATFORM)

    @property
    def fixture(self) -> ServiceProxy:
        return self.wire.service("fixture", FIXTURE)

    def rid(self, prefix: str = "cf") -> str:
        return f"{prefix}-{self.seed}-{next(self._ids)}"

    # -- provisioning ----------------------------------------------------------------------
    def card(self, **kwargs: Any) -> SuiteCard:
        return self.cards.card(self.now, **kwargs)

    def crl(self, authority: CardAuthority, revoked: Iterable[int] = ()) -> bytes:
        """A fresh CRL: newer than any the centre holds from elsewhere, valid long enough for
        every clock a check sets."""
        return authority.crl_der(self.now - dt.timedelta(hours=12), self.now + CRL_LIFETIME,
                                 tuple(revoked))

    def load(
        self,
        bindings: dict[str, str],
        *,
        revoked: Iterable[int] = (),
        extra_trust: Iterable[tuple[bytes, bytes]] = (),
        routes: dict[str, str | list[str]] | None = None,
        at: dt.datetime | None = None,
    ) -> None:
        """Reset the centre and the fake, load routes (every tenant to the fake unless
        ``routes`` maps codes to other endpoints, one or a list tried in order), card bindings
        {serial: code}, the suite's CA with a fresh CRL (``revoked`` listed) and
        ``extra_trust`` (CA DER, CRL DER) pairs; then set both clocks."""
        self.fake.reset()
        self.fixture.Reset(testing_pb2.ResetRequest(request_id=self.rid("reset")))
        endpoints: dict[str, list[str]] = {c: [self.endpoint.endpoint] for c in self.codes}
        for code, given in (routes or {}).items():
            endpoints[code] = [given] if isinstance(given, str) else list(given)
        cas = [self.cards.certificate_der] + [ca for ca, _ in extra_trust]
        crls = [self.crl(self.cards, revoked)] + [crl for _, crl in extra_trust]
        dataset = testing_pb2.CentreDataset(
            routes=[
                testing_pb2.MunicipalityRoute(
                    code=K.MunicipalityCode(value=c), name=f"conformance {c}", endpoints=e,
                    tls_server_name=self.endpoint.tls_server_name)
                for c, e in endpoints.items()
            ],
            card_bindings=[
                testing_pb2.CentreCardBinding(
                    certificate_serial=s, municipality_code=K.MunicipalityCode(value=c))
                for s, c in bindings.items()
            ],
            jpki_ca_certificates_der=cas,
            crls_der=crls,
        )
        self.fixture.LoadDataset(testing_pb2.LoadDatasetRequest(
            request_id=self.rid("load"), replace=True, centre=dataset))
        self.set_clock(at or self.now)

    def set_clock(self, at: dt.datetime) -> None:
        self.fixture.SetClock(
            testing_pb2.SetClockRequest(request_id=self.rid("clock"), now=timestamp(at)))
        self.fake.set_clock(at)

    def bound_cards(self, n: int, code: str | None = None, **load: Any) -> list[SuiteCard]:
        """``n`` new cards bound to ``code`` (the main tenant), loaded."""
        cards = [self.card() for _ in range(n)]
        self.load({c.serial: code or self.code for c in cards}, **load)
        return cards

    # -- the terminal's calls --------------------------------------------------------------
    def create_session(self, terminal: str = "terminal") -> kiosk_pb2.CreateSessionResponse:
        return self.kiosk(terminal).CreateSession(
            kiosk_pb2.CreateSessionRequest(request_id=self.rid("cs")))

    def auth_request(
        self, card: SuiteCard, session_id: str, challenge: bytes, *, certificate: bytes = b"",
        tamper: bool = False,
    ) -> kiosk_pb2.AuthenticateRequest:
        intent = kiosk_pb2.AuthIntent(session_id=session_id, challenge=challenge)
        intent.created_at.FromDatetime(self.now)
        data = intent.SerializeToString()
        signature = card.sign(data)
        if tamper:
            signature = bytes([signature[0] ^ 0x01]) + signature[1:]
        return kiosk_pb2.AuthenticateRequest(
            request_id=self.rid("auth"), session_id=session_id,
            auth_certificate_der=certificate or card.certificate_der, intent=data,
            signature=signature)

    def authenticate(self, card: SuiteCard, terminal: str = "terminal", **kwargs: Any) -> tuple[
        kiosk_pb2.AuthenticateRequest, Answer, kiosk_pb2.CreateSessionResponse
    ]:
        created = self.create_session(terminal)
        request = self.auth_request(card, created.session_id, created.challenge, **kwargs)
        return request, attempt(lambda: self.kiosk(terminal).Authenticate(request)), created

    def open_session(self, card: SuiteCard, terminal: str = "terminal",
                     requirement: str = "CARD-BINDING") -> Session:
        """An authenticated session; a refusal fails ``requirement`` (a good card, bound)."""
        request, answer, created = self.authenticate(card, terminal)
        if not answer.ok:
            raise CheckFailed(requirement, short_text(request), answer.describe(),
                              "a valid, bound card was refused", expected={"outcome": "ok"})
        return Session(terminal, card, created.session_id, created.challenge)

    def issuance_request(
        self, session: Session, *, code: str | None = None, kind: int = RESIDENCE,
        copies: int = 1, request_id: str | None = None,
        options: K.CertificateOptions | None = None,
    ) -> kiosk_pb2.RequestIssuanceRequest:
        request_id = request_id or self.rid("ri")
        intent = kiosk_pb2.IssuanceIntent(
            session_id=session.session_id, challenge=session.challenge, request_id=request_id,
            municipality_code=K.MunicipalityCode(value=code or self.code), kind=kind,
            options=options if options is not None else residence_options(), copies=copies,
        ).SerializeToString()
        return kiosk_pb2.RequestIssuanceRequest(
            request_id=request_id, session_id=session.session_id, intent=intent,
            signature=session.card.sign(intent))

    def request(self, session: Session, request: kiosk_pb2.RequestIssuanceRequest,
                timeout: float | None = None) -> Answer:
        return attempt(lambda: self.kiosk(session.terminal).RequestIssuance(
            request, timeout=timeout))

    def complete(self, terminal: str, issuance_id: str, outcome: int, *,
                 request_id: str | None = None,
                 cause: int = kiosk_pb2.FAILURE_CAUSE_UNSPECIFIED) -> Answer:
        request = kiosk_pb2.CompleteIssuanceRequest(
            request_id=request_id or self.rid("done"), issuance_id=issuance_id,
            outcome=outcome, failure_cause=cause)  # type: ignore[arg-type]
        return attempt(lambda: self.kiosk(terminal).CompleteIssuance(request))

    def issue(self, session: Session, requirement: str, **kwargs: Any) -> tuple[
        kiosk_pb2.RequestIssuanceRequest, kiosk_pb2.RequestIssuanceResponse
    ]:
        """A request that must be answered with documents (else ``requirement`` fails)."""
        request = self.issuance_request(session, **kwargs)
        answer = self.request(session, request)
        if not answer.ok or not isinstance(answer.response, kiosk_pb2.RequestIssuanceResponse) \
                or not answer.response.documents:
            raise CheckFailed(requirement, short_text(request), answer.describe(),
                              "an eligible request was not answered with documents",
                              expected={"outcome": "ok"})
        return request, answer.response

    # -- watching the fake -----------------------------------------------------------------
    def wait_until(self, condition: Callable[[], bool], timeout: float) -> bool:
        """Poll ``condition`` until it holds (True) or ``timeout`` seconds pass (False)."""
        end = time.monotonic() + timeout
        while True:
            if condition():
                return True
            if time.monotonic() >= end:
                return False
            time.sleep(POLL)

    # -- judging ---------------------------------------------------------------------------
    @staticmethod
    def expect_refused(request: Any, answer: Answer, reasons: set[str], requirement: str,
                       why: str) -> None:
        expected = {"outcome": "error", "reason": "|".join(sorted(reasons))}
        if answer.ok or answer.error is None or answer.error.reason not in reasons:
            raise CheckFailed(
                requirement, request if isinstance(request, str) else short_text(request),
                answer.describe(), f"expected {'/'.join(sorted(reasons))} ({why})",
                expected=expected)
