"""Datasets the suite loads into the implementation under test (konbini.register.v1.Dataset).

Plain builders (:func:`tenant`, :func:`resident`, :func:`card_serial` ...) make the fixed
scenarios of the named checks; Hypothesis strategies (:func:`municipality_data`) generate the
populations of the property checks: names with ideographic variation sequences and rare
characters, ages around 15 relative to the suite's clock, households of several members,
seals registered and abolished, tax years, family registers, protected residents, moved-out,
moving-out, deceased and moved-in-today residents, adult wards, characters and register
changes pending, and cards bound (for the municipality role a card is just a serial).
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Sequence
from dataclasses import dataclass

from hypothesis import strategies as st
from PIL import Image, ImageDraw

from konbini.common.v1 import types_pb2
from konbini.register.v1 import register_pb2

K = types_pb2
R = register_pb2

# Variation sequences IPAmj Mincho draws with a glyph other than the base character's
# (DOMAIN.md "Glyphs"): 葛+E0102 is mj022335 (plain 葛 is mj022336), 辻+E0102 is mj025760
# (plain 辻 and 辻+E0103 are mj025761).
KATSU_IVS = "葛\U000e0102"
TSUJI_IVS = "辻\U000e0102"
TSUJI_E0103 = "辻\U000e0103"
SURNAMES = (
    f"{KATSU_IVS}城",
    f"{TSUJI_IVS}本",
    f"{TSUJI_E0103}村",
    "葛西",
    "髙橋",
    "山﨑",
    "𠮷田",
    "齋藤",
    "渡邉",
    "佐藤",
    "鈴木",
    "田中",
    "甲斐",
    "望月",
    "𣘺本",
)
GIVEN_NAMES = ("太郎", "花子", "一郎", "美咲", "翔太", "陽菜", "健", "さくら", "蓮", "結衣", "大輔")
# A code point no font draws (unassigned): ELIG-CHARACTERS.
UNDRAWABLE = "\U0003fffd"
ADDRESSES = (
    "山梨県甲府市丸の内一丁目18番1号",
    "山梨県甲府市相生二丁目3番5号",
    "東京都千代田区九段南一丁目2番1号",
    "東京都新宿区歌舞伎町一丁目4番1号",
)

ALL_KINDS = tuple(
    range(
        K.CERTIFICATE_KIND_RESIDENCE_RECORD, K.CERTIFICATE_KIND_FAMILY_REGISTER_ADDRESS_HISTORY + 1
    )
)
# Seal images large enough to print at 300 dpi (about 25 mm): a municipality may draw them
# at their size rather than resample them.
SEAL_PX = 300
FEES = {1: 300, 2: 300, 3: 300, 4: 300, 5: 450, 6: 450, 7: 300}


def suite_clock(today_utc: dt.datetime) -> dt.datetime:
    """The fixed in-hours time the suite sets with SetClock: 10:00 JST two days after
    ``today_utc`` (after the PKI's certificates start), moved past the year-end closure."""
    jst = dt.timezone(dt.timedelta(hours=9))
    day = (today_utc.astimezone(jst) + dt.timedelta(days=2)).date()
    if (day.month, day.day) >= (12, 29) or (day.month, day.day) <= (1, 3):
        day = dt.date(day.year + (day.month == 12), 1, 5)
    return dt.datetime(day.year, day.month, day.day, 10, 0, tzinfo=jst).astimezone(dt.UTC)


def jst_day(at: dt.datetime) -> dt.date:
    return at.astimezone(dt.timezone(dt.timedelta(hours=9))).date()


def date_pb(day: dt.date) -> types_pb2.Date:
    return types_pb2.Date(year=day.year, month=day.month, day=day.day)


def years_before(day: dt.date, years: int, days: int = 0) -> dt.date:
    """``years`` full years before ``day`` (29 Feb falls back to 28 Feb), then ``days`` more."""
    try:
        base = day.replace(year=day.year - years)
    except ValueError:
        base = day.replace(year=day.year - years, day=28)
    return base + dt.timedelta(days=days)


def png(size: int = SEAL_PX, seed: int = 0) -> bytes:
    """A small red seal impression PNG (distinct per seed)."""
    image = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(image)
    draw.ellipse((2, 2, size - 3, size - 3), outline=(200, 0, 0), width=max(4, size // 20))
    draw.line(
        (8 + seed % 20, 10, size - 10, size - 8 - seed % 17),
        fill=(200, 0, 0),
        width=max(3, size // 25),
    )
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def tenant(
    code: str, name: str, *, fiscal_years: Sequence[int] = (), forbid_individual_number: bool = True
) -> register_pb2.Tenant:
    """A tenant offering every kind with the standard hours."""
    permitted = K.ResidenceRecordOptions(
        show_registered_domicile=True,
        show_household_head=True,
        show_individual_number=not forbid_individual_number,
        show_nationality=True,
        show_residence_card_number=True,
        show_residence_status=True,
    )
    offers = []
    for kind in ALL_KINDS:
        offer = R.KindOffer(kind=kind, fee=K.Money(yen=FEES[kind]), max_copies=3)
        if kind in (1, 2):
            offer.permitted_options.CopyFrom(permitted)
        if kind == K.CERTIFICATE_KIND_INCOME_TAX:
            offer.fiscal_years.extend(fiscal_years)
        offers.append(offer)
    return R.Tenant(
        code=K.MunicipalityCode(value=code),
        name=name,
        issuer_line=f"{name}長 山田 太郎",
        official_seal_png=png(SEAL_PX, 7),
        offers=offers,
    )


def resident(
    rid: str, name: str, birth: dt.date, household: str, **fields: object
) -> register_pb2.Resident:
    """An active adult-style resident; ``fields`` override any Resident field."""
    person = R.Resident(
        id=rid,
        name=name,
        name_kana="テスト",
        birth_date=date_pb(birth),
        sex=R.SEX_FEMALE,
        address=ADDRESSES[0],
        household_id=household,
        relationship="世帯主",
        registered_domicile="山梨県甲府市丸の内一丁目18番",
        head_of_register=name,
        moved_in_on=date_pb(dt.date(2001, 4, 1)),
        status=R.RESIDENT_STATUS_ACTIVE,
    )
    for key, value in fields.items():
        if isinstance(value, dt.date):
            getattr(person, key).CopyFrom(date_pb(value))
        else:
            setattr(person, key, value)
    return person


def card_serial(number: int) -> str:
    """A card serial as the centre would send it: lowercase hex, no leading zeros."""
    return format(number, "x")


def seal(
    resident_id: str, number: str, *, abolished: bool = False
) -> register_pb2.SealRegistration:
    return R.SealRegistration(
        resident_id=resident_id,
        number=number,
        seal_png=png(SEAL_PX, len(number)),
        state=R.SEAL_STATE_ABOLISHED if abolished else R.SEAL_STATE_REGISTERED,
        registered_on=date_pb(dt.date(2015, 5, 1)),
    )


def tax(resident_id: str, year: int, income: int = 3_200_000) -> register_pb2.TaxRecord:
    return R.TaxRecord(
        resident_id=resident_id,
        fiscal_year=year,
        total_income=K.Money(yen=income),
        municipal_tax=K.Money(yen=income // 20),
        prefectural_tax=K.Money(yen=income // 30),
        dependants=1,
    )


def family_register(
    rid: str, members: Sequence[register_pb2.Resident], *, change_pending: bool = False
) -> register_pb2.FamilyRegister:
    head = members[0]
    reg = R.FamilyRegister(
        id=rid,
        registered_domicile=head.registered_domicile or "山梨県甲府市",
        head_of_register=head.name,
        change_pending=change_pending,
    )
    for i, m in enumerate(members):
        reg.members.add(
            id=f"{rid}-m{i}",
            resident_id=m.id,
            name=m.name,
            birth_date=m.birth_date,
            sex=m.sex,
            relationship="筆頭者" if i == 0 else "子",
            events=[R.RegisterEvent(date=m.birth_date, kind="出生", text="出生")],
            support_measure=m.support_measure,
        )
        reg.address_history.add(member_id=f"{rid}-m{i}", address=m.address, from_date=m.moved_in_on)
    return reg


# -- a scenario: one tenant's data plus the requests the suite will make ------------------------
@dataclass(frozen=True)
class Holder:
    """A card holder of a generated population."""

    serial: str
    resident_id: str


def fiscal_years_for(today: dt.date) -> tuple[int, int]:
    """The two fiscal years a tenant offers: the current one (from April) and the one before."""
    current = today.year if today.month >= 4 else today.year - 1
    return current - 1, current


# -- Hypothesis strategies ---------------------------------------------------------------------
names = st.builds(lambda s, g: f"{s} {g}", st.sampled_from(SURNAMES), st.sampled_from(GIVEN_NAMES))


@st.composite
def birth_dates(draw: st.DrawFn, today: dt.date) -> dt.date:
    """Mostly ages around 15 (the kiosk's limit), the rest adults."""
    if draw(st.booleans()):
        return years_before(today, 15, draw(st.integers(-3, 3)))
    return years_before(today, draw(st.integers(16, 90)), draw(st.integers(0, 364)))


STATUSES = (R.RESIDENT_STATUS_ACTIVE,) * 6 + (
    R.RESIDENT_STATUS_MOVING_OUT,
    R.RESIDENT_STATUS_MOVED_OUT,
    R.RESIDENT_STATUS_DECEASED,
)


def _rare(draw: st.DrawFn, label: str) -> bool:
    """A flag drawn rarely, so that most people are eligible and shrinking removes flags."""
    return draw(st.integers(0, 7).map(lambda n: n == 0), label=label)


@st.composite
def municipality_data(
    draw: st.DrawFn, code: str, name: str, today: dt.date, serial_base: int
) -> register_pb2.MunicipalityData:
    """One tenant with 1-3 households of 1-3 members; every resident has a card."""
    years = fiscal_years_for(today)
    data = R.MunicipalityData(tenant=tenant(code, name, fiscal_years=years))
    person_no = 0
    for h in range(draw(st.integers(1, 3), label="households")):
        members = []
        for m in range(draw(st.integers(1, 3), label="members")):
            person_no += 1
            rid = f"{code}-r{person_no}"
            moved_in = today if _rare(draw, "moved_in_today") else dt.date(2003, 4, 1)
            person = resident(
                rid,
                draw(names),
                draw(birth_dates(today)),
                f"{code}-h{h}",
                relationship="世帯主" if m == 0 else "子",
                address=draw(st.sampled_from(ADDRESSES)),
                moved_in_on=moved_in,
                status=draw(st.sampled_from(STATUSES), label="status")
                if _rare(draw, "status?")
                else R.RESIDENT_STATUS_ACTIVE,
                support_measure=_rare(draw, "support_measure"),
                adult_ward=_rare(draw, "adult_ward"),
                characters_pending=_rare(draw, "characters_pending"),
                register_change_pending=_rare(draw, "register_change_pending"),
                former_surname="旧姓" if _rare(draw, "former_surname") else "",
            )
            members.append(person)
            data.residents.append(person)
            data.card_bindings.add(
                certificate_serial=card_serial(serial_base + person_no), resident_id=rid
            )
            seal_state = draw(st.sampled_from(("none", "registered", "registered", "abolished")))
            if seal_state != "none":
                data.seals.append(
                    seal(rid, f"S{person_no:05d}", abolished=seal_state == "abolished")
                )
            if draw(st.booleans(), label="tax"):
                for year in years:
                    data.tax_records.append(tax(rid, year))
        if draw(st.booleans(), label="family_register"):
            data.family_registers.append(
                family_register(
                    f"{code}-f{h}", members, change_pending=_rare(draw, "register_pending")
                )
            )
    return data


def dataset_of(*datas: register_pb2.MunicipalityData) -> register_pb2.Dataset:
    return R.Dataset(municipalities=list(datas))


def request_options(
    kind: int, *, whole_household: bool = False, fiscal_year: int = 0
) -> types_pb2.CertificateOptions:
    """The options message for a kind."""
    if kind in (1, 2):
        scope = K.HOUSEHOLD_SCOPE_WHOLE_HOUSEHOLD if whole_household else K.HOUSEHOLD_SCOPE_SELF
        return K.CertificateOptions(residence_record=K.ResidenceRecordOptions(scope=scope))
    if kind == K.CERTIFICATE_KIND_SEAL_REGISTRATION:
        return K.CertificateOptions(seal_registration=K.SealRegistrationOptions())
    if kind == K.CERTIFICATE_KIND_INCOME_TAX:
        return K.CertificateOptions(income_tax=K.IncomeTaxOptions(fiscal_year=fiscal_year))
    return K.CertificateOptions(family_register=K.FamilyRegisterOptions())
