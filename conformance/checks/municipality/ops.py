"""Operations: standard health checking (MUST) and server reflection (SHOULD)."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from conformance.checks.municipality.context import ISSUING, MunicipalityContext
from conformance.failures import CheckFailed
from conformance.registry import check


@check("MUST.municipality.ops.health", covers=("OPS-HEALTH",))
def health(ctx: MunicipalityContext) -> None:
    """grpc.health.v1.Health/Check answers SERVING for the server and for IssuingService."""
    stub = health_pb2_grpc.HealthStub(ctx.wire.channel("caller"))
    for service in ("", ISSUING):
        try:
            status = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10).status
        except grpc.RpcError as error:
            raise CheckFailed(
                "OPS-HEALTH",
                f"Health/Check({service!r})",
                str(error.code()),
                "no standard health checking",
            ) from None
        if status != health_pb2.HealthCheckResponse.SERVING:
            raise CheckFailed(
                "OPS-HEALTH", f"Health/Check({service!r})", str(status), "not SERVING"
            )


@check("SHOULD.municipality.ops.reflection", covers=("OPS-REFLECTION",))
def reflection(ctx: MunicipalityContext) -> None:
    """Server reflection lists IssuingService."""
    stub = reflection_pb2_grpc.ServerReflectionStub(ctx.wire.channel("caller"))
    try:
        responses = list(
            stub.ServerReflectionInfo(
                iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10
            )
        )
    except grpc.RpcError as error:
        raise CheckFailed(
            "OPS-REFLECTION",
            "ServerReflectionInfo(list_services)",
            str(error.code()),
            "no server reflection",
        ) from None
    names = [s.name for r in responses for s in r.list_services_response.service]
    if ISSUING not in names:
        raise CheckFailed(
            "OPS-REFLECTION",
            "ServerReflectionInfo(list_services)",
            str(names),
            "IssuingService is not listed",
        )
