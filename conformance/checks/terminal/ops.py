"""The driver service itself: conformance role only (test mode), no anonymous callers, bad
input refused as FIELD_INVALID without effect, and standard health checking."""

from __future__ import annotations

import grpc

from conformance.checks.terminal.context import DRIVER, S, TerminalContext, describe
from conformance.failures import CheckFailed, CheckSkipped
from conformance.probes import expect_reflected, expect_serving
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
    expect_serving(ctx.wire.channel("caller"), ("", DRIVER))


@check("SHOULD.terminal.ops.reflection", covers=("OPS-REFLECTION",))
def reflection(ctx: TerminalContext) -> None:
    """Server reflection lists TerminalDriverService."""
    expect_reflected(ctx.wire.channel("caller"), DRIVER)
