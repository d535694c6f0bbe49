"""Every refusal reason for the people it applies to, and no refusal for a twin it does not
apply to; plus a property over generated populations judged by conformance.model."""

from __future__ import annotations

import datetime as dt
from typing import Any

from hypothesis import strategies as st

from conformance import fixtures as fx
from conformance.checks.municipality import scenarios
from conformance.checks.municipality.context import MunicipalityContext
from conformance.failures import CheckFailed
from conformance.hypo import run_property
from conformance.model import expect_prepare, find_tenant, holder_of
from conformance.registry import check
from conformance.seal_meta import subject_digests
from conformance.target import short_text
from konbini.common.v1 import types_pb2
from konbini.register.v1 import register_pb2
from konbini.seal import subject_digest

K = types_pb2
R = register_pb2
RESIDENCE = K.CERTIFICATE_KIND_RESIDENCE_RECORD
SEAL = K.CERTIFICATE_KIND_SEAL_REGISTRATION
TAX = K.CERTIFICATE_KIND_INCOME_TAX
FULL_REGISTER = K.CERTIFICATE_KIND_FAMILY_REGISTER_FULL


def refused_and_twin_issued(
    ctx: MunicipalityContext,
    requirement: str,
    reason: str,
    why: str,
    *,
    kind: int = RESIDENCE,
    seal: str = "registered",
    options: K.CertificateOptions | None = None,
    dataset: Any = None,
    **flags: object,
) -> None:
    """Load a flagged person and a twin; the flagged one is refused with ``reason`` and leaves
    nothing behind, the twin gets a document."""
    if dataset is None:
        dataset, flagged, control = scenarios.twins(ctx, seal=seal, **flags)
    else:
        dataset, flagged, control = dataset
    ctx.load(dataset)
    opts = options or fx.request_options(kind, fiscal_year=fx.fiscal_years_for(ctx.today)[1])
    request = ctx.prepare_request(flagged.serial, kind, opts)
    ctx.expect_refused(request, ctx.prepare(request), {reason}, requirement, why)
    ctx.expect_nothing_reserved(request.request_id, "REFUSE-NO-STATE", short_text(request))
    twin = ctx.prepare_request(control.serial, kind, opts)
    ctx.expect_issued(twin, ctx.prepare(twin), requirement, f"a twin without: {why}")


def _reason_check(check_name: str, requirement: str, reason: str, why: str, **kwargs: Any) -> None:
    def run(ctx: MunicipalityContext) -> None:
        extra = {k: (v(ctx) if callable(v) else v) for k, v in kwargs.items()}
        refused_and_twin_issued(ctx, requirement, reason, why, **extra)

    run.__doc__ = f"{why}: refused with {reason}; a twin without it is issued."
    check(check_name, covers=(requirement, "REFUSE-NO-STATE", "REFUSE-TYPED"))(run)


_reason_check(
    "MUST.municipality.eligibility.under_15",
    "ELIG-UNDER-15",
    "UNDER_15",
    "card holder one day short of 15",
    birth=lambda ctx: fx.years_before(ctx.today, 15, 1),
)
_reason_check(
    "MUST.municipality.eligibility.adult_ward",
    "ELIG-ADULT-WARD",
    "ADULT_WARD",
    "seal certificate for an adult ward",
    kind=SEAL,
    adult_ward=True,
)
_reason_check(
    "MUST.municipality.eligibility.seal_not_registered",
    "ELIG-SEAL-NOT-REGISTERED",
    "SEAL_NOT_REGISTERED",
    "seal certificate without a registration",
    kind=SEAL,
    seal="none",
)
_reason_check(
    "MUST.municipality.eligibility.seal_abolished",
    "ELIG-SEAL-ABOLISHED",
    "SEAL_ABOLISHED",
    "seal certificate for an abolished registration",
    kind=SEAL,
    seal="abolished",
)
_reason_check(
    "MUST.municipality.eligibility.support_measure",
    "ELIG-SUPPORT-MEASURE",
    "SUPPORT_MEASURE",
    "card holder under a support measure",
    support_measure=True,
)
_reason_check(
    "MUST.municipality.eligibility.moved_out",
    "ELIG-MOVED-OUT",
    "MOVED_OUT",
    "card holder moved out",
    status=R.RESIDENT_STATUS_MOVED_OUT,
)
_reason_check(
    "MUST.municipality.eligibility.moving_out",
    "ELIG-MOVING-OUT",
    "MOVING_OUT",
    "card holder with a move-out registered",
    status=R.RESIDENT_STATUS_MOVING_OUT,
)
_reason_check(
    "MUST.municipality.eligibility.deceased",
    "ELIG-DECEASED",
    "DECEASED",
    "card holder deceased",
    status=R.RESIDENT_STATUS_DECEASED,
)
_reason_check(
    "MUST.municipality.eligibility.moved_in_today",
    "ELIG-MOVED-IN-TODAY",
    "MOVED_IN_TODAY",
    "card holder moved in today",
    moved_in_on=lambda ctx: ctx.today,
)
_reason_check(
    "MUST.municipality.eligibility.characters_unsupported",
    "ELIG-CHARACTERS",
    "CHARACTERS_NOT_SUPPORTED",
    "a name with a character no font draws",
    name=f"山田 太{fx.UNDRAWABLE}",
)
_reason_check(
    "MUST.municipality.eligibility.characters_pending",
    "ELIG-CHARACTERS-PENDING",
    "CHARACTERS_BEING_REGISTERED",
    "an external character still being registered",
    characters_pending=True,
)
_reason_check(
    "MUST.municipality.eligibility.register_change_pending",
    "ELIG-REGISTER-PENDING",
    "REGISTER_CHANGE_PENDING",
    "a register change not yet reflected",
    register_change_pending=True,
)


def _household(ctx: MunicipalityContext, **member_flags: object) -> Any:
    """A holder whose household member carries ``member_flags``; a twin in a clean household."""
    data = scenarios.new_tenant(ctx)
    holder = scenarios.add_person(ctx, data, 1, household="hh-a")
    scenarios.add_person(ctx, data, 2, household="hh-a", relationship="妻", **member_flags)
    control = scenarios.add_person(ctx, data, 3, household="hh-b")
    scenarios.add_person(ctx, data, 4, household="hh-b", relationship="妻")
    return fx.dataset_of(data), holder, control


WHOLE = fx.request_options(RESIDENCE, whole_household=True)
check(
    "MUST.municipality.eligibility.household_support_measure",
    covers=("ELIG-SUPPORT-MEASURE", "REFUSE-NO-STATE"),
)(
    lambda ctx: refused_and_twin_issued(
        ctx,
        "ELIG-SUPPORT-MEASURE",
        "SUPPORT_MEASURE",
        "whole household with a protected member",
        options=WHOLE,
        dataset=_household(ctx, support_measure=True),
    )
)
check(
    "MUST.municipality.eligibility.household_moving_out",
    covers=("ELIG-MOVING-OUT", "REFUSE-NO-STATE"),
)(
    lambda ctx: refused_and_twin_issued(
        ctx,
        "ELIG-MOVING-OUT",
        "MOVING_OUT",
        "whole household with a member moving out",
        options=WHOLE,
        dataset=_household(ctx, status=R.RESIDENT_STATUS_MOVING_OUT),
    )
)


@check("MUST.municipality.eligibility.fiscal_year", covers=("OPT-FISCAL-YEAR",))
def fiscal_year_not_offered(ctx: MunicipalityContext) -> None:
    """An income and tax certificate for a year the tenant does not offer is refused."""
    dataset, person, _ = scenarios.twins(ctx)
    ctx.load(dataset)
    year = fx.fiscal_years_for(ctx.today)[0] - 3
    request = ctx.prepare_request(person.serial, TAX, fx.request_options(TAX, fiscal_year=year))
    ctx.expect_refused(
        request,
        ctx.prepare(request),
        {"FISCAL_YEAR_NOT_OFFERED"},
        "OPT-FISCAL-YEAR",
        f"fiscal year {year} not offered",
    )


@check("MUST.municipality.eligibility.kind_not_offered", covers=("KIND-OFFERED",))
def kind_not_offered(ctx: MunicipalityContext) -> None:
    """A kind the tenant does not offer is KIND_NOT_OFFERED."""
    dataset, person, _ = scenarios.twins(ctx)
    data = dataset.municipalities[0]
    kept = [o for o in data.tenant.offers if o.kind != K.CERTIFICATE_KIND_RESIDENCE_RECORD_ITEMS]
    del data.tenant.offers[:]
    data.tenant.offers.extend(kept)
    ctx.load(dataset)
    kind = K.CERTIFICATE_KIND_RESIDENCE_RECORD_ITEMS
    request = ctx.prepare_request(person.serial, kind, fx.request_options(kind))
    ctx.expect_refused(
        request,
        ctx.prepare(request),
        {"KIND_NOT_OFFERED"},
        "KIND-OFFERED",
        "the tenant offers no residence-record items certificate",
    )


@check("MUST.municipality.eligibility.option_forbidden", covers=("OPT-PERMITTED",))
def option_forbidden(ctx: MunicipalityContext) -> None:
    """Asking for the individual number where the tenant forbids it is OPTION_NOT_OFFERED."""
    dataset, person, _ = scenarios.twins(ctx)
    ctx.load(dataset)
    options = K.CertificateOptions(
        residence_record=K.ResidenceRecordOptions(
            scope=K.HOUSEHOLD_SCOPE_SELF, show_individual_number=True
        )
    )
    request = ctx.prepare_request(person.serial, RESIDENCE, options)
    ctx.expect_refused(
        request,
        ctx.prepare(request),
        {"OPTION_NOT_OFFERED"},
        "OPT-PERMITTED",
        "individual number forbidden by the tenant",
    )


@check("MUST.municipality.eligibility.register_entitlement", covers=("KIND-ENTITLEMENT-REGISTER",))
def register_entitlement(ctx: MunicipalityContext) -> None:
    """A family-register certificate for a holder in no register held here is refused; a
    member of a register gets one about that register's members."""
    data = scenarios.new_tenant(ctx)
    outsider = scenarios.add_person(ctx, data, 1)
    member = scenarios.add_person(ctx, data, 2)
    data.family_registers.append(fx.family_register("reg-1", [member.resident]))
    ctx.load(fx.dataset_of(data))
    options = fx.request_options(FULL_REGISTER)
    request = ctx.prepare_request(outsider.serial, FULL_REGISTER, options)
    ctx.expect_refused(
        request,
        ctx.prepare(request),
        {"NOT_ENTITLED", "SUBJECT_NOT_FOUND"},
        "KIND-ENTITLEMENT-REGISTER",
        "the holder is in no register held here",
    )
    ok = ctx.prepare_request(member.serial, FULL_REGISTER, options)
    response = ctx.expect_issued(ok, ctx.prepare(ok), "KIND-ENTITLEMENT-REGISTER", "a member")
    want = subject_digest(ctx.code, [(m.id, m.name) for m in data.family_registers[0].members])
    if any(d != want for d in subject_digests(response.documents)):
        raise CheckFailed(
            "DOC-SUBJECT-DIGEST",
            short_text(ok),
            "subject digest differs",
            "the register certificate is not about the register's members",
        )


# -- the property ------------------------------------------------------------------------------
KIND_CHOICES = (
    (RESIDENCE, False),
    (RESIDENCE, True),
    (SEAL, False),
    (TAX, False),
    (FULL_REGISTER, False),
)


@st.composite
def population_requests(draw: st.DrawFn, code: str, today: dt.date) -> tuple[Any, list[Any]]:
    data = draw(fx.municipality_data(code, scenarios.tenant_name(code), today, 0x5000))
    years = fx.fiscal_years_for(today)
    requests = []
    for binding in data.card_bindings:
        kind, whole = draw(st.sampled_from(KIND_CHOICES), label="kind")
        year = draw(st.sampled_from((*years, years[0] - 2)), label="fiscal_year")
        requests.append(
            (
                binding.certificate_serial,
                kind,
                fx.request_options(kind, whole_household=whole, fiscal_year=year),
            )
        )
    return fx.dataset_of(data), requests


def _digest_ok(expected: Any, code: str, digests: list[bytes]) -> bool:
    import itertools

    if expected.subjects:
        want = {subject_digest(code, list(expected.subjects))}
    else:
        people = sorted(expected.subject_set)
        want = (
            {subject_digest(code, list(p)) for p in itertools.permutations(people)}
            if len(people) <= 5
            else set(digests)
        )
    return all(d in want for d in digests)


@check(
    "MUST.municipality.eligibility.model",
    covers=(
        "REFUSE-TYPED",
        "REFUSE-NO-STATE",
        "KIND-ENTITLEMENT-SELF",
        "KIND-ENTITLEMENT-HOUSEHOLD",
        "ELIG-UNDER-15",
        "ELIG-SUPPORT-MEASURE",
        "ELIG-MOVED-OUT",
        "ELIG-MOVING-OUT",
        "ELIG-DECEASED",
        "ELIG-ADULT-WARD",
        "ELIG-SEAL-NOT-REGISTERED",
        "ELIG-SEAL-ABOLISHED",
        "ELIG-MOVED-IN-TODAY",
    ),
)
def model_agreement(ctx: MunicipalityContext) -> None:
    """Over generated populations, every request is refused with one of the reasons the
    suite's model (conformance.model) allows, or issued about exactly the people the model
    names; refusals leave no reservation."""

    def property_(case: tuple[Any, list[Any]]) -> None:
        dataset, requests = case
        ctx.wire.start_example()
        ctx.load(dataset)
        for serial, kind, options in requests:
            expected = expect_prepare(dataset, ctx.code, serial, kind, options, 1, ctx.today)
            request = ctx.prepare_request(serial, kind, options)
            answer = ctx.prepare(request)
            if expected.undecided:
                continue
            requirement = expected.rules[0] if expected.rules else "REFUSE-TYPED"
            data = find_tenant(dataset, ctx.code)
            holder = holder_of(data, serial) if data is not None else None
            described = short_text(request) + (f"\nholder: {short_text(holder)}" if holder else "")
            if expected.refused:
                ctx.expect_refused(
                    described,
                    answer,
                    expected.reasons,
                    requirement,
                    f"model: {', '.join(expected.rules)}",
                )
                ctx.expect_nothing_reserved(
                    request.request_id, "REFUSE-NO-STATE", short_text(request)
                )
            else:
                response = ctx.expect_issued(
                    described, answer, "REFUSE-TYPED", "no refusal rule applies"
                )
                if not _digest_ok(expected, ctx.code, subject_digests(response.documents)):
                    raise CheckFailed(
                        "DOC-SUBJECT-DIGEST",
                        short_text(request),
                        "subject digest of other people",
                        "the document is not about the people the model expects",
                    )

    run_property(
        property_,
        population_requests(ctx.code, ctx.today),
        seed=ctx.seed,
        examples=ctx.examples,
        shrink_budget=ctx.shrink_budget,
    )
