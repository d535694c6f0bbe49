"""Stateful sequences of prepare, commit, cancel, clock and register changes (see
conformance.stateful)."""

from __future__ import annotations

from conformance.checks.municipality.context import MunicipalityContext
from conformance.registry import check
from conformance.stateful import run_machine


@check(
    "MUST.municipality.stateful.issuance_sequences",
    covers=(
        "ISSUE-TWO-PHASE",
        "ISSUE-EXPIRY",
        "ISSUE-CANCELLED-FINAL",
        "ISSUE-COMMITTED-FINAL",
        "ONCE-REQUEST-ID",
        "FRESH-NEXT",
        "DURABLE-CRASH",
    ),
)
def issuance_sequences(ctx: MunicipalityContext) -> None:
    """Random sequences of issuance steps agree with the model after every step."""
    run_machine(
        ctx,
        seed=ctx.seed,
        examples=max(12, ctx.examples),
        steps=20,
        shrink_budget=ctx.shrink_budget,
    )
