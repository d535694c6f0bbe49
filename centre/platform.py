"""PlatformService: what the centre offers municipalities (the hop municipality -> centre).

``PlatformServicer(store, verifier, clock, trust, ledger_rows, commission_yen, audit)``:

- ``store``: the centre's :class:`AsyncStore` (bindings, idempotency records, audit entries).
- ``verifier``: a :class:`konbini.pki.CardVerifier`, or an object whose async ``verifier()``
  returns one (``centre.cardtrust.CardTrust``), so test-mode CAs and CRLs count here too.
- ``clock``: :class:`konbini.clock.Clock`.
- ``trust``: :class:`centre.trustpub.TrustListPublisher` (anything with ``current()``).
- ``ledger_rows(tx, code, start_micros, end_micros) -> list[dict]``: the committed issuances of
  one municipality in a window (see :mod:`centre.settlement` for the row keys).
- ``commission_yen``: the store commission per copy.
- ``audit``: :class:`centre.audit.AuditLog` or None.

The caller is always a municipality (the authorization interceptor admits no other role) and
acts only for the codes its certificate names; any other code is TENANT_NOT_SERVED
(AUTHZ-TENANT). The handlers only translate; the rules live in :mod:`centre.bindings`,
:mod:`centre.settlement` and ``CardVerifier.check_certificate_at``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import grpc
from cryptography import x509
from google.protobuf import timestamp_pb2

from centre.audit import AuditLog, card_ref
from centre.bindings import bind, serial_hex, unbind
from centre.settlement import date_of, jst_day_window, settlement_report
from konbini.clock import Clock
from konbini.common.v1 import trust_pb2, types_pb2
from konbini.contracts import reason_enum_value
from konbini.errors import FieldViolation, KonbiniError, invalid
from konbini.pki import CardRejected, CardVerifier
from konbini.pki.mtls import peer_identity
from konbini.platform.v1 import platform_pb2, platform_pb2_grpc
from konbini.storage import AsyncStore, Tx, to_micros
from konbini.storage.idempotency import lookup, record, request_fingerprint

LedgerRows = Callable[[Tx, str, int, int], Sequence[Mapping[str, object]]]


class TrustSource(Protocol):
    def current(self) -> trust_pb2.SignedTrustList: ...


def _timestamp(value: dt.datetime) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value.astimezone(dt.UTC))
    return ts


class PlatformServicer(platform_pb2_grpc.PlatformServiceServicer):
    """konbini.platform.v1.PlatformService (see the module docstring for the arguments)."""

    def __init__(  # noqa: PLR0917 - the signature the centre's server codes against
        self,
        store: AsyncStore,
        verifier: Any,
        clock: Clock,
        trust: TrustSource,
        ledger_rows: LedgerRows,
        commission_yen: int,
        audit: AuditLog | None = None,
    ) -> None:
        self._store = store
        self._verifier = verifier
        self._clock = clock
        self._trust = trust
        self._ledger_rows = ledger_rows
        self._commission = commission_yen
        self._audit = audit

    async def _card_verifier(self) -> CardVerifier:
        if isinstance(self._verifier, CardVerifier):
            return self._verifier
        made = self._verifier.verifier()
        return await made if inspect.isawaitable(made) else made  # type: ignore[no-any-return]

    @staticmethod
    def _own_code(context: grpc.aio.ServicerContext, code: str) -> str:
        identity = peer_identity(context)
        if code not in identity.municipality_codes:
            raise KonbiniError(
                "TENANT_NOT_SERVED",
                "this certificate does not act for that municipality",
                metadata={"municipality_code": code},
            )
        return identity.uri

    def _audit_in(self, tx: Tx, event: str, fields: Mapping[str, str]) -> None:
        if self._audit is not None:
            self._audit.append(tx, event, fields)

    async def ValidateCertificate(
        self, request: platform_pb2.ValidateCertificateRequest, context: grpc.aio.ServicerContext
    ) -> platform_pb2.ValidateCertificateResponse:
        if bool(request.signed_data) != bool(request.signature):
            raise invalid([FieldViolation(
                "signature", "signed_data and signature are given together or not at all"
            )])
        now = self._clock.now()
        verifier = await self._card_verifier()
        response = platform_pb2.ValidateCertificateResponse()
        try:
            cert = x509.load_der_x509_certificate(request.certificate_der)
            response.certificate_serial = serial_hex(cert.serial_number)
            response.not_after.CopyFrom(_timestamp(cert.not_valid_after_utc))
        except ValueError:
            pass  # reported below as CARD_PROFILE_INVALID
        try:
            if request.signature:
                verifier.verify_at(now, request.certificate_der, request.signed_data,
                                   request.signature)
            else:
                verifier.check_certificate_at(now, request.certificate_der)
        except CardRejected as rejected:
            # A failed check is the answer, not an error (the contract says so).
            response.valid = False
            response.reason = reason_enum_value(rejected.reason)  # type: ignore[assignment]
            return response
        response.valid = True
        return response

    async def _replay(
        self, scope: str, caller: str, request_id: str, fingerprint: bytes
    ) -> bytes | None:
        def read(tx: Tx) -> bytes | None:
            stored = lookup(tx, scope, caller, request_id, fingerprint)
            return None if stored is None else stored.replay()

        return await self._store.run(read, write=False)

    async def _once(
        self, scope: str, caller: str, request_id: str, fingerprint: bytes,
        effect: Callable[[Tx], bytes],
    ) -> bytes:
        now = to_micros(self._clock.now())

        def attempt(tx: Tx) -> bytes:
            stored = lookup(tx, scope, caller, request_id, fingerprint)
            if stored is not None:
                return stored.replay()
            response = effect(tx)
            record(tx, scope, caller, request_id, fingerprint, now=now, response=response)
            return response

        return await self._store.run(attempt)

    async def BindCard(
        self, request: platform_pb2.BindCardRequest, context: grpc.aio.ServicerContext
    ) -> platform_pb2.BindCardResponse:
        code = request.municipality_code.value
        caller = self._own_code(context, code)
        scope = "centre.PlatformService.BindCard"
        fingerprint = request_fingerprint(request)
        done = await self._replay(scope, caller, request.request_id, fingerprint)
        if done is not None:
            return platform_pb2.BindCardResponse.FromString(done)
        now = self._clock.now()
        verifier = await self._card_verifier()
        card = verifier.check_certificate_at(now, request.certificate_der)
        serial = serial_hex(card.serial)

        def effect(tx: Tx) -> bytes:
            previous = bind(tx, serial, code, to_micros(now))
            self._audit_in(tx, "platform.bind_card", {
                "request_id": request.request_id, "municipality_code": code,
                "previous_municipality_code": previous or "", "card_ref": card_ref(serial),
            })
            response = platform_pb2.BindCardResponse(certificate_serial=serial)
            if previous is not None and previous != code:
                response.previous_municipality_code.CopyFrom(
                    types_pb2.MunicipalityCode(value=previous)
                )
            return response.SerializeToString()

        return platform_pb2.BindCardResponse.FromString(
            await self._once(scope, caller, request.request_id, fingerprint, effect)
        )

    async def UnbindCard(
        self, request: platform_pb2.UnbindCardRequest, context: grpc.aio.ServicerContext
    ) -> platform_pb2.UnbindCardResponse:
        code = request.municipality_code.value
        caller = self._own_code(context, code)
        serial = request.certificate_serial.strip().lower()
        if not serial or any(c not in "0123456789abcdef" for c in serial):
            raise invalid([FieldViolation("certificate_serial", "must be lowercase hex")])

        def effect(tx: Tx) -> bytes:
            removed = unbind(tx, serial, code)
            self._audit_in(tx, "platform.unbind_card", {
                "request_id": request.request_id, "municipality_code": code,
                "outcome": "removed" if removed else "absent", "card_ref": card_ref(serial),
            })
            return platform_pb2.UnbindCardResponse(removed=removed).SerializeToString()

        return platform_pb2.UnbindCardResponse.FromString(await self._once(
            "centre.PlatformService.UnbindCard", caller, request.request_id,
            request_fingerprint(request), effect,
        ))

    async def GetSettlementReport(
        self, request: platform_pb2.GetSettlementReportRequest, context: grpc.aio.ServicerContext
    ) -> platform_pb2.GetSettlementReportResponse:
        code = request.municipality_code.value
        self._own_code(context, code)
        try:
            day = date_of(request.day)
        except ValueError:
            raise invalid([FieldViolation("day", "not a calendar date")]) from None
        start, end = jst_day_window(day)
        rows = await self._store.run(
            lambda tx: list(self._ledger_rows(tx, code, start, end)), write=False
        )
        return settlement_report(rows, commission_yen=self._commission)

    async def GetTrustList(
        self, request: platform_pb2.GetTrustListRequest, context: grpc.aio.ServicerContext
    ) -> platform_pb2.GetTrustListResponse:
        signed = await asyncio.to_thread(self._trust.current)
        return platform_pb2.GetTrustListResponse(trust_list=signed)
