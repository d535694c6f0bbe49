"""The driver service itself: conformance role only (test mode), no anonymous callers, bad
input refused as FIELD_INVALID without effect, and standard health checking."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from conformance.checks.terminal.context import DRIVER, S, TerminalContext, describe
from conformance.failures import CheckFailed, CheckSkipped
from conformance.registry import check
from conformance.target import attempt, short_text


@check("MUST.terminal.ops.conformance_role_only", covers=("TEST-MODE-ONLY", "AUTHZ-ROLE"))
def conformance_role_only(ctx: TerminalContext) -> None:
    """TerminalDriverService refuses another role's certificate with PERMISSION_DENIED, and a
    refused InsertCard leaves the kiosk untouched."""
    if not ctx.wire.has_identity("wrong_role"):
        raise CheckSkipped("no other role's certificate configured (--wrong-role-cert)")
    driver = ctx.wire.service("wrong_role", DRIVER)
    request = S.InsertCardRequest(request_id=ctx.rid("wrong"), card=ctx.new_card().spec)
    for name, call in (("GetScreen", lambda: driver.GetScreen(S.GetScreenRequest())),
                       ("InsertCard", lambda: driver.InsertCard(request))):
        answer = attempt(call)
        if answer.ok or answer.error is None or \
                answer.error.code != grpc.StatusCode.PERMISSION_DENIED:
            raise CheckFailed("TEST-MODE-ONLY", f"{name} with another role's certificate",
                              answer.describe(), "only the conformance role may drive a "
                              "terminal", expected={"outcome": "error"})
    screen = ctx.screen()
    if screen.id != S.SCREEN_ID_INSERT_CARD:
        raise CheckFailed("TEST-MODE-ONLY", "a refused InsertCard, then GetScreen",
                          describe(screen), "a refused call changed the kiosk")


@check("MUST.terminal.ops.no_certificate", covers=("AUTHZ-NO-CERT",))
def no_certificate(ctx: TerminalContext) -> None:
    """A caller without a client certificate gets UNAUTHENTICATED (or no TLS handshake)."""
    answer = attempt(lambda: ctx.wire.service("none", DRIVER).GetScreen(
        S.GetScreenRequest(), timeout=10))
    if answer.ok or answer.error is None or answer.error.code not in (
            grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.UNAVAILABLE):
        raise CheckFailed("AUTHZ-NO-CERT", "GetScreen without a client certificate",
                          answer.describe(), "an anonymous caller was answered",
                          expected={"outcome": "error"})


@check("MUST.terminal.input.driver_fields", covers=("INPUT-INVALID-ARGUMENT", "INPUT-NO-STATE"))
def driver_fields(ctx: TerminalContext) -> None:
    """InsertCard without its request_id or its card is INVALID_ARGUMENT / FIELD_INVALID with a
    violation naming the field, and no card is inserted."""
    card = ctx.new_card()
    for field, request in (
        ("request_id", S.InsertCardRequest(card=card.spec)),
        ("card", S.InsertCardRequest(request_id=ctx.rid("nocard"))),
    ):
        answer = attempt(lambda r=request: ctx.driver.InsertCard(r))
        error = answer.error
        if answer.ok or error is None or error.code != grpc.StatusCode.INVALID_ARGUMENT or \
                error.reason != "FIELD_INVALID" or \
                not any(v.field == field for v in error.violations):
            raise CheckFailed("INPUT-INVALID-ARGUMENT", short_text(request), answer.describe(),
                              f"expected FIELD_INVALID naming {field}",
                              expected={"outcome": "error", "reason": "FIELD_INVALID"})
        screen = ctx.screen()
        if screen.id != S.SCREEN_ID_INSERT_CARD:
            raise CheckFailed("INPUT-NO-STATE", short_text(request), describe(screen),
                              "a refused InsertCard inserted a card")


@check("MUST.terminal.ops.health", covers=("OPS-HEALTH",))
def health(ctx: TerminalContext) -> None:
    """grpc.health.v1.Health/Check answers SERVING for the server and the driver service."""
    stub = health_pb2_grpc.HealthStub(ctx.wire.channel("caller"))
    for service in ("", DRIVER):
        try:
            status = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10).status
        except grpc.RpcError as error:
            raise CheckFailed("OPS-HEALTH", f"Health/Check({service!r})", str(error.code()),
                              "no standard health checking") from None
        if status != health_pb2.HealthCheckResponse.SERVING:
            raise CheckFailed("OPS-HEALTH", f"Health/Check({service!r})", str(status),
                              "not SERVING")


@check("SHOULD.terminal.ops.reflection", covers=("OPS-REFLECTION",))
def reflection(ctx: TerminalContext) -> None:
    """Server reflection lists TerminalDriverService."""
    stub = reflection_pb2_grpc.ServerReflectionStub(ctx.wire.channel("caller"))
    try:
        responses = list(stub.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10))
    except grpc.RpcError as error:
        raise CheckFailed("OPS-REFLECTION", "ServerReflectionInfo(list_services)",
                          str(error.code()), "no server reflection") from None
    names = [s.name for r in responses for s in r.list_services_response.service]
    if DRIVER not in names:
        raise CheckFailed("OPS-REFLECTION", "ServerReflectionInfo(list_services)", str(names),
                          "TerminalDriverService is not listed")
