"""Options applied: selected household members (by the Person.ref values of GetCatalogue) make
a document about exactly them; an item switched on changes the page; the tenant's official
seal image is the one drawn."""

from __future__ import annotations

import io
import itertools

from PIL import Image, ImageDraw

from conformance import fixtures as fx
from conformance.checks.municipality import scenarios
from conformance.checks.municipality.context import MunicipalityContext
from conformance.documents import differs_beyond_noise
from conformance.failures import CheckFailed
from conformance.registry import check
from conformance.seal_meta import subject_digests
from conformance.target import attempt, short_text
from konbini.common.v1 import types_pb2
from konbini.issuing.v1 import issuing_pb2
from konbini.seal import subject_digest

K = types_pb2
RESIDENCE = K.CERTIFICATE_KIND_RESIDENCE_RECORD


def _household_of_three(
    ctx: MunicipalityContext,
) -> tuple[list[scenarios.Person], issuing_pb2.GetCatalogueRequest, dict[str, str]]:
    """Load a holder, a spouse and a child in one household; (people, the catalogue request,
    display name -> Person.ref of the residence record entry)."""
    data = scenarios.new_tenant(ctx)
    household = f"{ctx.code}-family"
    people = [
        scenarios.add_person(ctx, data, 1, household=household),
        scenarios.add_person(ctx, data, 2, household=household, relationship="妻"),
        scenarios.add_person(ctx, data, 3, household=household, relationship="子"),
    ]
    ctx.load(fx.dataset_of(data))
    request = issuing_pb2.GetCatalogueRequest(
        municipality_code=K.MunicipalityCode(value=ctx.code),
        card=issuing_pb2.CardReference(certificate_serial=people[0].serial),
    )
    answer = attempt(lambda: ctx.issuing.GetCatalogue(request))
    if not answer.ok or not isinstance(answer.response, issuing_pb2.GetCatalogueResponse):
        raise CheckFailed(
            "OPT-APPLIED", short_text(request), answer.describe(), "no catalogue for the holder"
        )
    entries = [e for e in answer.response.entries if e.kind == RESIDENCE]
    refs = {p.display_name: p.ref for e in entries for p in e.selectable}
    missing = [p.name for p in people if p.name not in refs]
    if missing:
        raise CheckFailed(
            "OPT-APPLIED",
            short_text(request),
            answer.describe(),
            f"the residence record entry offers no Person.ref for household members {missing}",
        )
    return people, request, refs


@check("MUST.municipality.options.selected_members", covers=("OPT-APPLIED",))
def selected_members(ctx: MunicipalityContext) -> None:
    """Of a household of three, SELECTED_MEMBERS with the refs of the holder and the child (and
    then of the spouse alone) gives documents whose subject digest covers exactly those people
    — not the whole household, not the holder by default."""
    people, _, refs = _household_of_three(ctx)
    holder, spouse, child = people
    for chosen in ([holder, child], [spouse]):
        options = K.CertificateOptions(
            residence_record=K.ResidenceRecordOptions(
                scope=K.HOUSEHOLD_SCOPE_SELECTED_MEMBERS, member_refs=[refs[p.name] for p in chosen]
            )
        )
        request = ctx.prepare_request(holder.serial, RESIDENCE, options)
        response = ctx.expect_issued(
            request, ctx.prepare(request), "OPT-APPLIED", "members of the holder's household"
        )
        subjects = [(p.id, p.name) for p in chosen]
        # The printed order is the municipality's (household order); the set is the request's.
        allowed = {subject_digest(ctx.code, list(o)) for o in itertools.permutations(subjects)}
        got = subject_digests(response.documents)
        if any(d not in allowed for d in got):
            raise CheckFailed(
                "OPT-APPLIED",
                short_text(request),
                f"subject digests {[d.hex() for d in got]}",
                f"the document is not about exactly the chosen {[p.id for p in chosen]}",
                expected={"outcome": "ok"},
            )


def _front(ctx: MunicipalityContext, serial: str, options: K.CertificateOptions) -> bytes:
    request = ctx.prepare_request(serial, RESIDENCE, options)
    response = ctx.expect_issued(request, ctx.prepare(request), "OPT-APPLIED", "permitted option")
    return response.documents[0].pdf


@check("MUST.municipality.options.item_switch", covers=("OPT-APPLIED",))
def item_switch_changes_page(ctx: MunicipalityContext) -> None:
    """show_registered_domicile (permitted by the tenant) switched on gives a front that differs
    from two fronts without it beyond issuance noise: the 本籍・筆頭者 item is drawn."""
    data, people = scenarios.population(ctx, 1)
    ctx.load(fx.dataset_of(data))
    serial = people[0].serial
    off = fx.request_options(RESIDENCE)
    on = fx.request_options(RESIDENCE)
    on.residence_record.show_registered_domicile = True
    a, b, c = _front(ctx, serial, off), _front(ctx, serial, off), _front(ctx, serial, on)
    if not differs_beyond_noise(a, b, c):
        raise CheckFailed(
            "OPT-APPLIED",
            "PrepareIssuance without and with show_registered_domicile",
            "identical fronts (beyond issue number, time and QR)",
            "the option switched on did not change the document",
        )


def solid_seal_png(size: int = fx.SEAL_PX) -> bytes:
    """An official seal unlike the fixtures' ring: a filled red square with a white cross."""
    image = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(image)
    draw.rectangle((4, 4, size - 5, size - 5), fill=(200, 0, 0))
    draw.rectangle((size // 2 - 12, 16, size // 2 + 12, size - 17), fill="white")
    draw.rectangle((16, size // 2 - 12, size - 17, size // 2 + 12), fill="white")
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


@check("MUST.municipality.documents.official_seal", covers=("DOC-OFFICIAL-SEAL",))
def official_seal_drawn(ctx: MunicipalityContext) -> None:
    """The same record under two tenants' official seal images (a ring, a solid square) gives
    fronts that differ beyond issuance noise: the 公印 drawn is the tenant's."""
    data, people = scenarios.population(ctx, 1)
    serial = people[0].serial
    options = fx.request_options(RESIDENCE)
    ctx.load(fx.dataset_of(data))
    a, b = _front(ctx, serial, options), _front(ctx, serial, options)
    data.tenant.official_seal_png = solid_seal_png()
    ctx.load(fx.dataset_of(data))
    c = _front(ctx, serial, options)
    if not differs_beyond_noise(a, b, c):
        raise CheckFailed(
            "DOC-OFFICIAL-SEAL",
            "PrepareIssuance under official_seal_png A, A, then B",
            "identical fronts (beyond issue number, time and QR)",
            "the tenant's official seal image is not drawn",
        )
