"""KioskService: the terminal -> centre hop. Translation only; the rules live in
centre.sessions, centre.catalogue, centre.issuance and centre.useregs.

Every call is rate-limited per terminal (LIMIT-RATE); the terminal's identity comes from its
certificate (AUTHZ-IDENTITY), never from the request.
"""

from __future__ import annotations

from typing import Protocol

import grpc.aio

from centre import catalogue, issuance, sessions, useregs
from centre.context import Centre
from konbini.kiosk.v1 import kiosk_pb2, kiosk_pb2_grpc
from konbini.pki import PeerIdentity
from konbini.pki.mtls import peer_identity


class Limiter(Protocol):
    """centre.ratelimit.RateLimiter."""

    def check(self, key: str) -> None:
        """Raise RATE_LIMITED when ``key`` is over its rate."""
        ...


class KioskServicer(kiosk_pb2_grpc.KioskServiceServicer):
    """The terminal-facing service."""

    def __init__(self, centre: Centre, limiter: Limiter) -> None:
        self._centre = centre
        self._limiter = limiter

    def _caller(self, context: grpc.aio.ServicerContext) -> PeerIdentity:
        identity = peer_identity(context)
        self._limiter.check(identity.uri)
        return identity

    async def CreateSession(
        self, request: kiosk_pb2.CreateSessionRequest, context: grpc.aio.ServicerContext
    ) -> kiosk_pb2.CreateSessionResponse:
        return await sessions.create_session(self._centre, self._caller(context).uri, request)

    async def Authenticate(
        self, request: kiosk_pb2.AuthenticateRequest, context: grpc.aio.ServicerContext
    ) -> kiosk_pb2.AuthenticateResponse:
        return await sessions.authenticate(self._centre, self._caller(context).uri, request)

    async def GetCatalogue(
        self, request: kiosk_pb2.GetCatalogueRequest, context: grpc.aio.ServicerContext
    ) -> kiosk_pb2.GetCatalogueResponse:
        identity = self._caller(context)
        now = await self._centre.time.now()
        session = await sessions.authenticated(self._centre, request.session_id, identity.uri,
                                               now)
        entries = await catalogue.catalogue(self._centre, session, now, context.time_remaining())
        return kiosk_pb2.GetCatalogueResponse(entries=entries)

    async def RequestIssuance(
        self, request: kiosk_pb2.RequestIssuanceRequest, context: grpc.aio.ServicerContext
    ) -> kiosk_pb2.RequestIssuanceResponse:
        return await issuance.request_issuance(self._centre, self._caller(context), request,
                                               context.time_remaining())

    async def CompleteIssuance(
        self, request: kiosk_pb2.CompleteIssuanceRequest, context: grpc.aio.ServicerContext
    ) -> kiosk_pb2.CompleteIssuanceResponse:
        return await issuance.complete_issuance(self._centre, self._caller(context), request)

    async def GetIssuance(
        self, request: kiosk_pb2.GetIssuanceRequest, context: grpc.aio.ServicerContext
    ) -> kiosk_pb2.GetIssuanceResponse:
        return await issuance.get_issuance(self._centre, self._caller(context), request)

    async def RegisterFamilyRegisterUse(
        self, request: kiosk_pb2.RegisterFamilyRegisterUseRequest,
        context: grpc.aio.ServicerContext,
    ) -> kiosk_pb2.RegisterFamilyRegisterUseResponse:
        return await useregs.register_use(self._centre, self._caller(context).uri, request)

    async def GetUseRegistration(
        self, request: kiosk_pb2.GetUseRegistrationRequest, context: grpc.aio.ServicerContext
    ) -> kiosk_pb2.GetUseRegistrationResponse:
        self._caller(context)
        return await useregs.get_registration(self._centre, request)

    async def EndSession(
        self, request: kiosk_pb2.EndSessionRequest, context: grpc.aio.ServicerContext
    ) -> kiosk_pb2.EndSessionResponse:
        return await sessions.end_session(self._centre, self._caller(context).uri, request)
