"""Operations: standard health checking (MUST) and server reflection (SHOULD)."""

from __future__ import annotations

from conformance.checks.municipality.context import ISSUING, MunicipalityContext
from conformance.probes import expect_reflected, expect_serving
from conformance.registry import check


@check("MUST.municipality.ops.health", covers=("OPS-HEALTH",))
def health(ctx: MunicipalityContext) -> None:
    """grpc.health.v1.Health/Check answers SERVING for the server and for IssuingService."""
    expect_serving(ctx.wire.channel("caller"), ("", ISSUING))


@check("SHOULD.municipality.ops.reflection", covers=("OPS-REFLECTION",))
def reflection(ctx: MunicipalityContext) -> None:
    """Server reflection lists IssuingService."""
    expect_reflected(ctx.wire.channel("caller"), ISSUING)
