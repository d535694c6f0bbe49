"""The centre's VerificationService (VERIFY-OFFLINE, VERIFY-DETECT, VERIFY-KEY-ROTATION).

The checks themselves are :mod:`konbini.verify`, shared with ``konbini verify`` and the
conformance suite; this module only serves them. ``VerificationServicer(trust, roots,
clock=...)``: ``trust`` is anything with ``current() -> SignedTrustList`` (e.g.
:class:`centre.trustpub.TrustListPublisher`), ``roots`` the document-signing CA certificates.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import grpc
from cryptography import x509

from konbini.clock import Clock, SystemClock
from konbini.common.v1 import trust_pb2
from konbini.errors import FieldViolation, invalid
from konbini.verification.v1 import verification_pb2, verification_pb2_grpc
from konbini.verify import verify_pdf, verify_scans

__all__ = ["VerificationServicer", "verify_pdf", "verify_scans"]


class VerificationServicer(verification_pb2_grpc.VerificationServiceServicer):
    """konbini.verification.v1.VerificationService (public: no client certificate)."""

    def __init__(
        self, trust: object, roots: Sequence[x509.Certificate], clock: Clock | None = None
    ) -> None:
        self._trust = trust
        self._roots = tuple(roots)
        self._clock = clock or SystemClock()

    async def _signed(self) -> trust_pb2.SignedTrustList:
        return await asyncio.to_thread(self._trust.current)  # type: ignore[attr-defined]

    async def VerifyDocument(
        self, request: verification_pb2.VerifyDocumentRequest, context: grpc.aio.ServicerContext
    ) -> verification_pb2.VerifyDocumentResponse:
        source = request.WhichOneof("source")
        if source is None:
            raise invalid([FieldViolation("source", "give the pdf or the scans")])
        signed = await self._signed()
        at = self._clock.now()
        if source == "pdf":
            return await asyncio.to_thread(verify_pdf, request.pdf, signed, self._roots, at)
        pairs = [(p.front_png, p.back_png) for p in request.scans.pages]
        return await asyncio.to_thread(verify_scans, pairs, signed, self._roots, at)

    async def GetTrustList(
        self, request: verification_pb2.GetTrustListRequest, context: grpc.aio.ServicerContext
    ) -> verification_pb2.GetTrustListResponse:
        return verification_pb2.GetTrustListResponse(trust_list=await self._signed())
