"""The error model: one ErrorInfo, the fixed domain, a catalogued reason with its status code,
and no internals in the message."""

from __future__ import annotations

from conformance.checks.municipality import scenarios
from conformance.checks.municipality.context import MunicipalityContext
from conformance.failures import CheckFailed
from conformance.fixtures import dataset_of, request_options
from conformance.probes import judge_error
from conformance.registry import check
from conformance.target import Answer


@check("MUST.municipality.errors.model", covers=("ERR-MODEL", "ERR-NO-INTERNALS"))
def error_model(ctx: MunicipalityContext) -> None:
    """Errors of several kinds (bad input, unknown card, refusal, unknown reservation, reused
    request id) each carry one ErrorInfo of domain konbini-kofu.dev with a catalogued reason and
    that reason's status code, and no internals or names."""
    data = scenarios.new_tenant(ctx)
    ok = scenarios.add_person(ctx, data, 1)
    young = scenarios.add_person(ctx, data, 2, birth=ctx.today.replace(year=ctx.today.year - 10))
    ctx.load(dataset_of(data))
    names = [ok.name, young.name]
    residence = 1
    tried: list[tuple[str, Answer]] = []
    bad = ctx.prepare_request(ok.serial, residence, request_options(residence), copies=0)
    tried.append((str(bad), ctx.prepare(bad)))
    unknown = ctx.prepare_request("dead", residence, request_options(residence))
    tried.append((str(unknown), ctx.prepare(unknown)))
    refused = ctx.prepare_request(young.serial, residence, request_options(residence))
    tried.append((str(refused), ctx.prepare(refused)))
    tried.append(("commit r-none", ctx.commit("r-none")))
    first = ctx.prepare_request(ok.serial, residence, request_options(residence))
    ctx.prepare(first)
    reused = ctx.prepare_request(
        young.serial, residence, request_options(residence), request_id=first.request_id
    )
    tried.append((str(reused), ctx.prepare(reused)))
    tried.append(("GetReservation r-none", ctx.reservation(reservation_id="r-none")))
    for sent, answer in tried:
        if answer.ok:
            raise CheckFailed("ERR-MODEL", sent, answer.describe(), "expected an error status")
        judge_error(sent, answer, names)
