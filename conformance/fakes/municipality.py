"""The fake municipality IssuingService a centre under test routes to.

It is deliberately simple and observable: every card serial is a resident, every document is
signed by the municipality's document signer and names its card holder
(:func:`conformance.fakes.documents.holder_digest`), and every call is recorded so that a check
can say what reached the municipality (one prepare, a commit, a cancel, nothing at all).
Behaviours a check needs are switched on per card or per call: a typed refusal, a slow
prepare, a prepare whose answer is lost after reserving, commits refused as UNAVAILABLE, a
catalogue without some kinds or with hours of its own per kind, and the decision on a
family-register link (use registrations).

State is guarded by a threading lock: the server runs on its own event loop thread while the
(synchronous) checks read it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
from cryptography.hazmat.primitives.asymmetric import ec

from conformance.fakes.documents import holder_of, make_document
from konbini.common.v1 import types_pb2
from konbini.errors import KonbiniError
from konbini.hours import STANDARD_HOURS
from konbini.issuing.v1 import issuing_pb2, issuing_pb2_grpc

RESERVED = types_pb2.ISSUANCE_STATE_RESERVED
COMMITTED = types_pb2.ISSUANCE_STATE_COMMITTED
CANCELLED = types_pb2.ISSUANCE_STATE_CANCELLED
EXPIRED = types_pb2.ISSUANCE_STATE_EXPIRED
KINDS = (
    types_pb2.CERTIFICATE_KIND_RESIDENCE_RECORD,
    types_pb2.CERTIFICATE_KIND_FAMILY_REGISTER_FULL,
)
HOLDER_BIRTH_DATE = types_pb2.Date(year=1980, month=4, day=1)  # every fake holder's
Signer = Callable[[str], tuple[ec.EllipticCurvePrivateKey, str]]


@dataclass
class FakeReservation:
    """What the fake holds for one reservation, and every completion call that reached it."""

    reservation_id: str
    prepare_request_id: str
    code: str
    serial: str
    kind: int
    copies: int
    fee: int
    expires_at: dt.datetime
    documents: list[types_pb2.Document]
    issuance_id: str = ""
    store_operator: str = ""
    state: int = RESERVED
    committed_at: dt.datetime | None = None
    commit_request_ids: list[str] = field(default_factory=list)  # every CommitIssuance call
    cancel_request_ids: list[str] = field(default_factory=list)  # every CancelIssuance call
    commits_refused: int = 0  # answered UNAVAILABLE on purpose


class FakeMunicipality(issuing_pb2_grpc.IssuingServiceServicer):
    """One server serving the tenants ``codes`` (see the module doc)."""

    def __init__(
        self,
        codes: tuple[str, ...],
        signer: Signer,
        *,
        fee: int = 300,
        ttl: dt.timedelta = dt.timedelta(minutes=10),
        max_copies: int = 3,
    ) -> None:
        self.codes = codes
        self.fee = fee
        self.ttl = ttl
        self.max_copies = max_copies
        self._signer = signer
        self._lock = threading.Lock()
        self._offset = dt.timedelta(0)
        self.reset()

    # -- what the checks set and read ------------------------------------------------------
    def reset(self) -> None:
        """Forget every reservation, call and behaviour (before each scenario)."""
        with self._lock:
            self.reservations: dict[str, FakeReservation] = {}
            self.by_prepare: dict[tuple[str, str], str] = {}
            self.prepare_calls: list[issuing_pb2.PrepareIssuanceRequest] = []
            self.catalogue_calls = 0
            # (method, municipality code, reservation id, request id) of every CommitIssuance
            # and CancelIssuance, known reservation or not.
            self.completion_calls: list[tuple[str, str, str, str]] = []
            self.refuse: dict[str, str] = {}  # card serial -> refusal reason
            self.lose_answer: set[str] = set()  # card serials: reserve, then answer UNAVAILABLE
            self.fail_commits = 0  # the next N CommitIssuance calls answer UNAVAILABLE
            self.prepare_delay = 0.0  # seconds a new prepare takes
            # The deadline each PrepareIssuance arrived with (seconds left; None: no deadline).
            self.prepare_deadlines: list[float | None] = []
            self.offered: set[int] = set(KINDS)  # kinds the catalogue lists
            self.hours: dict[int, types_pb2.ServiceHours] = {}  # kind -> own hours (else standard)
            self.holder_calls: list[issuing_pb2.GetCardHolderRequest] = []
            self.link_calls: list[issuing_pb2.LinkFamilyRegisterRequest] = []
            self.link_lookups: list[issuing_pb2.GetFamilyRegisterLinkRequest] = []
            self.link_decision = issuing_pb2.LINK_DECISION_PENDING  # answered to both link calls

    def set_clock(self, at: dt.datetime) -> None:
        """Run from ``at`` on (the same time the suite set on the centre)."""
        with self._lock:
            self._offset = at - dt.datetime.now(dt.UTC)

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC) + self._offset

    def snapshot(self) -> list[FakeReservation]:
        """Copies of every reservation (safe to read from another thread)."""
        with self._lock:
            return [
                FakeReservation(**{**r.__dict__,
                                   "commit_request_ids": list(r.commit_request_ids),
                                   "cancel_request_ids": list(r.cancel_request_ids)})
                for r in self.reservations.values()
            ]

    def prepares_for(self, serial: str) -> list[issuing_pb2.PrepareIssuanceRequest]:
        """Every PrepareIssuance call that named card ``serial``."""
        with self._lock:
            return [p for p in self.prepare_calls if p.card.certificate_serial == serial]

    def reservations_for(self, serial: str) -> list[FakeReservation]:
        return [r for r in self.snapshot() if r.serial == serial]

    def completions(self) -> list[tuple[str, str, str, str]]:
        """Every CommitIssuance / CancelIssuance that arrived, in order."""
        with self._lock:
            return list(self.completion_calls)

    def _note(self, method: str, request: Any) -> None:
        with self._lock:
            self.completion_calls.append((method, request.municipality_code.value,
                                          request.reservation_id, request.request_id))

    # -- helpers -------------------------------------------------------------------------------
    def _tenant(self, code: str) -> None:
        if code not in self.codes:
            raise KonbiniError("TENANT_NOT_SERVED", "this server does not serve that municipality")

    def _expire(self, r: FakeReservation) -> None:
        if r.state == RESERVED and self.now() > r.expires_at:
            r.state = EXPIRED

    def _find(self, code: str, reservation_id: str) -> FakeReservation:
        self._tenant(code)
        r = self.reservations.get(reservation_id)
        if r is None or r.code != code:
            raise KonbiniError("RESERVATION_NOT_FOUND", "no such reservation")
        self._expire(r)
        return r

    @staticmethod
    def _prepared(r: FakeReservation) -> issuing_pb2.PrepareIssuanceResponse:
        response = issuing_pb2.PrepareIssuanceResponse(
            reservation_id=r.reservation_id, documents=r.documents,
            fee=types_pb2.Money(yen=r.fee))
        response.expires_at.FromDatetime(r.expires_at)
        return response

    def _reserve(self, request: issuing_pb2.PrepareIssuanceRequest) -> FakeReservation:
        code = request.municipality_code.value
        serial = request.card.certificate_serial
        rid = uuid.uuid4().hex
        now = self.now()
        key, key_id = self._signer(code)
        documents = [
            make_document(code=code, serial=serial, kind=request.kind, reservation_id=rid,
                          copy_index=i + 1, copies=request.copies, issued_at=now, key=key,
                          key_id=key_id)
            for i in range(request.copies)
        ]
        return FakeReservation(
            rid, request.request_id, code, serial, request.kind, request.copies,
            self.fee * request.copies, now + self.ttl, documents,
            issuance_id=request.origin.issuance_id, store_operator=request.origin.store_operator)

    # -- IssuingService ------------------------------------------------------------------------
    async def GetCatalogue(self, request: Any, context: Any) -> Any:
        self._tenant(request.municipality_code.value)
        with self._lock:
            self.catalogue_calls += 1
            offered = sorted(self.offered)
            hours = dict(self.hours)
        # Always "available": the centre must apply the hours itself (HOURS-*).
        return issuing_pb2.GetCatalogueResponse(entries=[
            types_pb2.CatalogueEntry(
                municipality_code=request.municipality_code, kind=k,  # type: ignore[arg-type]
                fee=types_pb2.Money(yen=self.fee), hours=hours.get(k, STANDARD_HOURS),
                available_now=True, max_copies=self.max_copies)
            for k in offered])

    async def PrepareIssuance(self, request: Any, context: Any) -> Any:
        code = request.municipality_code.value
        serial = request.card.certificate_serial
        self._tenant(code)
        with self._lock:
            self.prepare_calls.append(request)
            self.prepare_deadlines.append(context.time_remaining())
            reason = self.refuse.get(serial)
            existing = self.by_prepare.get((code, request.request_id))
            delay = self.prepare_delay
        if reason is not None:
            raise KonbiniError(reason, "refused by the suite's fake municipality")
        if existing is None and delay:
            await asyncio.sleep(delay)
        made = self._reserve(request) if existing is None else None
        with self._lock:
            existing = self.by_prepare.get((code, request.request_id))
            if existing is None and made is not None:
                self.reservations[made.reservation_id] = made
                self.by_prepare[(code, request.request_id)] = made.reservation_id
                existing = made.reservation_id
            r = self.reservations[existing]  # type: ignore[index]
            lose = serial in self.lose_answer
        if lose:
            # The reservation stands, but the centre never hears of it.
            await context.abort(grpc.StatusCode.UNAVAILABLE, "connection lost")
        return self._prepared(r)

    async def CommitIssuance(self, request: Any, context: Any) -> Any:
        self._note("commit", request)
        with self._lock:
            r = self._find(request.municipality_code.value, request.reservation_id)
            r.commit_request_ids.append(request.request_id)
            refuse = self.fail_commits > 0
            if refuse:
                self.fail_commits -= 1
                r.commits_refused += 1
            elif r.state == CANCELLED:
                raise KonbiniError("RESERVATION_CANCELLED", "the reservation was cancelled")
            elif r.state == EXPIRED:
                raise KonbiniError("RESERVATION_EXPIRED", "the reservation expired")
            elif r.state == RESERVED:
                r.state = COMMITTED
                r.committed_at = self.now()
        if refuse:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the municipality is busy")
        response = issuing_pb2.CommitIssuanceResponse(
            state=COMMITTED,
            issue_numbers=[f"{r.reservation_id[:10]}-{i + 1}" for i in range(r.copies)])
        response.committed_at.FromDatetime(r.committed_at or self.now())
        return response

    async def CancelIssuance(self, request: Any, context: Any) -> Any:
        self._note("cancel", request)
        with self._lock:
            r = self._find(request.municipality_code.value, request.reservation_id)
            r.cancel_request_ids.append(request.request_id)
            if r.state == COMMITTED:
                raise KonbiniError("RESERVATION_COMMITTED", "the reservation was committed")
            if r.state == RESERVED:
                r.state = CANCELLED
            return issuing_pb2.CancelIssuanceResponse(state=r.state)

    async def GetReservation(self, request: Any, context: Any) -> Any:
        code = request.municipality_code.value
        with self._lock:
            self._tenant(code)
            rid = request.reservation_id or self.by_prepare.get(
                (code, request.prepare_request_id), "")
            r = self._find(code, rid)
            response = issuing_pb2.GetReservationResponse(
                reservation_id=r.reservation_id, state=r.state, fee=types_pb2.Money(yen=r.fee))
        response.expires_at.FromDatetime(r.expires_at)
        return response

    async def ListIssueRecords(self, request: Any, context: Any) -> Any:
        code = request.municipality_code.value
        self._tenant(code)
        records = []
        for r in self.snapshot():
            if r.code == code and r.committed_at is not None:
                record = issuing_pb2.IssueRecord(
                    reservation_id=r.reservation_id, kind=r.kind, copies=r.copies,
                    fee=types_pb2.Money(yen=r.fee), issuance_id=r.issuance_id,
                    store_operator=r.store_operator)
                record.committed_at.FromDatetime(r.committed_at)
                records.append(record)
        return issuing_pb2.ListIssueRecordsResponse(records=records)

    async def GetCardHolder(self, request: Any, context: Any) -> Any:
        self._tenant(request.municipality_code.value)
        with self._lock:
            self.holder_calls.append(request)
        return issuing_pb2.GetCardHolderResponse(
            name=holder_of(request.card.certificate_serial)[1],
            birth_date=HOLDER_BIRTH_DATE)

    async def LinkFamilyRegister(self, request: Any, context: Any) -> Any:
        self._tenant(request.municipality_code.value)
        with self._lock:
            self.link_calls.append(request)
            decision = self.link_decision
        return issuing_pb2.LinkFamilyRegisterResponse(decision=decision)  # type: ignore[arg-type]

    async def GetFamilyRegisterLink(self, request: Any, context: Any) -> Any:
        self._tenant(request.municipality_code.value)
        with self._lock:
            self.link_lookups.append(request)
            decision = self.link_decision
        return issuing_pb2.GetFamilyRegisterLinkResponse(
            decision=decision)  # type: ignore[arg-type]
