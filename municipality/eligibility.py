"""Who may get which certificate for whom: every kiosk rule of DOMAIN.md as a typed refusal.

Pure functions over a :class:`CardView` (what the store holds for one card, read in one
transaction) and an :class:`Ask`; no gRPC, no storage. :func:`decide` returns the
:class:`Plan` of what to print or raises ``KonbiniError`` with the catalogue reason.
:func:`catalogue` lists what the card holder may ask for now.

Choices where DOMAIN.md is silent:

- An unknown card serial (no card binding and no use registration in this tenant) is
  SUBJECT_NOT_FOUND (not CARD_NOT_BOUND, which the centre uses for its own bindings).
- A Person.ref that does not resolve to someone the holder may choose is NOT_ENTITLED.
- The requester (card holder) must be a current resident for residence, seal and tax kinds:
  DECEASED, MOVED_OUT, MOVING_OUT and MOVED_IN_TODAY apply to the holder even when only others
  are printed; every rule of a person (also SUPPORT_MEASURE, CHARACTERS_BEING_REGISTERED,
  REGISTER_CHANGE_PENDING) applies to everyone printed.
- Family-register kinds do not depend on residence (the register may be in another town):
  only the holder's DECEASED, the register's change_pending and members' SUPPORT_MEASURE apply.
- ``permitted_options.scope`` of an offer limits the scope: UNSPECIFIED or SELECTED_MEMBERS
  permits every scope, WHOLE_HOUSEHOLD permits SELF and WHOLE_HOUSEHOLD, SELF only SELF.
- An offer's max_copies of 0 means 10.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from konbini.clock import JST
from konbini.common.v1 import types_pb2
from konbini.contracts import reason_enum_value
from konbini.errors import FieldViolation, KonbiniError, invalid
from konbini.hours import effective_hours, is_open_at, to_date
from konbini.register.v1 import register_pb2
from municipality.refs import PersonRefs

K = types_pb2
RESIDENCE_KINDS = frozenset({K.CERTIFICATE_KIND_RESIDENCE_RECORD,
                             K.CERTIFICATE_KIND_RESIDENCE_RECORD_ITEMS})
REGISTER_KINDS = frozenset({K.CERTIFICATE_KIND_FAMILY_REGISTER_FULL,
                            K.CERTIFICATE_KIND_FAMILY_REGISTER_INDIVIDUAL,
                            K.CERTIFICATE_KIND_FAMILY_REGISTER_ADDRESS_HISTORY})
OPTIONS_OF_KIND = {
    K.CERTIFICATE_KIND_RESIDENCE_RECORD: "residence_record",
    K.CERTIFICATE_KIND_RESIDENCE_RECORD_ITEMS: "residence_record",
    K.CERTIFICATE_KIND_SEAL_REGISTRATION: "seal_registration",
    K.CERTIFICATE_KIND_INCOME_TAX: "income_tax",
    K.CERTIFICATE_KIND_FAMILY_REGISTER_FULL: "family_register",
    K.CERTIFICATE_KIND_FAMILY_REGISTER_INDIVIDUAL: "family_register",
    K.CERTIFICATE_KIND_FAMILY_REGISTER_ADDRESS_HISTORY: "family_register",
}
# Residence-record switches checked against the offer's permitted_options (OPT-PERMITTED).
SWITCHES = ("show_registered_domicile", "show_household_head", "show_individual_number",
            "show_nationality", "show_residence_card_number", "show_residence_status")
DEFAULT_MAX_COPIES = 10
MAX_MEMBERS = 20
MINIMUM_AGE = 15
GONE = frozenset({register_pb2.RESIDENT_STATUS_MOVED_OUT, register_pb2.RESIDENT_STATUS_DECEASED})
SELF_LABEL = "本人"


@dataclass(frozen=True)
class Membership:
    """The card holder's place in a family register: the register and the holder's member id."""

    register: register_pb2.FamilyRegister
    member_id: str
    via_link: bool  # from a use registration (RegisterLink) rather than residence

    def member(self) -> register_pb2.RegisterMember:
        return next(m for m in self.register.members if m.id == self.member_id)


@dataclass(frozen=True)
class CardView:
    """What one tenant holds about one card, read in one transaction."""

    code: str
    serial: str
    tenant: register_pb2.Tenant | None
    holder: register_pb2.Resident | None  # the resident the card is bound to
    household: Sequence[register_pb2.Resident] = ()  # the holder's household, holder included
    memberships: Sequence[Membership] = ()
    seals: Sequence[register_pb2.SealRegistration] = ()
    tax_records: Sequence[register_pb2.TaxRecord] = ()

    @property
    def known(self) -> bool:
        return self.tenant is not None and (self.holder is not None or bool(self.memberships))


@dataclass(frozen=True)
class Ask:
    """What was asked for."""

    kind: int
    options: types_pb2.CertificateOptions
    copies: int


@dataclass(frozen=True)
class Plan:
    """What to print: the people and records, in printed order, and the fee."""

    kind: int
    options: types_pb2.CertificateOptions
    copies: int
    fee_yen: int
    subject_ids: tuple[str, ...]
    residents: tuple[register_pb2.Resident, ...] = ()
    seal: register_pb2.SealRegistration | None = None
    tax: register_pb2.TaxRecord | None = None
    family_register: register_pb2.FamilyRegister | None = None
    register_members: tuple[register_pb2.RegisterMember, ...] = field(default_factory=tuple)


def refuse(reason: str, message: str = "", **metadata: str) -> KonbiniError:
    return KonbiniError(reason, message, metadata=metadata)


def offer_for(tenant: register_pb2.Tenant, kind: int) -> register_pb2.KindOffer | None:
    return next((o for o in tenant.offers if o.kind == kind), None)


def max_copies(offer: register_pb2.KindOffer) -> int:
    return offer.max_copies or DEFAULT_MAX_COPIES


def age_on(birth: types_pb2.Date, day: dt.date) -> int:
    """Completed years of age on ``day``."""
    born = to_date(birth)
    return day.year - born.year - ((day.month, day.day) < (born.month, born.day))


def holder_birth_date(view: CardView) -> types_pb2.Date | None:
    if view.holder is not None:
        return view.holder.birth_date
    if view.memberships:
        member = view.memberships[0].member()
        return member.birth_date if member.HasField("birth_date") else None
    return None


# -- person rules ------------------------------------------------------------------------------
def _check_requester(person: register_pb2.Resident, today: dt.date) -> None:
    """Rules on the card holder as requester (residence, seal and tax kinds)."""
    if person.status == register_pb2.RESIDENT_STATUS_DECEASED:
        raise refuse("DECEASED", "the card holder is recorded as deceased")
    if person.status == register_pb2.RESIDENT_STATUS_MOVED_OUT:
        raise refuse("MOVED_OUT", "the card holder has moved out")
    if person.status == register_pb2.RESIDENT_STATUS_MOVING_OUT:
        raise refuse("MOVING_OUT", "the card holder has a move-out registered")
    if person.HasField("moved_in_on") and to_date(person.moved_in_on) == today:
        raise refuse("MOVED_IN_TODAY", "the card holder moved in today")


def _check_printed(people: Sequence[register_pb2.Resident], today: dt.date) -> None:
    """Rules on everyone printed; metadata names the position only (no personal data)."""
    checks = (
        ("DECEASED", lambda p: p.status == register_pb2.RESIDENT_STATUS_DECEASED),
        ("MOVED_OUT", lambda p: p.status == register_pb2.RESIDENT_STATUS_MOVED_OUT),
        ("MOVING_OUT", lambda p: p.status == register_pb2.RESIDENT_STATUS_MOVING_OUT),
        ("SUPPORT_MEASURE", lambda p: p.support_measure),
        ("MOVED_IN_TODAY",
         lambda p: p.HasField("moved_in_on") and to_date(p.moved_in_on) == today),
        ("CHARACTERS_BEING_REGISTERED", lambda p: p.characters_pending),
        ("REGISTER_CHANGE_PENDING", lambda p: p.register_change_pending),
    )
    for reason, applies in checks:
        for index, person in enumerate(people):
            if applies(person):
                raise refuse(reason, "a person on the document cannot be printed at a kiosk",
                             position=str(index + 1))


# -- options -----------------------------------------------------------------------------------
def _options_of(ask: Ask) -> types_pb2.CertificateOptions:
    """The options, defaulted, checked to match the kind."""
    expected = OPTIONS_OF_KIND[ask.kind]
    chosen = ask.options.WhichOneof("kind_options")
    if chosen is not None and chosen != expected:
        raise invalid([FieldViolation("options", f"expected options.{expected} for this kind")])
    options = types_pb2.CertificateOptions()
    options.CopyFrom(ask.options)
    if chosen is None:
        if expected == "income_tax":
            raise invalid([FieldViolation("options.income_tax.fiscal_year",
                                          "the income and tax certificate needs a fiscal year")])
        getattr(options, expected).SetInParent()
    return options


def _scope_permitted(permitted: int, scope: int) -> bool:
    if permitted in (K.HOUSEHOLD_SCOPE_UNSPECIFIED, K.HOUSEHOLD_SCOPE_SELECTED_MEMBERS):
        return True
    if permitted == K.HOUSEHOLD_SCOPE_WHOLE_HOUSEHOLD:
        return scope != K.HOUSEHOLD_SCOPE_SELECTED_MEMBERS
    return scope == K.HOUSEHOLD_SCOPE_SELF


def _check_refs(refs: Sequence[str], path: str) -> None:
    if len(refs) > MAX_MEMBERS:
        raise invalid([FieldViolation(path, f"at most {MAX_MEMBERS} members")])


# -- kinds -------------------------------------------------------------------------------------
def _household_order(people: Sequence[register_pb2.Resident],
                     holder: register_pb2.Resident) -> list[register_pb2.Resident]:
    """Holder's household in printed order: head of household first, then by birth date."""
    def key(p: register_pb2.Resident) -> tuple[int, int, int, int, str]:
        b = p.birth_date
        return (0 if p.relationship == "世帯主" else 1, b.year, b.month, b.day, p.id)
    return sorted(people, key=key)


def current_household(view: CardView) -> list[register_pb2.Resident]:
    """Household members a residence record may show (not moved out, not deceased)."""
    assert view.holder is not None
    people = [p for p in view.household if p.status not in GONE]
    if not any(p.id == view.holder.id for p in people):
        people.append(view.holder)
    return _household_order(people, view.holder)


def _residence(view: CardView, offer: register_pb2.KindOffer,
               options: types_pb2.CertificateOptions, refs: PersonRefs, *,
               today: dt.date) -> tuple[register_pb2.Resident, ...]:
    holder = view.holder
    if holder is None:
        raise refuse("SUBJECT_NOT_FOUND", "the card holder is not a resident here")
    chosen = options.residence_record
    permitted = offer.permitted_options
    for switch in SWITCHES:
        if getattr(chosen, switch) and not getattr(permitted, switch):
            raise refuse("OPTION_NOT_OFFERED", f"{switch} is not offered", option=switch)
    scope = chosen.scope or K.HOUSEHOLD_SCOPE_SELF
    if not _scope_permitted(permitted.scope, scope):
        raise refuse("OPTION_NOT_OFFERED", "this household scope is not offered", option="scope")
    _check_requester(holder, today)
    if scope == K.HOUSEHOLD_SCOPE_SELF:
        people = [holder]
    elif scope == K.HOUSEHOLD_SCOPE_WHOLE_HOUSEHOLD:
        people = current_household(view)
    else:
        path = "options.residence_record.member_refs"
        if not chosen.member_refs:
            raise invalid([FieldViolation(path, "SELECTED_MEMBERS needs at least one member")])
        _check_refs(chosen.member_refs, path)
        # Refs resolve over the whole household record, so a member who died or left since
        # the catalogue was read is refused with that reason, not silently dropped.
        candidates = [(refs.resident(p.id), p) for p in (*view.household, holder)]
        picked: dict[str, register_pb2.Resident] = {}
        for ref in chosen.member_refs:
            person = PersonRefs.resolve(ref, candidates)
            if person is None:
                raise refuse("NOT_ENTITLED", "a chosen member is not in the holder's household")
            picked[person.id] = person
        people = _household_order(list(picked.values()), holder)
    _check_printed(people, today)
    return tuple(people)


def _seal(view: CardView, today: dt.date) -> tuple[register_pb2.Resident,
                                                    register_pb2.SealRegistration]:
    holder = view.holder
    if holder is None:
        raise refuse("SUBJECT_NOT_FOUND", "the card holder is not a resident here")
    _check_requester(holder, today)
    if holder.adult_ward:
        raise refuse("ADULT_WARD", "seal certificates are not issued to an adult ward")
    registered = [s for s in view.seals if s.state == register_pb2.SEAL_STATE_REGISTERED]
    if not registered:
        if any(s.state == register_pb2.SEAL_STATE_ABOLISHED for s in view.seals):
            raise refuse("SEAL_ABOLISHED", "the seal registration was abolished")
        raise refuse("SEAL_NOT_REGISTERED", "no seal is registered")
    _check_printed([holder], today)
    return holder, registered[-1]


def _tax(view: CardView, offer: register_pb2.KindOffer, options: types_pb2.CertificateOptions,
         today: dt.date) -> tuple[register_pb2.Resident, register_pb2.TaxRecord]:
    holder = view.holder
    if holder is None:
        raise refuse("SUBJECT_NOT_FOUND", "the card holder is not a resident here")
    year = options.income_tax.fiscal_year
    if year not in offer.fiscal_years:
        raise refuse("FISCAL_YEAR_NOT_OFFERED", f"fiscal year {year} is not offered",
                     fiscal_year=str(year))
    _check_requester(holder, today)
    record = next((t for t in view.tax_records if t.fiscal_year == year), None)
    if record is None:
        raise refuse("SUBJECT_NOT_FOUND", "no tax record for that fiscal year")
    _check_printed([holder], today)
    return holder, record


def register_candidates(
    view: CardView, refs: PersonRefs
) -> list[tuple[str, tuple[Membership, register_pb2.RegisterMember]]]:
    """(ref, (membership, member)) of every member of every register the holder is in."""
    return [
        (refs.member(ms.register.id, m.id), (ms, m))
        for ms in view.memberships for m in ms.register.members
    ]


def _family_register(view: CardView, ask: Ask, options: types_pb2.CertificateOptions,
                     refs: PersonRefs) -> tuple[register_pb2.FamilyRegister,
                                                tuple[register_pb2.RegisterMember, ...]]:
    if not view.memberships:
        raise refuse("SUBJECT_NOT_FOUND", "the card holder is in no register held here")
    path = "options.family_register.member_refs"
    chosen_refs = list(options.family_register.member_refs)
    _check_refs(chosen_refs, path)
    candidates = register_candidates(view, refs)
    picked: list[tuple[Membership, register_pb2.RegisterMember]] = []
    for ref in chosen_refs:
        found = PersonRefs.resolve(ref, candidates)
        if found is None:
            raise refuse("NOT_ENTITLED", "a chosen member is not in the holder's register")
        if all(found[1].id != m.id for _, m in picked):
            picked.append(found)
    registers = {ms.register.id for ms, _ in picked}
    if len(registers) > 1:
        raise invalid([FieldViolation(path, "the members must be of one register")])
    membership = picked[0][0] if picked else view.memberships[0]
    register = membership.register
    holder_member = membership.member()
    if holder_member.deceased or (
        view.holder is not None and view.holder.status == register_pb2.RESIDENT_STATUS_DECEASED
    ):
        raise refuse("DECEASED", "the card holder is recorded as deceased")
    if register.change_pending:
        raise refuse("REGISTER_CHANGE_PENDING", "a register change is not yet reflected")
    if ask.kind == K.CERTIFICATE_KIND_FAMILY_REGISTER_INDIVIDUAL:
        members = tuple(m for _, m in picked) or (holder_member,)
        order = {m.id: i for i, m in enumerate(register.members)}
        members = tuple(sorted(members, key=lambda m: order[m.id]))
    else:
        members = tuple(register.members)
    for index, member in enumerate(members):
        if member.support_measure:
            raise refuse("SUPPORT_MEASURE", "a person on the document cannot be printed at a "
                         "kiosk", position=str(index + 1))
    return register, members


def decide(view: CardView, ask: Ask, now: dt.datetime, refs: PersonRefs, *,
           holidays: Collection[dt.date] | None = None) -> Plan:
    """The plan for ``ask``, or ``KonbiniError`` with the reason it is refused."""
    if not view.known or view.tenant is None:
        raise refuse("SUBJECT_NOT_FOUND", "no record for this card in this municipality")
    offer = offer_for(view.tenant, ask.kind)
    if offer is None:
        raise refuse("KIND_NOT_OFFERED", "this kind is not offered", kind=str(ask.kind))
    if ask.copies < 1:
        raise invalid([FieldViolation("copies", "at least one copy")])
    if ask.copies > max_copies(offer):
        raise refuse("TOO_MANY_COPIES", f"at most {max_copies(offer)} copies",
                     max_copies=str(max_copies(offer)))
    options = _options_of(ask)
    closed = is_open_at(now, offer.hours, closed_dates=view.tenant.maintenance_days,
                        holidays=holidays)
    if closed is not None:
        raise refuse(closed, "this kind is not issued now")
    today = now.astimezone(JST).date()
    birth = holder_birth_date(view)
    if birth is not None and age_on(birth, today) < MINIMUM_AGE:
        raise refuse("UNDER_15", "the card holder is under 15")
    fee = offer.fee.yen * ask.copies
    if ask.kind in RESIDENCE_KINDS:
        people = _residence(view, offer, options, refs, today=today)
        return Plan(ask.kind, options, ask.copies, fee, tuple(p.id for p in people),
                    residents=people)
    if ask.kind == K.CERTIFICATE_KIND_SEAL_REGISTRATION:
        holder, seal = _seal(view, today)
        return Plan(ask.kind, options, ask.copies, fee, (holder.id,), residents=(holder,),
                    seal=seal)
    if ask.kind == K.CERTIFICATE_KIND_INCOME_TAX:
        holder, record = _tax(view, offer, options, today)
        return Plan(ask.kind, options, ask.copies, fee, (holder.id,), residents=(holder,),
                    tax=record)
    register, members = _family_register(view, ask, options, refs)
    return Plan(ask.kind, options, ask.copies, fee, tuple(m.id for m in members),
                family_register=register, register_members=members)


# -- catalogue ---------------------------------------------------------------------------------
def _default_options(kind: int, offer: register_pb2.KindOffer) -> types_pb2.CertificateOptions:
    options = types_pb2.CertificateOptions()
    if kind == K.CERTIFICATE_KIND_INCOME_TAX:
        options.income_tax.fiscal_year = max(offer.fiscal_years, default=0)
    return options


def _applies(view: CardView, kind: int) -> bool:
    return bool(view.memberships) if kind in REGISTER_KINDS else view.holder is not None


def _selectable(view: CardView, kind: int, refs: PersonRefs) -> list[types_pb2.Person]:
    if kind in REGISTER_KINDS:
        people: list[types_pb2.Person] = []
        selves = 0
        for ms in view.memberships:
            for m in ms.register.members:
                is_self = m.id == ms.member_id
                person = types_pb2.Person(ref=refs.member(ms.register.id, m.id),
                                          display_name=m.name,
                                          relationship=SELF_LABEL if is_self else m.relationship)
                # Self first (CatalogueEntry.selectable) wherever the holder sits in the
                # register; e2e fix: a holder listed after others used to be appended last.
                if is_self:
                    people.insert(selves, person)
                    selves += 1
                else:
                    people.append(person)
        return people
    assert view.holder is not None
    household = current_household(view) if kind in RESIDENCE_KINDS else [view.holder]
    household.sort(key=lambda p: p.id != view.holder.id)  # type: ignore[union-attr]
    return [
        types_pb2.Person(ref=refs.resident(p.id), display_name=p.name,
                         relationship=SELF_LABEL if p.id == view.holder.id else p.relationship)
        for p in household
    ]


def catalogue(view: CardView, now: dt.datetime, refs: PersonRefs, *,
              holidays: Collection[dt.date] | None = None) -> list[types_pb2.CatalogueEntry]:
    """What the card holder may ask for, with availability now (unavailable_reason says why)."""
    if not view.known or view.tenant is None:
        raise refuse("SUBJECT_NOT_FOUND", "no record for this card in this municipality")
    entries = []
    for offer in view.tenant.offers:
        if not _applies(view, offer.kind):
            continue
        entry = types_pb2.CatalogueEntry(
            municipality_code=view.tenant.code, municipality_name=view.tenant.name,
            kind=offer.kind, fee=offer.fee, hours=effective_hours(offer.hours),
            max_copies=max_copies(offer), permitted_options=offer.permitted_options,
            fiscal_years=offer.fiscal_years, selectable=_selectable(view, offer.kind, refs),
            available_now=True,
        )
        try:
            decide(view, Ask(offer.kind, _default_options(offer.kind, offer), 1), now, refs,
                   holidays=holidays)
        except KonbiniError as refusal:
            entry.available_now = False
            entry.unavailable_reason = reason_enum_value(refusal.reason)  # type: ignore[assignment]
        entries.append(entry)
    return entries
