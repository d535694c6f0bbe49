"""The error model: one ErrorInfo, the fixed domain, a catalogued reason with its status code,
and no internals in the message."""

from __future__ import annotations

import re

from conformance.checks.municipality import scenarios
from conformance.checks.municipality.context import MunicipalityContext
from conformance.failures import CheckFailed
from conformance.fixtures import dataset_of, request_options
from conformance.registry import check
from conformance.target import Answer
from konbini.contracts import reasons

DOMAIN = "konbini-kofu.dev"
INTERNALS = re.compile(r"Traceback|File \"|line \d+, in |Exception:|Error\(|0x[0-9a-f]{8,}")


def judge_error(sent: str, answer: Answer, names: list[str]) -> None:
    """Raise CheckFailed when an error answer breaks ERR-MODEL or ERR-NO-INTERNALS."""
    e = answer.error
    if e is None:
        return
    catalogue = reasons()
    if e.error_info_count != 1:
        raise CheckFailed(
            "ERR-MODEL",
            sent,
            answer.describe(),
            f"{e.error_info_count} ErrorInfo details (exactly one required)",
        )
    if e.domain != DOMAIN:
        raise CheckFailed("ERR-MODEL", sent, answer.describe(), f"ErrorInfo domain {e.domain!r}")
    if e.reason not in catalogue:
        raise CheckFailed(
            "ERR-MODEL", sent, answer.describe(), f"reason {e.reason!r} not catalogued"
        )
    if e.code.value[0] != catalogue[e.reason].grpc_code:
        raise CheckFailed(
            "ERR-MODEL",
            sent,
            answer.describe(),
            f"reason {e.reason} came with {e.code.name}; the catalogue fixes "
            f"code {catalogue[e.reason].grpc_code}",
        )
    if INTERNALS.search(e.message) or any(n and n in e.message for n in names):
        raise CheckFailed(
            "ERR-NO-INTERNALS",
            sent,
            answer.describe(),
            "the error message carries internals or personal data",
        )


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
