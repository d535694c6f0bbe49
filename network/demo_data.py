"""The demo's register data: three municipalities and the people the demo issues for.

Built as konbini.register.v1 messages (the import format), so the same data can be written as
JSON and loaded with `konbini municipality import`. Names carry ideographic variation sequences
that IPAmj Mincho maps to their own MJ glyphs (葛+U+E0102, 辻+U+E0102), a household, a minor, a
protected resident, an abolished seal, tax years, and a family register held in another
municipality that the demo reaches through a use registration.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image, ImageDraw

from konbini.common.v1 import types_pb2
from konbini.register.v1 import register_pb2 as reg

KOFU, CHIYODA, SHINJUKU = "192015", "131016", "131041"
KATSURAGI = "葛\U000e0102城"  # 葛 with the MJ variant selector: a glyph other than plain 葛
TSUJI = "辻\U000e0102"


def _date(y: int, m: int, d: int) -> types_pb2.Date:
    return types_pb2.Date(year=y, month=m, day=d)


def _money(yen: int) -> types_pb2.Money:
    return types_pb2.Money(yen=yen)


def seal_png(size: int = 160, colour: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    """A round seal impression drawn from geometry (the demo has no real seal scans)."""
    img = Image.new("RGBA", (size, size), (255, 255, 255, 0))
    draw = ImageDraw.Draw(img)
    draw.ellipse((4, 4, size - 4, size - 4), outline=(*colour, 255), width=8)
    draw.ellipse((28, 28, size - 28, size - 28), outline=(*colour, 255), width=4)
    draw.line((size // 2, 30, size // 2, size - 30), fill=(*colour, 255), width=6)
    draw.line((40, size // 2, size - 40, size // 2), fill=(*colour, 255), width=6)
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()


def _offers(*, individual_number_allowed: bool, register: bool,
            register_weekdays_only: bool = False) -> list[reg.KindOffer]:
    standard = types_pb2.ServiceHours()  # empty: 06:30-23:00 every day, year-end closure
    weekdays = types_pb2.ServiceHours(
        days=[types_pb2.WEEKDAY_MONDAY + i for i in range(5)],
        opens=types_pb2.TimeOfDay(hours=9),
        closes=types_pb2.TimeOfDay(hours=17),
        year_end_closure=True,
        closed_on_holidays=True,
    )
    permitted = types_pb2.ResidenceRecordOptions(
        show_registered_domicile=True, show_household_head=True,
        show_individual_number=individual_number_allowed, show_nationality=True,
        show_residence_card_number=True, show_residence_status=True,
    )
    offers = [
        reg.KindOffer(kind=types_pb2.CERTIFICATE_KIND_RESIDENCE_RECORD, fee=_money(200),
                      hours=standard, max_copies=5, permitted_options=permitted),
        reg.KindOffer(kind=types_pb2.CERTIFICATE_KIND_RESIDENCE_RECORD_ITEMS, fee=_money(200),
                      hours=standard, max_copies=5, permitted_options=permitted),
        reg.KindOffer(kind=types_pb2.CERTIFICATE_KIND_SEAL_REGISTRATION, fee=_money(200),
                      hours=standard, max_copies=5),
        reg.KindOffer(kind=types_pb2.CERTIFICATE_KIND_INCOME_TAX, fee=_money(200),
                      hours=standard, max_copies=3, fiscal_years=[2025, 2026]),
    ]
    if register:
        offers += [
            reg.KindOffer(kind=kind, fee=_money(350), max_copies=3,
                          hours=weekdays if register_weekdays_only else standard)
            for kind in (
                types_pb2.CERTIFICATE_KIND_FAMILY_REGISTER_FULL,
                types_pb2.CERTIFICATE_KIND_FAMILY_REGISTER_INDIVIDUAL,
                types_pb2.CERTIFICATE_KIND_FAMILY_REGISTER_ADDRESS_HISTORY,
            )
        ]
    return offers


@dataclass(frozen=True)
class DemoPerson:
    """Someone the demo makes a card for."""

    key: str  # file-name-safe handle, no personal data
    municipality: str
    resident_id: str
    pin: str = "1234"
    revoked: bool = False


PEOPLE = (
    DemoPerson("kofu-head", KOFU, "K-0001"),
    DemoPerson("kofu-spouse", KOFU, "K-0002"),
    DemoPerson("kofu-child", KOFU, "K-0003"),
    DemoPerson("kofu-tsuji", KOFU, "K-0010"),
    DemoPerson("kofu-protected", KOFU, "K-0020"),
    DemoPerson("kofu-abolished", KOFU, "K-0030"),
    DemoPerson("kofu-revoked", KOFU, "K-0040", revoked=True),
    DemoPerson("shinjuku-resident", SHINJUKU, "S-0001"),
)


def dataset() -> reg.Dataset:
    """The demo's three municipalities."""
    seal = seal_png()
    kofu = reg.MunicipalityData(
        tenant=reg.Tenant(
            code=types_pb2.MunicipalityCode(value=KOFU), name="甲府市",
            issuer_line="甲府市長　山梨　一郎", official_seal_png=seal_png(220),
            # Kofu offers family registers on weekdays 09:00-17:00 only (DOMAIN.md "Hours").
            offers=_offers(individual_number_allowed=False, register=True,
                           register_weekdays_only=True),
        ),
        residents=[
            reg.Resident(
                id="K-0001", name=f"{KATSURAGI}　太郎", name_kana="カツラギ　タロウ",
                birth_date=_date(1978, 4, 2), sex=reg.SEX_MALE,
                address="山梨県甲府市丸の内一丁目1番1号", household_id="H-1",
                relationship="世帯主", registered_domicile="東京都千代田区千代田1番",
                head_of_register=f"{KATSURAGI}　太郎", individual_number="123456789018",
                moved_in_on=_date(2010, 4, 1), status=reg.RESIDENT_STATUS_ACTIVE,
            ),
            reg.Resident(
                id="K-0002", name=f"{KATSURAGI}　花子", name_kana="カツラギ　ハナコ",
                birth_date=_date(1981, 9, 15), sex=reg.SEX_FEMALE,
                address="山梨県甲府市丸の内一丁目1番1号", household_id="H-1",
                relationship="妻", registered_domicile="東京都千代田区千代田1番",
                head_of_register=f"{KATSURAGI}　太郎", former_surname="鈴木",
                moved_in_on=_date(2010, 4, 1),
            ),
            reg.Resident(
                id="K-0003", name=f"{KATSURAGI}　次郎", name_kana="カツラギ　ジロウ",
                birth_date=_date(2014, 6, 1), sex=reg.SEX_MALE,
                address="山梨県甲府市丸の内一丁目1番1号", household_id="H-1",
                relationship="子", moved_in_on=_date(2014, 6, 1),
            ),
            reg.Resident(
                id="K-0010", name=f"{TSUJI}　健", name_kana="ツジ　ケン",
                birth_date=_date(1990, 1, 20), sex=reg.SEX_MALE,
                address="山梨県甲府市相生二丁目3番4号", household_id="H-2",
                relationship="世帯主", moved_in_on=_date(2015, 3, 1),
            ),
            reg.Resident(
                id="K-0020", name="保護　さくら", name_kana="ホゴ　サクラ",
                birth_date=_date(1988, 12, 3), sex=reg.SEX_FEMALE,
                address="山梨県甲府市（非表示）", household_id="H-3", relationship="世帯主",
                support_measure=True, moved_in_on=_date(2020, 8, 1),
            ),
            reg.Resident(
                id="K-0030", name="印影　正", name_kana="インエイ　タダシ",
                birth_date=_date(1970, 7, 7), sex=reg.SEX_MALE,
                address="山梨県甲府市中央四丁目5番6号", household_id="H-4",
                relationship="世帯主", moved_in_on=_date(2001, 1, 10),
            ),
            reg.Resident(
                id="K-0040", name="紛失　守", name_kana="フンシツ　マモル",
                birth_date=_date(1985, 2, 11), sex=reg.SEX_MALE,
                address="山梨県甲府市北口一丁目2番3号", household_id="H-5",
                relationship="世帯主", moved_in_on=_date(2012, 5, 5),
            ),
        ],
        seals=[
            reg.SealRegistration(resident_id="K-0010", number="KF-10001", seal_png=seal,
                                 state=reg.SEAL_STATE_REGISTERED,
                                 registered_on=_date(2015, 3, 2)),
            reg.SealRegistration(resident_id="K-0030", number="KF-30001", seal_png=seal,
                                 state=reg.SEAL_STATE_ABOLISHED,
                                 registered_on=_date(2001, 1, 11)),
        ],
        tax_records=[
            reg.TaxRecord(resident_id="K-0010", fiscal_year=year,
                          total_income=_money(4_200_000 + 100_000 * (year - 2025)),
                          municipal_tax=_money(180_000), prefectural_tax=_money(120_000),
                          dependants=0)
            for year in (2025, 2026)
        ],
        card_bindings=[],  # filled by the demo once the cards exist
    )
    chiyoda = reg.MunicipalityData(
        tenant=reg.Tenant(
            code=types_pb2.MunicipalityCode(value=CHIYODA), name="千代田区",
            issuer_line="千代田区長　東京　太郎", official_seal_png=seal_png(220),
            offers=_offers(individual_number_allowed=True, register=True),
        ),
        family_registers=[
            reg.FamilyRegister(
                id="F-CH-1", registered_domicile="東京都千代田区千代田1番",
                head_of_register=f"{KATSURAGI}　太郎",
                members=[
                    reg.RegisterMember(
                        id="FM-1", name=f"{KATSURAGI}　太郎", birth_date=_date(1978, 4, 2),
                        sex=reg.SEX_MALE, relationship="夫", father=f"{KATSURAGI}　一",
                        mother=f"{KATSURAGI}　正子",
                        events=[reg.RegisterEvent(date=_date(1978, 4, 2), kind="出生",
                                                  text="東京都千代田区で出生"),
                                reg.RegisterEvent(date=_date(2008, 11, 3), kind="婚姻",
                                                  text="鈴木花子と婚姻")]),
                    reg.RegisterMember(
                        id="FM-2", name=f"{KATSURAGI}　花子", birth_date=_date(1981, 9, 15),
                        sex=reg.SEX_FEMALE, relationship="妻", father="鈴木　茂",
                        mother="鈴木　和子",
                        events=[reg.RegisterEvent(date=_date(2008, 11, 3), kind="婚姻",
                                                  text=f"{KATSURAGI}太郎と婚姻")]),
                    reg.RegisterMember(
                        id="FM-3", name=f"{KATSURAGI}　次郎", birth_date=_date(2014, 6, 1),
                        sex=reg.SEX_MALE, relationship="長男",
                        father=f"{KATSURAGI}　太郎", mother=f"{KATSURAGI}　花子",
                        events=[reg.RegisterEvent(date=_date(2014, 6, 1), kind="出生",
                                                  text="山梨県甲府市で出生")]),
                ],
                address_history=[
                    reg.AddressEntry(member_id="FM-1", address="東京都千代田区千代田1番",
                                     from_date=_date(1978, 4, 2), to_date=_date(2010, 3, 31)),
                    reg.AddressEntry(member_id="FM-1",
                                     address="山梨県甲府市丸の内一丁目1番1号",
                                     from_date=_date(2010, 4, 1)),
                ],
            )
        ],
    )
    shinjuku = reg.MunicipalityData(
        tenant=reg.Tenant(
            code=types_pb2.MunicipalityCode(value=SHINJUKU), name="新宿区",
            issuer_line="新宿区長　新宿　花子", official_seal_png=seal_png(220),
            offers=_offers(individual_number_allowed=False, register=False),
        ),
        residents=[
            reg.Resident(
                id="S-0001", name="グエン　ヴァン　アン", name_kana="グエン　ヴァン　アン",
                birth_date=_date(1995, 3, 30), sex=reg.SEX_MALE,
                address="東京都新宿区西新宿二丁目8番1号", household_id="SH-1",
                relationship="世帯主", moved_in_on=_date(2019, 4, 1),
                foreign=reg.ForeignResident(
                    nationality="ベトナム", residence_card_number="AB12345678CD",
                    residence_status="技術・人文知識・国際業務",
                    period_of_stay_end=_date(2028, 3, 31)),
            ),
        ],
    )
    return reg.Dataset(municipalities=[kofu, chiyoda, shinjuku])
