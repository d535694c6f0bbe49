"""The suite's own model of DOMAIN.md's eligibility rules for the municipality role.

Independent of any implementation: given a dataset, a request and the day, it says which
refusal reasons are acceptable (any one of them, when several rules apply) or, when none
applies, that a document must be issued and about whom. Where the domain leaves the answer
open (a household member who already moved out, a tax certificate for someone without a tax
record), the expectation is ``undecided`` and the suite does not judge that request.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from konbini.common.v1 import types_pb2
from konbini.register.v1 import register_pb2

K = types_pb2
R = register_pb2

RESIDENCE_KINDS = (K.CERTIFICATE_KIND_RESIDENCE_RECORD, K.CERTIFICATE_KIND_RESIDENCE_RECORD_ITEMS)
REGISTER_KINDS = (
    K.CERTIFICATE_KIND_FAMILY_REGISTER_FULL,
    K.CERTIFICATE_KIND_FAMILY_REGISTER_INDIVIDUAL,
    K.CERTIFICATE_KIND_FAMILY_REGISTER_ADDRESS_HISTORY,
)
DEFAULT_MAX_COPIES = 10
# Refusals for a tenant or card the server does not know: any of these is acceptable.
UNKNOWN_CARD = frozenset({"CARD_NOT_BOUND", "SUBJECT_NOT_FOUND"})
UNKNOWN_TENANT = frozenset(
    {"MUNICIPALITY_UNKNOWN", "TENANT_NOT_SERVED", "CARD_NOT_BOUND", "SUBJECT_NOT_FOUND"}
)


@dataclass(frozen=True)
class Expectation:
    """What a PrepareIssuance must answer."""

    reasons: frozenset[str] = frozenset()  # refusal: any one of these
    # issue: the subjects printed, (id, name) in printed order, when the order is fixed;
    # subject_sets lists the people when only the set is fixed (household order).
    subjects: tuple[tuple[str, str], ...] = ()
    subject_set: frozenset[tuple[str, str]] = frozenset()
    undecided: str = ""  # why the domain leaves this open
    rules: tuple[str, ...] = field(default=())  # the requirement IDs that refuse

    @property
    def refused(self) -> bool:
        return bool(self.reasons)

    @property
    def issued(self) -> bool:
        return not self.reasons and not self.undecided


def to_date(value: types_pb2.Date) -> dt.date | None:
    if not value.year:
        return None
    return dt.date(value.year, value.month, value.day)


def age_on(birth: dt.date, day: dt.date) -> int:
    """Full years on ``day`` (a birthday counts on the day itself)."""
    return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))


def find_tenant(dataset: register_pb2.Dataset, code: str) -> register_pb2.MunicipalityData | None:
    for data in dataset.municipalities:
        if data.tenant.code.value == code:
            return data
    return None


def holder_of(data: register_pb2.MunicipalityData, serial: str) -> register_pb2.Resident | None:
    ids = [b.resident_id for b in data.card_bindings if b.certificate_serial == serial]
    for resident in data.residents:
        if ids and resident.id == ids[0]:
            return resident
    return None


def offer_of(data: register_pb2.MunicipalityData, kind: int) -> register_pb2.KindOffer | None:
    return next((o for o in data.tenant.offers if o.kind == kind), None)


class _Reasons:
    """Reasons that must refuse (``found``) and reasons a server may also give when the domain
    does not fix whether the rule applies (``maybe``: acceptable only beside a certain one)."""

    def __init__(self) -> None:
        self.found: dict[str, str] = {}
        self.maybe: dict[str, str] = {}

    def add(self, reason: str, requirement: str) -> None:
        self.found.setdefault(reason, requirement)

    def add_maybe(self, reason: str, requirement: str) -> None:
        self.maybe.setdefault(reason, requirement)


def _person_rules(person: register_pb2.Resident, out: _Reasons) -> None:
    """Rules that refuse a document about ``person`` (holder or a printed member)."""
    if person.support_measure:
        out.add("SUPPORT_MEASURE", "ELIG-SUPPORT-MEASURE")
    if person.status == R.RESIDENT_STATUS_MOVING_OUT:
        out.add("MOVING_OUT", "ELIG-MOVING-OUT")
    if person.characters_pending:
        out.add("CHARACTERS_BEING_REGISTERED", "ELIG-CHARACTERS-PENDING")
    if person.register_change_pending:
        out.add("REGISTER_CHANGE_PENDING", "ELIG-REGISTER-PENDING")


def _holder_rules(holder: register_pb2.Resident, today: dt.date, out: _Reasons) -> None:
    birth = to_date(holder.birth_date)
    if birth is not None and age_on(birth, today) < 15:
        out.add("UNDER_15", "ELIG-UNDER-15")


def _resident_record_rules(holder: register_pb2.Resident, today: dt.date, out: _Reasons) -> None:
    """Rules about the holder's resident record (residence, seal and tax kinds)."""
    if holder.status == R.RESIDENT_STATUS_MOVED_OUT:
        out.add("MOVED_OUT", "ELIG-MOVED-OUT")
    if holder.status == R.RESIDENT_STATUS_DECEASED:
        out.add("DECEASED", "ELIG-DECEASED")
    if to_date(holder.moved_in_on) == today:
        out.add("MOVED_IN_TODAY", "ELIG-MOVED-IN-TODAY")
    _person_rules(holder, out)


def expect_prepare(  # noqa: PLR0911, PLR0912, PLR0915, PLR0917 - one branch per rule
    dataset: register_pb2.Dataset,
    code: str,
    serial: str,
    kind: int,
    options: types_pb2.CertificateOptions,
    copies: int,
    today: dt.date,
) -> Expectation:
    """The expected answer to PrepareIssuance(code, card serial, kind, options, copies)."""
    data = find_tenant(dataset, code)
    if data is None:
        return Expectation(reasons=UNKNOWN_TENANT, rules=("AUTHZ-TENANT",))
    holder = holder_of(data, serial)
    if holder is None:
        return Expectation(reasons=UNKNOWN_CARD, rules=("AUTHZ-TENANT",))
    offer = offer_of(data, kind)
    if offer is None:
        return Expectation(reasons=frozenset({"KIND_NOT_OFFERED"}), rules=("KIND-OFFERED",))
    if copies > (offer.max_copies or DEFAULT_MAX_COPIES):
        return Expectation(
            reasons=frozenset({"FIELD_INVALID", "TOO_MANY_COPIES"}), rules=("OPT-COPIES",)
        )
    out = _Reasons()
    _holder_rules(holder, today, out)
    record = _Reasons()
    _resident_record_rules(holder, today, record)
    if kind in REGISTER_KINDS:
        # A family-register certificate prints the register, not the resident record: whether
        # the holder's resident-record state refuses it is not fixed.
        for reason, req in record.found.items():
            out.add_maybe(reason, req)
    else:
        for reason, req in record.found.items():
            out.add(reason, req)
    subjects: tuple[tuple[str, str], ...] = ((holder.id, holder.name),)
    subject_set: frozenset[tuple[str, str]] = frozenset()
    if kind in RESIDENCE_KINDS:
        opts = options.residence_record
        permitted = offer.permitted_options
        if opts.show_individual_number and not permitted.show_individual_number:
            out.add("OPTION_NOT_OFFERED", "OPT-PERMITTED")
        if opts.scope == K.HOUSEHOLD_SCOPE_WHOLE_HOUSEHOLD:
            members = [r for r in data.residents if r.household_id == holder.household_id]
            gone = (R.RESIDENT_STATUS_MOVED_OUT, R.RESIDENT_STATUS_DECEASED)
            if any(m.status in gone for m in members if m.id != holder.id) and not out.found:
                return Expectation(undecided="a household member moved out or died")
            for m in members:
                _person_rules(m, out)
                if m.id != holder.id and to_date(m.moved_in_on) == today:
                    out.add_maybe("MOVED_IN_TODAY", "ELIG-MOVED-IN-TODAY")
            subjects = ()
            subject_set = frozenset((m.id, m.name) for m in members)
        elif opts.scope == K.HOUSEHOLD_SCOPE_SELECTED_MEMBERS:
            return Expectation(undecided="member refs come from a catalogue session")
    elif kind == K.CERTIFICATE_KIND_SEAL_REGISTRATION:
        seals = [s for s in data.seals if s.resident_id == holder.id]
        if holder.adult_ward:
            out.add("ADULT_WARD", "ELIG-ADULT-WARD")
        if not seals:
            out.add("SEAL_NOT_REGISTERED", "ELIG-SEAL-NOT-REGISTERED")
        elif all(s.state == R.SEAL_STATE_ABOLISHED for s in seals):
            out.add("SEAL_ABOLISHED", "ELIG-SEAL-ABOLISHED")
    elif kind == K.CERTIFICATE_KIND_INCOME_TAX:
        year = options.income_tax.fiscal_year
        if year not in offer.fiscal_years:
            out.add("FISCAL_YEAR_NOT_OFFERED", "OPT-FISCAL-YEAR")
        elif not any(
            t.resident_id == holder.id and t.fiscal_year == year for t in data.tax_records
        ):
            if not out.found:
                return Expectation(undecided="no tax record for that year (nil or refused)")
            # Which rule a server checks first is not fixed: "no record" is acceptable too.
            out.add("SUBJECT_NOT_FOUND", "KIND-ENTITLEMENT-SELF")
    elif kind in REGISTER_KINDS:
        register = next(
            (
                f
                for f in data.family_registers
                if any(m.resident_id == holder.id for m in f.members)
            ),
            None,
        )
        if register is None:
            out.add("NOT_ENTITLED", "KIND-ENTITLEMENT-REGISTER")
            out.add("SUBJECT_NOT_FOUND", "KIND-ENTITLEMENT-REGISTER")
        else:
            if kind == K.CERTIFICATE_KIND_FAMILY_REGISTER_INDIVIDUAL:
                return Expectation(undecided="member refs come from a catalogue session")
            if register.change_pending:
                out.add("REGISTER_CHANGE_PENDING", "ELIG-REGISTER-PENDING")
            if any(m.support_measure for m in register.members):
                out.add("SUPPORT_MEASURE", "ELIG-SUPPORT-MEASURE")
            subjects = tuple((m.id, m.name) for m in register.members)
    if out.found:
        return Expectation(
            reasons=frozenset(out.found) | frozenset(out.maybe),
            rules=tuple(sorted(set(out.found.values()))),
        )
    if out.maybe:
        return Expectation(undecided=f"the domain does not fix whether {sorted(out.maybe)} apply")
    return Expectation(subjects=subjects, subject_set=subject_set)
