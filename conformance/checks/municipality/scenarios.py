"""Fixed scenarios of the named municipality checks (built from conformance.fixtures)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from conformance import fixtures as fx
from conformance.checks.municipality.context import MunicipalityContext
from konbini.register.v1 import register_pb2

TENANT_NAMES = {"192015": "甲府市", "131016": "千代田区", "131041": "新宿区"}
ADULT_BIRTH_YEARS = 40


def tenant_name(code: str) -> str:
    return TENANT_NAMES.get(code, f"テスト市{code}")


@dataclass(frozen=True)
class Person:
    """A resident with a bound card."""

    resident: register_pb2.Resident
    serial: str

    @property
    def id(self) -> str:
        return self.resident.id

    @property
    def name(self) -> str:
        return self.resident.name


def new_tenant(ctx: MunicipalityContext, code: str | None = None) -> register_pb2.MunicipalityData:
    code = code or ctx.code
    years = fx.fiscal_years_for(ctx.today)
    return register_pb2.MunicipalityData(
        tenant=fx.tenant(code, tenant_name(code), fiscal_years=years)
    )


def add_person(
    ctx: MunicipalityContext,
    data: register_pb2.MunicipalityData,
    number: int,
    *,
    name: str | None = None,
    household: str | None = None,
    birth: dt.date | None = None,
    seal: str = "registered",
    tax: bool = True,
    **fields: object,
) -> Person:
    """Add resident ``number`` of the tenant with a card, a seal and tax records by default."""
    code = data.tenant.code.value
    rid = f"{code}-p{number}"
    person = fx.resident(
        rid,
        name
        or f"{fx.SURNAMES[number % len(fx.SURNAMES)]} "
        f"{fx.GIVEN_NAMES[number % len(fx.GIVEN_NAMES)]}",
        birth or fx.years_before(ctx.today, ADULT_BIRTH_YEARS, number),
        household or f"{code}-h{number}",
        **fields,
    )
    data.residents.append(person)
    person = data.residents[-1]  # the stored element, so later edits reach the dataset
    serial = fx.card_serial(int(code) * 1000 + number)
    data.card_bindings.add(certificate_serial=serial, resident_id=rid)
    if seal != "none":
        data.seals.append(fx.seal(rid, f"S{number:05d}", abolished=seal == "abolished"))
    if tax:
        for year in fx.fiscal_years_for(ctx.today):
            data.tax_records.append(fx.tax(rid, year))
    return Person(person, serial)


def twins(
    ctx: MunicipalityContext, seal: str = "registered", **flags: object
) -> tuple[register_pb2.Dataset, Person, Person]:
    """A person with ``flags`` and a control twin without them (same everything else)."""
    data = new_tenant(ctx)
    flagged = add_person(ctx, data, 1, seal=seal, **flags)
    control = add_person(ctx, data, 2)
    return fx.dataset_of(data), flagged, control


def population(
    ctx: MunicipalityContext, size: int, code: str | None = None, start: int = 1
) -> tuple[register_pb2.MunicipalityData, list[Person]]:
    """``size`` eligible adults, each in their own household, of one tenant."""
    data = new_tenant(ctx, code)
    people = [add_person(ctx, data, n) for n in range(start, start + size)]
    return data, people
