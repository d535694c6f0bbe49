"""What the municipality-role checks work with: the suite plays the centre (IssuingService with
the centre's certificate) and provisions the target through FixtureService (conformance
certificate)."""

from __future__ import annotations

import datetime as dt
import itertools
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from conformance.failures import CheckFailed, CheckSkipped, TargetMisbehaved
from conformance.fixtures import jst_day
from conformance.target import Answer, ServiceProxy, Wire, attempt, short_text
from konbini.common.v1 import types_pb2
from konbini.issuing.v1 import issuing_pb2
from konbini.pki.trustlist import TrustList
from konbini.register.v1 import register_pb2
from konbini.testing.v1 import testing_pb2

ISSUING = "konbini.issuing.v1.IssuingService"
FIXTURE = "konbini.testing.v1.FixtureService"
K = types_pb2


def timestamp(at: dt.datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(at)
    return ts


@dataclass
class MunicipalityContext:
    """One run against a municipality server."""

    wire: Wire
    codes: tuple[str, ...]  # tenants the target serves (the first is the main one)
    now: dt.datetime  # the suite's clock (aware UTC), set with SetClock before each scenario
    seed: int
    examples: int
    trust_list: TrustList | None = None
    shrink_budget: float = 20.0  # seconds a property may spend shrinking a failure
    sweep_wait: float = 5.0  # seconds a sweeper may take to mark an expired reservation
    role: str = "municipality"
    cache: dict[str, Any] = field(default_factory=dict)
    _ids: itertools.count = field(default_factory=itertools.count)

    @property
    def target(self) -> str:
        return self.wire.config.address

    @property
    def today(self) -> dt.date:
        return jst_day(self.now)

    @property
    def verify_at(self) -> dt.datetime:
        """When documents are verified: after the suite clock (seals are dated by it)."""
        return self.now + dt.timedelta(hours=1)

    @property
    def code(self) -> str:
        return self.codes[0]

    def second_code(self) -> str:
        if len(self.codes) < 2:
            raise CheckSkipped("needs a target serving two municipalities (--municipality A B)")
        return self.codes[1]

    # -- engine hooks ----------------------------------------------------------------------
    def before_check(self) -> None:
        self.wire.start_example()

    def take_calls(self) -> tuple[Any, ...]:
        return self.wire.take_calls()

    # -- services --------------------------------------------------------------------------
    @property
    def issuing(self) -> ServiceProxy:
        return self.wire.service("caller", ISSUING)

    @property
    def fixture(self) -> ServiceProxy:
        return self.wire.service("fixture", FIXTURE)

    def rid(self, prefix: str = "cf") -> str:
        """A fresh request id (valid: [A-Za-z0-9_-], at most 64)."""
        return f"{prefix}-{self.seed}-{next(self._ids)}"

    def load(self, dataset: register_pb2.Dataset, *, at: dt.datetime | None = None) -> None:
        """Reset the target, load ``dataset`` and set its clock (the suite's, or ``at``)."""
        self.fixture.Reset(testing_pb2.ResetRequest(request_id=self.rid("reset")))
        self.fixture.LoadDataset(
            testing_pb2.LoadDatasetRequest(
                request_id=self.rid("load"), replace=True, municipality=dataset
            )
        )
        self.set_clock(at or self.now)

    def set_clock(self, at: dt.datetime) -> None:
        self.fixture.SetClock(
            testing_pb2.SetClockRequest(request_id=self.rid("clock"), now=timestamp(at))
        )

    # -- the centre's calls ----------------------------------------------------------------
    def prepare_request(
        self,
        serial: str,
        kind: int,
        options: types_pb2.CertificateOptions,
        *,
        copies: int = 1,
        code: str | None = None,
        request_id: str | None = None,
    ) -> issuing_pb2.PrepareIssuanceRequest:
        return issuing_pb2.PrepareIssuanceRequest(
            request_id=request_id or self.rid("prep"),
            municipality_code=K.MunicipalityCode(value=code or self.code),
            card=issuing_pb2.CardReference(certificate_serial=serial),
            kind=kind,
            options=options,
            copies=copies,
            origin=issuing_pb2.Origin(
                store_operator="seven", terminal_id="T0001", issuance_id=f"iss-{self.rid('o')}"
            ),
        )

    def prepare(
        self, request: issuing_pb2.PrepareIssuanceRequest, timeout: float | None = None
    ) -> Answer:
        return attempt(lambda: self.issuing.PrepareIssuance(request, timeout=timeout))

    def commit(
        self, reservation_id: str, *, request_id: str | None = None, code: str | None = None
    ) -> Answer:
        req = issuing_pb2.CommitIssuanceRequest(
            request_id=request_id or self.rid("commit"),
            municipality_code=K.MunicipalityCode(value=code or self.code),
            reservation_id=reservation_id,
        )
        return attempt(lambda: self.issuing.CommitIssuance(req))

    def cancel(self, reservation_id: str, *, request_id: str | None = None) -> Answer:
        req = issuing_pb2.CancelIssuanceRequest(
            request_id=request_id or self.rid("cancel"),
            municipality_code=K.MunicipalityCode(value=self.code),
            reservation_id=reservation_id,
            cause="conformance",
        )
        return attempt(lambda: self.issuing.CancelIssuance(req))

    def reservation(
        self, *, reservation_id: str = "", prepare_request_id: str = "", code: str | None = None
    ) -> Answer:
        req = issuing_pb2.GetReservationRequest(
            municipality_code=K.MunicipalityCode(value=code or self.code),
            reservation_id=reservation_id,
            prepare_request_id=prepare_request_id,
        )
        return attempt(lambda: self.issuing.GetReservation(req))

    def issue_records(self, code: str | None = None) -> list[issuing_pb2.IssueRecord]:
        """Every issue record of the suite's day (all pages)."""
        records: list[issuing_pb2.IssueRecord] = []
        token = ""
        for _ in range(100):
            req = issuing_pb2.ListIssueRecordsRequest(
                municipality_code=K.MunicipalityCode(value=code or self.code),
                day=K.Date(year=self.today.year, month=self.today.month, day=self.today.day),
                page_size=1000,
                page_token=token,
            )
            resp = self.issuing.ListIssueRecords(req)
            records += list(resp.records)
            token = resp.next_page_token
            if not token:
                return records
        raise TargetMisbehaved("ListIssueRecords never returned a last page")

    # -- judging helpers -------------------------------------------------------------------
    @staticmethod
    def sent(request: Any) -> str:
        return request if isinstance(request, str) else short_text(request)

    def expect_issued(
        self, request: Any, answer: Answer, requirement: str, why: str
    ) -> issuing_pb2.PrepareIssuanceResponse:
        if not answer.ok:
            raise CheckFailed(
                requirement,
                self.sent(request),
                answer.describe(),
                f"expected a document ({why}), got a refusal",
                expected={"outcome": "ok"},
            )
        response = answer.response
        if not isinstance(response, issuing_pb2.PrepareIssuanceResponse) or not response.documents:
            raise CheckFailed(
                requirement,
                self.sent(request),
                answer.describe(),
                "a PrepareIssuance answer without documents",
                expected={"outcome": "ok"},
            )
        return response

    def expect_refused(
        self,
        request: Any,
        answer: Answer,
        reasons: frozenset[str] | set[str],
        requirement: str,
        why: str,
    ) -> None:
        expected = {"outcome": "error", "reason": "|".join(sorted(reasons))}
        if answer.ok:
            raise CheckFailed(
                requirement,
                self.sent(request),
                answer.describe(),
                f"expected refusal {'/'.join(sorted(reasons))} ({why}), got a document",
                expected=expected,
            )
        if answer.error is None or answer.error.reason not in reasons:
            raise CheckFailed(
                requirement,
                self.sent(request),
                answer.describe(),
                f"expected refusal {'/'.join(sorted(reasons))} ({why}), got {answer.describe()}",
                expected=expected,
            )

    def expect_nothing_reserved(self, prepare_request_id: str, requirement: str, sent: str) -> None:
        """After a refusal: no reservation under that request id and no issue record."""
        answer = self.reservation(prepare_request_id=prepare_request_id)
        if answer.ok:
            raise CheckFailed(
                requirement,
                sent,
                answer.describe(),
                "a refused request left a reservation behind",
                expected={"outcome": "error", "reason": "RESERVATION_NOT_FOUND"},
            )
        records = self.issue_records()
        if records:
            raise CheckFailed(
                requirement,
                sent,
                short_text(records[0]),
                f"a refused request left {len(records)} issue record(s)",
            )
