"""Operations and test mode: standard health checking and reflection, FixtureService for the
conformance role only, bounded message size, and junk answered without internals."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from conformance.checks.centre.context import FIXTURE, KIOSK, CentreContext
from conformance.checks.centre.judge import judge_error_model
from conformance.failures import CheckFailed
from conformance.probes import expect_reflected, expect_serving
from conformance.registry import check
from conformance.target import attempt, short_text
from konbini.kiosk.v1 import kiosk_pb2
from konbini.testing.v1 import testing_pb2

OVERSIZED = 60 * 1024 * 1024  # bytes: above any sane bound for a kiosk call, below the suite's


@check("MUST.centre.ops.health", covers=("OPS-HEALTH",))
def health(ctx: CentreContext) -> None:
    """grpc.health.v1.Health/Check answers SERVING for the server and for KioskService."""
    expect_serving(ctx.wire.channel("terminal"), ("", KIOSK))


@check("MUST.centre.ops.fixture_role", covers=("TEST-MODE-ONLY",))
def fixture_role(ctx: CentreContext) -> None:
    """In test mode FixtureService still refuses a terminal's and a municipality's
    certificates with PERMISSION_DENIED (SetClock by a terminal would move expiry)."""
    for identity in ("terminal", "municipality"):
        if not ctx.wire.has_identity(identity):
            continue
        request = testing_pb2.SetClockRequest(request_id=ctx.rid("clock"))
        answer = attempt(lambda i=identity, r=request: ctx.wire.service(  # type: ignore[misc]
            i, FIXTURE).SetClock(r))
        if answer.ok or answer.error is None or \
                answer.error.code is not grpc.StatusCode.PERMISSION_DENIED:
            raise CheckFailed("TEST-MODE-ONLY", f"SetClock as {identity}", answer.describe(),
                              f"FixtureService accepted the {identity} certificate",
                              expected={"outcome": "error", "reason": "CALLER_NOT_ALLOWED"})


@check("SHOULD.centre.ops.reflection", covers=("OPS-REFLECTION",))
def reflection(ctx: CentreContext) -> None:
    """Server reflection lists KioskService."""
    expect_reflected(ctx.wire.channel("terminal"), KIOSK)


def _serving(ctx: CentreContext) -> str:
    """'' when the centre still answers health checks, else what happened."""
    stub = health_pb2_grpc.HealthStub(ctx.wire.channel("terminal"))
    try:
        status = stub.Check(health_pb2.HealthCheckRequest(service=KIOSK), timeout=10).status
    except grpc.RpcError as error:
        return str(error.code())
    return "" if status == health_pb2.HealthCheckResponse.SERVING else str(status)


@check("MUST.centre.ops.message_size", covers=("LIMIT-SIZE",))
def message_size(ctx: CentreContext) -> None:
    """An Authenticate carrying a 60 MiB certificate is refused (RESOURCE_EXHAUSTED, or any
    error before it is handled) and the centre keeps serving."""
    ctx.load({})
    request = kiosk_pb2.AuthenticateRequest(
        request_id=ctx.rid("big"), session_id="s", auth_certificate_der=bytes(OVERSIZED),
        intent=b"i", signature=b"s")
    sent = f"Authenticate with a {OVERSIZED >> 20} MiB certificate"
    answer = attempt(lambda: ctx.kiosk().Authenticate(request, timeout=60))
    if answer.ok or answer.error is None or answer.error.code is grpc.StatusCode.INTERNAL:
        raise CheckFailed("LIMIT-SIZE", sent, answer.describe(),
                          "an oversized message must be refused as such",
                          expected={"outcome": "error"})
    down = _serving(ctx)
    if down:
        raise CheckFailed("LIMIT-SIZE", sent, f"then Health/Check: {down}",
                          "the centre stopped serving after an oversized message")


@check("MUST.centre.errors.junk", covers=("ERR-NO-INTERNALS", "INPUT-NO-CRASH"))
def junk(ctx: CentreContext) -> None:
    """Bytes that are not what they claim — a certificate, an intent, a signature of junk, and
    unknown issuance and registration ids — are each refused in the error model with no
    exception text, stack or address in the message, and the centre keeps serving."""
    card = ctx.bound_cards(1)[0]
    session = ctx.open_session(card, "terminal", "INPUT-NO-CRASH")
    junk_bytes = bytes(range(256)) * 4
    created = ctx.create_session()
    bad_cert = ctx.auth_request(card, created.session_id, created.challenge,
                                certificate=junk_bytes)
    bad_intent = kiosk_pb2.RequestIssuanceRequest(
        request_id=ctx.rid("junk"), session_id=session.session_id, intent=junk_bytes,
        signature=card.sign(junk_bytes))
    good = ctx.issuance_request(session)
    bad_signature = kiosk_pb2.RequestIssuanceRequest()
    bad_signature.CopyFrom(good)
    bad_signature.signature = junk_bytes
    kiosk = ctx.kiosk()
    tried = [
        (short_text(bad_cert), attempt(lambda: kiosk.Authenticate(bad_cert))),
        (short_text(bad_intent), attempt(lambda: kiosk.RequestIssuance(bad_intent))),
        (short_text(bad_signature), attempt(lambda: kiosk.RequestIssuance(bad_signature))),
        ("CompleteIssuance(unknown)", ctx.complete("terminal", "no-such-issuance", 1)),
        ("GetUseRegistration(unknown)", attempt(lambda: kiosk.GetUseRegistration(
            kiosk_pb2.GetUseRegistrationRequest(registration_id="no-such-registration")))),
    ]
    for sent, answer in tried:
        if answer.ok:
            raise CheckFailed("INPUT-NO-CRASH", sent, answer.describe(),
                              "junk was answered as if it were valid",
                              expected={"outcome": "error"})
        judge_error_model(sent, answer)
    down = _serving(ctx)
    if down:
        raise CheckFailed("INPUT-NO-CRASH", "the junk above", f"then Health/Check: {down}",
                          "the centre stopped serving")
    if ctx.fake.prepares_for(card.serial):
        raise CheckFailed("INPUT-NO-CRASH", "the junk above", "a PrepareIssuance arrived",
                          "junk reached the municipality")
