"""gRPC servicers of the issuing server: wire in → domain call (in a thread) → wire out.

The caller's identity comes from the certificate (the authorization interceptor admits only the
centre to IssuingService and only the conformance suite to FixtureService). Every request names
its tenant; a code this server does not serve is TENANT_NOT_SERVED (AUTHZ-TENANT).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc.aio

from konbini.clock import Clock
from konbini.common.v1 import types_pb2
from konbini.errors import KonbiniError
from konbini.issuing.v1 import issuing_pb2, issuing_pb2_grpc
from konbini.pki.mtls import peer_identity
from konbini.storage import Store, Tx
from konbini.testing.v1 import testing_pb2, testing_pb2_grpc
from municipality import links
from municipality.issuance import Issuer, timestamp
from municipality.registry import Registry, load_dataset
from municipality.schema import REGISTER_TABLES, STATE_TABLES
from municipality.settings import CLOCK_OFFSET, StoreClock

T = TypeVar("T")


@dataclass(frozen=True)
class Municipality:
    """What the servicers need: the tenants served and the engines over one store."""

    tenants: frozenset[str]
    store: Store
    issuer: Issuer
    clock: Clock
    manual_link: frozenset[str] = frozenset()

    def tenant(self, code: types_pb2.MunicipalityCode) -> str:
        if code.value not in self.tenants:
            raise KonbiniError("TENANT_NOT_SERVED", "this server does not serve that municipality",
                               metadata={"municipality_code": code.value})
        return code.value


async def _blocking(fn: Callable[..., T], *args: Any) -> T:
    """Storage and rendering block: run them off the event loop."""
    return await asyncio.to_thread(fn, *args)


def _caller(context: grpc.aio.ServicerContext) -> str:
    return peer_identity(context).uri


class IssuingServicer(issuing_pb2_grpc.IssuingServiceServicer):
    """konbini.issuing.v1.IssuingService for every tenant of this server."""

    def __init__(self, app: Municipality) -> None:
        self.app = app

    async def GetCatalogue(self, request: issuing_pb2.GetCatalogueRequest,
                           context: grpc.aio.ServicerContext) -> issuing_pb2.GetCatalogueResponse:
        code = self.app.tenant(request.municipality_code)
        entries = await _blocking(self.app.issuer.catalogue, code,
                                  request.card.certificate_serial)
        return issuing_pb2.GetCatalogueResponse(entries=entries)

    async def PrepareIssuance(self, request: issuing_pb2.PrepareIssuanceRequest,
                              context: grpc.aio.ServicerContext
                              ) -> issuing_pb2.PrepareIssuanceResponse:
        code = self.app.tenant(request.municipality_code)
        return await _blocking(self.app.issuer.prepare, code, _caller(context), request)

    async def CommitIssuance(self, request: issuing_pb2.CommitIssuanceRequest,
                             context: grpc.aio.ServicerContext
                             ) -> issuing_pb2.CommitIssuanceResponse:
        code = self.app.tenant(request.municipality_code)
        return await _blocking(self.app.issuer.commit, code, _caller(context), request)

    async def CancelIssuance(self, request: issuing_pb2.CancelIssuanceRequest,
                             context: grpc.aio.ServicerContext
                             ) -> issuing_pb2.CancelIssuanceResponse:
        code = self.app.tenant(request.municipality_code)
        return await _blocking(self.app.issuer.cancel, code, _caller(context), request)

    async def GetReservation(self, request: issuing_pb2.GetReservationRequest,
                             context: grpc.aio.ServicerContext
                             ) -> issuing_pb2.GetReservationResponse:
        code = self.app.tenant(request.municipality_code)
        return await _blocking(self.app.issuer.get_reservation, code, _caller(context),
                               request.reservation_id, request.prepare_request_id)

    async def ListIssueRecords(self, request: issuing_pb2.ListIssueRecordsRequest,
                               context: grpc.aio.ServicerContext
                               ) -> issuing_pb2.ListIssueRecordsResponse:
        code = self.app.tenant(request.municipality_code)
        return await _blocking(self.app.issuer.list_issue_records, code, request.day,
                               request.page_size, request.page_token)

    async def GetCardHolder(self, request: issuing_pb2.GetCardHolderRequest,
                            context: grpc.aio.ServicerContext
                            ) -> issuing_pb2.GetCardHolderResponse:
        code = self.app.tenant(request.municipality_code)
        return await _blocking(self.app.issuer.card_holder, code,
                               request.card.certificate_serial)

    async def LinkFamilyRegister(self, request: issuing_pb2.LinkFamilyRegisterRequest,
                                 context: grpc.aio.ServicerContext
                                 ) -> issuing_pb2.LinkFamilyRegisterResponse:
        code = self.app.tenant(request.municipality_code)
        caller = _caller(context)
        now = await _blocking(self.app.clock.now)
        return await _blocking(lambda: links.link(
            self.app.store, code, caller, request, now=now,
            manual=code in self.app.manual_link))

    async def GetFamilyRegisterLink(self, request: issuing_pb2.GetFamilyRegisterLinkRequest,
                                    context: grpc.aio.ServicerContext
                                    ) -> issuing_pb2.GetFamilyRegisterLinkResponse:
        code = self.app.tenant(request.municipality_code)
        decision = await _blocking(links.decision_of, self.app.store, code,
                                   request.registration_id)
        return issuing_pb2.GetFamilyRegisterLinkResponse(decision=decision)  # type: ignore[arg-type]


def reset_store(tx: Tx) -> None:
    """Drop every record and every piece of state, and return to real time (Reset)."""
    for table in (*REGISTER_TABLES, *STATE_TABLES):
        tx.execute(f"DELETE FROM {table}")  # noqa: S608 - fixed table names
    tx.execute("DELETE FROM settings WHERE name = ?", (CLOCK_OFFSET,))


def load_served(tx: Tx, dataset: Any, *, replace: bool, served: Collection[str]) -> dict[str, int]:
    """Load a dataset of served tenants; the counts summed over them (LoadDatasetResponse)."""
    per_code = load_dataset(tx, dataset, replace=replace, replace_codes=served)
    totals: dict[str, int] = {}
    for code in served:
        counts = per_code.get(code) or Registry(tx, code).counts()
        for name, value in counts.items():
            totals[name] = totals.get(name, 0) + value
    return totals


class FixtureServicer(testing_pb2_grpc.FixtureServiceServicer):
    """konbini.testing.v1.FixtureService (test mode only; the interceptors gate it)."""

    def __init__(self, app: Municipality) -> None:
        self.app = app

    async def LoadDataset(self, request: testing_pb2.LoadDatasetRequest,
                          context: grpc.aio.ServicerContext) -> testing_pb2.LoadDatasetResponse:
        if request.WhichOneof("dataset") != "municipality":
            raise KonbiniError("FIELD_INVALID", "a municipality server takes a municipality "
                               "dataset")
        for data in request.municipality.municipalities:
            self.app.tenant(data.tenant.code)
        counts = await _blocking(self.app.store.run, lambda tx: load_served(
            tx, request.municipality, replace=request.replace, served=self.app.tenants))
        return testing_pb2.LoadDatasetResponse(counts=counts)

    async def Reset(self, request: testing_pb2.ResetRequest,
                    context: grpc.aio.ServicerContext) -> testing_pb2.ResetResponse:
        await _blocking(self.app.store.run, reset_store)
        return testing_pb2.ResetResponse()

    async def SetClock(self, request: testing_pb2.SetClockRequest,
                       context: grpc.aio.ServicerContext) -> testing_pb2.SetClockResponse:
        clock = self.app.clock
        if not isinstance(clock, StoreClock):
            raise KonbiniError("TEST_MODE_DISABLED", "the clock can be set in test mode only")
        target = request.now.ToDatetime(tzinfo=dt.UTC) if request.HasField("now") else None
        now = await _blocking(clock.set_now, target)
        return testing_pb2.SetClockResponse(now=timestamp(now))
