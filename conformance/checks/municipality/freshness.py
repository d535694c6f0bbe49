"""Fresh data: a register change loaded between two issuances shows in the second one."""

from __future__ import annotations

from conformance import fixtures as fx
from conformance.checks.municipality import scenarios
from conformance.checks.municipality.context import MunicipalityContext
from conformance.documents import differs_beyond_noise
from conformance.failures import CheckFailed
from conformance.registry import check
from conformance.seal_meta import subject_digests
from conformance.target import short_text
from konbini.register.v1 import register_pb2
from konbini.seal import subject_digest

RESIDENCE = 1


def _issue(ctx: MunicipalityContext, person: scenarios.Person) -> bytes:
    request = ctx.prepare_request(person.serial, RESIDENCE, fx.request_options(RESIDENCE))
    response = ctx.expect_issued(request, ctx.prepare(request), "FRESH-NEXT", "eligible adult")
    return response.documents[0].pdf


def _reload(ctx: MunicipalityContext, data: register_pb2.MunicipalityData) -> None:
    """Load changed data without Reset (a register update, not a new world)."""
    from konbini.testing.v1 import testing_pb2

    ctx.fixture.LoadDataset(
        testing_pb2.LoadDatasetRequest(
            request_id=ctx.rid("load"), replace=True, municipality=fx.dataset_of(data)
        )
    )


@check("MUST.municipality.freshness.name_change", covers=("FRESH-NEXT",))
def name_change_visible(ctx: MunicipalityContext) -> None:
    """After a name change the next document's subject digest carries the new name."""
    data, people = scenarios.population(ctx, 1)
    ctx.load(fx.dataset_of(data))
    person = people[0]
    _issue(ctx, person)
    data.residents[0].name = f"{fx.KATSU_IVS}西 {person.name.split(' ')[-1]}"
    _reload(ctx, data)
    request = ctx.prepare_request(person.serial, RESIDENCE, fx.request_options(RESIDENCE))
    response = ctx.expect_issued(request, ctx.prepare(request), "FRESH-NEXT", "after a change")
    want = subject_digest(ctx.code, [(person.id, data.residents[0].name)])
    if any(d != want for d in subject_digests(response.documents)):
        raise CheckFailed(
            "FRESH-NEXT",
            short_text(request),
            "the old name's subject digest",
            "the document after a name change does not carry the new name",
        )


@check("MUST.municipality.freshness.address_change", covers=("FRESH-NEXT",))
def address_change_visible(ctx: MunicipalityContext) -> None:
    """After an address change the next document's front differs from the one before beyond
    what two issuances of the same record differ by (issue number, time, QR)."""
    data, people = scenarios.population(ctx, 1)
    ctx.load(fx.dataset_of(data))
    first, second = _issue(ctx, people[0]), _issue(ctx, people[0])
    data.residents[0].address = fx.ADDRESSES[3]
    _reload(ctx, data)
    third = _issue(ctx, people[0])
    if not differs_beyond_noise(first, second, third):
        raise CheckFailed(
            "FRESH-NEXT",
            f"PrepareIssuance for {people[0].id} after an address change",
            "a front page identical to the one before the change (beyond issue "
            "number, time and QR)",
            "the address change is not visible",
        )
