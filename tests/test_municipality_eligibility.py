"""municipality.eligibility: every kiosk rule as its typed reason (pure, no storage, no gRPC)."""

from __future__ import annotations

import datetime as dt

import pytest

from konbini.clock import JST
from konbini.common.v1 import types_pb2
from konbini.contracts import reason_enum_value
from konbini.errors import KonbiniError
from konbini.register.v1 import register_pb2
from municipality.eligibility import Ask, CardView, Membership, catalogue, decide
from municipality.refs import PersonRefs
from municipality.sample import KOFU, kofu_data

K = types_pb2
TODAY = dt.date(2026, 5, 13)  # a Wednesday
NOON = dt.datetime(2026, 5, 13, 12, 0, tzinfo=JST)
SECRET = b"s" * 32
DATA = kofu_data(TODAY, maintenance_day=dt.date(2026, 5, 20))
RR = K.CERTIFICATE_KIND_RESIDENCE_RECORD
SEAL = K.CERTIFICATE_KIND_SEAL_REGISTRATION
TAX = K.CERTIFICATE_KIND_INCOME_TAX
FULL = K.CERTIFICATE_KIND_FAMILY_REGISTER_FULL
INDIVIDUAL = K.CERTIFICATE_KIND_FAMILY_REGISTER_INDIVIDUAL


def view_of(serial: str, data: register_pb2.MunicipalityData = DATA) -> CardView:
    """What the store would hand eligibility for this card (built from the dataset directly)."""
    residents = {r.id: r for r in data.residents}
    bound = next((b.resident_id for b in data.card_bindings if b.certificate_serial == serial),
                 None)
    holder = residents.get(bound) if bound else None
    memberships = [
        Membership(reg, link.member_id, True)
        for link in data.register_links if link.certificate_serial == serial
        for reg in data.family_registers if reg.id == link.register_id
    ]
    if holder is not None:
        memberships += [Membership(reg, m.id, False) for reg in data.family_registers
                        for m in reg.members if m.resident_id == holder.id]
    return CardView(
        code=KOFU, serial=serial, tenant=data.tenant, holder=holder,
        household=tuple(r for r in data.residents
                        if holder is not None and r.household_id == holder.household_id),
        memberships=tuple(memberships),
        seals=tuple(s for s in data.seals if holder is not None and s.resident_id == holder.id),
        tax_records=tuple(t for t in data.tax_records
                          if holder is not None and t.resident_id == holder.id),
    )


def rr(**fields: object) -> types_pb2.CertificateOptions:
    return K.CertificateOptions(residence_record=K.ResidenceRecordOptions(**fields))  # type: ignore[arg-type]


def ask(serial: str, kind: int, options: types_pb2.CertificateOptions | None = None,
        copies: int = 1, at: dt.datetime = NOON) -> object:
    return decide(view_of(serial), Ask(kind, options or K.CertificateOptions(), copies), at,
                  PersonRefs(SECRET, serial))


def refs_of(serial: str, kind: int) -> dict[str, str]:
    """display name -> ref, from the catalogue for this card."""
    entries = catalogue(view_of(serial), NOON, PersonRefs(SECRET, serial))
    entry = next(e for e in entries if e.kind == kind)
    return {p.display_name: p.ref for p in entry.selectable}


def other_household_ref() -> str:
    return refs_of("c7", RR)["支援 者"]


REFUSALS = [
    # (reason, serial, kind, options, copies, at)
    ("SUBJECT_NOT_FOUND", "ffff", RR, None, 1, NOON),
    ("SUBJECT_NOT_FOUND", "g1", RR, None, 1, NOON),  # linked to a register, not a resident
    ("KIND_NOT_OFFERED", "a1", K.CERTIFICATE_KIND_UNSPECIFIED, None, 1, NOON),
    ("TOO_MANY_COPIES", "a1", RR, None, 4, NOON),
    ("OUTSIDE_SERVICE_HOURS", "a1", RR, None, 1, NOON.replace(hour=23, minute=30)),
    ("SERVICE_CLOSED_DAY", "a1", RR, None, 1, NOON.replace(month=12, day=30)),
    ("SERVICE_CLOSED_DAY", "a1", RR, None, 1, NOON.replace(day=20)),  # maintenance day
    ("SERVICE_CLOSED_DAY", "a1", FULL, None, 1, NOON.replace(day=16)),  # Saturday
    ("OUTSIDE_SERVICE_HOURS", "a1", FULL, None, 1, NOON.replace(hour=17)),
    ("UNDER_15", "a3", RR, None, 1, NOON),
    ("ADULT_WARD", "b1", SEAL, None, 1, NOON),
    ("SEAL_NOT_REGISTERED", "a2", SEAL, None, 1, NOON),
    ("SEAL_ABOLISHED", "d1", SEAL, None, 1, NOON),
    ("SUPPORT_MEASURE", "c7", RR, None, 1, NOON),
    ("SUPPORT_MEASURE", "e2", RR, rr(scope=K.HOUSEHOLD_SCOPE_WHOLE_HOUSEHOLD), 1, NOON),
    ("MOVED_OUT", "c1", RR, None, 1, NOON),
    ("MOVING_OUT", "c2", RR, None, 1, NOON),
    ("MOVING_OUT", "e1", RR, rr(scope=K.HOUSEHOLD_SCOPE_WHOLE_HOUSEHOLD), 1, NOON),
    ("DECEASED", "c3", RR, None, 1, NOON),
    ("MOVED_IN_TODAY", "c4", RR, None, 1, NOON),
    ("CHARACTERS_BEING_REGISTERED", "c5", RR, None, 1, NOON),
    ("REGISTER_CHANGE_PENDING", "c6", RR, None, 1, NOON),
    ("REGISTER_CHANGE_PENDING", "f1", FULL, None, 1, NOON),
    ("OPTION_NOT_OFFERED", "a1", RR, rr(show_individual_number=True), 1, NOON),
    ("FISCAL_YEAR_NOT_OFFERED", "a1", TAX,
     K.CertificateOptions(income_tax=K.IncomeTaxOptions(fiscal_year=2024)), 1, NOON),
    ("SUBJECT_NOT_FOUND", "a2", TAX,
     K.CertificateOptions(income_tax=K.IncomeTaxOptions(fiscal_year=2025)), 1, NOON),
    ("SUBJECT_NOT_FOUND", "c1", FULL, None, 1, NOON),  # in no register held here
]


@pytest.mark.parametrize(("reason", "serial", "kind", "options", "copies", "at"), REFUSALS,
                         ids=[f"{r[0]}-{r[1]}" for r in REFUSALS])
def test_refusal(reason: str, serial: str, kind: int, options: types_pb2.CertificateOptions | None,
                 copies: int, at: dt.datetime) -> None:
    with pytest.raises(KonbiniError) as info:
        ask(serial, kind, options, copies, at)
    assert info.value.reason == reason


def test_zero_copies_is_a_field_violation() -> None:
    with pytest.raises(KonbiniError) as info:
        ask("a1", RR, copies=0)
    assert info.value.reason == "FIELD_INVALID"
    assert [v.field for v in info.value.violations] == ["copies"]


def test_options_of_another_kind_are_a_field_violation() -> None:
    with pytest.raises(KonbiniError) as info:
        ask("a1", SEAL, rr())
    assert [v.field for v in info.value.violations] == ["options"]


def test_member_of_another_household_is_not_entitled() -> None:
    with pytest.raises(KonbiniError) as info:
        ask("a1", RR, rr(scope=K.HOUSEHOLD_SCOPE_SELECTED_MEMBERS,
                         member_refs=[other_household_ref()]))
    assert info.value.reason == "NOT_ENTITLED"


def test_a_ref_listed_for_one_card_does_not_work_for_another() -> None:
    hanako = refs_of("a1", RR)["葛西 花子"]
    with pytest.raises(KonbiniError) as info:
        ask("a2", RR, rr(scope=K.HOUSEHOLD_SCOPE_SELECTED_MEMBERS, member_refs=[hanako]))
    assert info.value.reason == "NOT_ENTITLED"


def test_register_member_of_another_register_is_not_entitled() -> None:
    foreign = refs_of("f1", FULL)["戸籍 変更"]
    with pytest.raises(KonbiniError) as info:
        ask("a1", INDIVIDUAL, K.CertificateOptions(
            family_register=K.FamilyRegisterOptions(member_refs=[foreign])))
    assert info.value.reason == "NOT_ENTITLED"


def test_whole_household_prints_current_members_head_first() -> None:
    plan = ask("a1", RR, rr(scope=K.HOUSEHOLD_SCOPE_WHOLE_HOUSEHOLD, show_household_head=True))
    assert plan.subject_ids == ("r-taro", "r-hanako", "r-ichiro")  # type: ignore[attr-defined]
    assert plan.fee_yen == 200  # type: ignore[attr-defined]


def test_selected_members_print_exactly_those() -> None:
    refs = refs_of("a1", RR)
    plan = ask("a1", RR, rr(scope=K.HOUSEHOLD_SCOPE_SELECTED_MEMBERS,
                            member_refs=[refs["葛西 花子"]]), copies=3)
    assert plan.subject_ids == ("r-hanako",)  # type: ignore[attr-defined]
    assert (plan.copies, plan.fee_yen) == (3, 600)  # type: ignore[attr-defined]


def test_seal_and_tax_are_about_the_holder_only() -> None:
    seal = ask("a1", SEAL)
    assert seal.subject_ids == ("r-taro",) and seal.seal.number == "S-0001"  # type: ignore[attr-defined]
    tax = ask("a1", TAX, K.CertificateOptions(income_tax=K.IncomeTaxOptions(fiscal_year=2025)))
    assert tax.tax.fiscal_year == 2025  # type: ignore[attr-defined]


def test_family_register_through_residence_and_through_a_use_registration() -> None:
    full = ask("a1", FULL)
    assert full.subject_ids == ("m-taro", "m-hanako", "m-ichiro", "m-jiro")  # type: ignore[attr-defined]
    linked = ask("g1", INDIVIDUAL)
    assert linked.subject_ids == ("m-jiro",)  # type: ignore[attr-defined]
    refs = refs_of("g1", INDIVIDUAL)
    chosen = ask("g1", INDIVIDUAL, K.CertificateOptions(family_register=K.FamilyRegisterOptions(
        member_refs=[refs["葛西 花子"], refs[DATA.residents[0].name]])))
    assert chosen.subject_ids == ("m-taro", "m-hanako")  # type: ignore[attr-defined]


def test_catalogue_lists_offers_with_availability_and_people() -> None:
    entries = catalogue(view_of("a1"), NOON, PersonRefs(SECRET, "a1"))
    assert [e.kind for e in entries] == [o.kind for o in DATA.tenant.offers]
    rr_entry = entries[0]
    assert rr_entry.available_now and rr_entry.max_copies == 3
    assert rr_entry.selectable[0].relationship == "本人"
    assert all("r-" not in p.ref for p in rr_entry.selectable)  # refs leak no resident ids
    closed = catalogue(view_of("a1"), NOON.replace(hour=18), PersonRefs(SECRET, "a1"))
    full = next(e for e in closed if e.kind == FULL)
    assert not full.available_now
    assert full.unavailable_reason == reason_enum_value("OUTSIDE_SERVICE_HOURS")
    minor = catalogue(view_of("a3"), NOON, PersonRefs(SECRET, "a3"))
    assert minor[0].unavailable_reason == reason_enum_value("UNDER_15")


def test_linked_card_sees_only_family_register_kinds() -> None:
    entries = catalogue(view_of("g1"), NOON, PersonRefs(SECRET, "g1"))
    assert {e.kind for e in entries} == {
        FULL, INDIVIDUAL, K.CERTIFICATE_KIND_FAMILY_REGISTER_ADDRESS_HISTORY}
