"""Authorization at the centre: each service for its own role, no certificate no answer, and
a municipality acting only for the codes its certificate names."""

from __future__ import annotations

import grpc

from conformance.checks.centre.context import KIOSK, PLATFORM, CentreContext
from conformance.failures import CheckFailed, CheckSkipped
from conformance.registry import check
from conformance.target import Answer, attempt, short_text
from konbini.common.v1 import types_pb2
from konbini.kiosk.v1 import kiosk_pb2
from konbini.platform.v1 import platform_pb2


def _denied(answer: Answer, codes: tuple[grpc.StatusCode, ...]) -> bool:
    return not answer.ok and answer.error is not None and answer.error.code in codes


@check("MUST.centre.authz.wrong_role", covers=("AUTHZ-ROLE",))
def wrong_role(ctx: CentreContext) -> None:
    """KioskService refuses a municipality's certificate and PlatformService a terminal's,
    with PERMISSION_DENIED."""
    ctx.load({})
    create = kiosk_pb2.CreateSessionRequest(request_id=ctx.rid("cs"))
    answer = attempt(lambda: ctx.wire.service("municipality", KIOSK).CreateSession(create))
    if not _denied(answer, (grpc.StatusCode.PERMISSION_DENIED,)):
        raise CheckFailed("AUTHZ-ROLE", f"{short_text(create)} as a municipality",
                          answer.describe(), "KioskService accepted a municipality certificate",
                          expected={"outcome": "error", "reason": "CALLER_NOT_ALLOWED"})
    trust = platform_pb2.GetTrustListRequest()
    answer = attempt(lambda: ctx.wire.service("terminal", PLATFORM).GetTrustList(trust))
    if not _denied(answer, (grpc.StatusCode.PERMISSION_DENIED,)):
        raise CheckFailed("AUTHZ-ROLE", "GetTrustList as a terminal", answer.describe(),
                          "PlatformService accepted a terminal certificate",
                          expected={"outcome": "error", "reason": "CALLER_NOT_ALLOWED"})


@check("MUST.centre.authz.no_certificate", covers=("AUTHZ-NO-CERT",))
def no_certificate(ctx: CentreContext) -> None:
    """A KioskService call without a client certificate is refused (UNAUTHENTICATED, or the
    TLS handshake is refused and the client sees UNAVAILABLE)."""
    create = kiosk_pb2.CreateSessionRequest(request_id=ctx.rid("cs"))
    answer = attempt(lambda: ctx.wire.service("none", KIOSK).CreateSession(create, timeout=10))
    if not _denied(answer, (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.UNAVAILABLE)):
        raise CheckFailed("AUTHZ-NO-CERT", short_text(create), answer.describe(),
                          "a call without a client certificate was answered",
                          expected={"outcome": "error"})


@check("MUST.centre.authz.tenant", covers=("AUTHZ-TENANT",))
def tenant(ctx: CentreContext) -> None:
    """A municipality binding a card for another municipality's code, or asking that code's
    settlement, is refused; the card stays unbound (Authenticate says CARD_NOT_BOUND)."""
    if not ctx.wire.has_identity("municipality"):
        raise CheckSkipped("no municipality certificate configured")
    card = ctx.card()
    ctx.load({})
    bind = platform_pb2.BindCardRequest(
        request_id=ctx.rid("bind"), municipality_code=types_pb2.MunicipalityCode(
            value=ctx.other_code), certificate_der=card.certificate_der)
    answer = attempt(lambda: ctx.platform().BindCard(bind))
    if answer.ok:
        raise CheckFailed("AUTHZ-TENANT", f"BindCard for {ctx.other_code} as {ctx.code}",
                          answer.describe(), "a municipality bound a card for another one",
                          expected={"outcome": "error"})
    request, auth, _ = ctx.authenticate(card)
    ctx.expect_refused(request, auth, {"CARD_NOT_BOUND"}, "AUTHZ-TENANT",
                       "the refused binding must not exist")
    report = platform_pb2.GetSettlementReportRequest(
        municipality_code=types_pb2.MunicipalityCode(value=ctx.other_code),
        day=types_pb2.Date(year=ctx.today.year, month=ctx.today.month, day=ctx.today.day))
    answer = attempt(lambda: ctx.platform().GetSettlementReport(report))
    if answer.ok:
        raise CheckFailed("AUTHZ-TENANT", f"GetSettlementReport({ctx.other_code}) as {ctx.code}",
                          answer.describe(), "a municipality read another one's settlement",
                          expected={"outcome": "error"})
    own = platform_pb2.BindCardRequest(
        request_id=ctx.rid("bind"), municipality_code=types_pb2.MunicipalityCode(value=ctx.code),
        certificate_der=card.certificate_der)
    answer = attempt(lambda: ctx.platform().BindCard(own))
    if not answer.ok:
        raise CheckFailed("AUTHZ-TENANT", f"BindCard for its own code {ctx.code}",
                          answer.describe(), "a municipality could not bind for itself",
                          expected={"outcome": "ok"})
