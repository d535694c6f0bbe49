"""Operations and test mode: standard health checking, and FixtureService for the conformance
role only."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from conformance.checks.centre.context import FIXTURE, KIOSK, CentreContext
from conformance.failures import CheckFailed
from conformance.registry import check
from conformance.target import attempt
from konbini.testing.v1 import testing_pb2


@check("MUST.centre.ops.health", covers=("OPS-HEALTH",))
def health(ctx: CentreContext) -> None:
    """grpc.health.v1.Health/Check answers SERVING for the server and for KioskService."""
    stub = health_pb2_grpc.HealthStub(ctx.wire.channel("terminal"))
    for service in ("", KIOSK):
        try:
            status = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10).status
        except grpc.RpcError as error:
            raise CheckFailed("OPS-HEALTH", f"Health/Check({service!r})", str(error.code()),
                              "no standard health checking") from None
        if status != health_pb2.HealthCheckResponse.SERVING:
            raise CheckFailed("OPS-HEALTH", f"Health/Check({service!r})", str(status),
                              "not SERVING")


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
