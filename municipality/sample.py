"""A fictional demo dataset in the import format: two tenants and a card for every kiosk rule.

``konbini municipality import`` takes its JSON (:func:`demo_dataset_json`); the tests use it to
reach every refusal. Card serials are short hex strings named in :data:`CARDS`.
"""

from __future__ import annotations

import datetime as dt
import json

from google.protobuf import json_format

from konbini.common.v1 import types_pb2
from konbini.register.v1 import register_pb2

K = types_pb2
R = register_pb2
KOFU = "192015"
CHIYODA = "131016"
DOMICILE = "山梨県甲府市相生二丁目1番"
IVS_NAME = "葛\U000e0102西 太郎"  # 葛 + U+E0102 draws mj022335, not the default glyph
# A character outside every Japanese font (CHARACTERS_NOT_SUPPORTED).
UNDRAWABLE = "\U0001f600"

# serial -> what the card is for (documentation for people using the demo).
CARDS = {
    "a1": "holder 太郎: 世帯主, seal registered, tax FY2025, in register fr-1",
    "a2": "花子: 太郎's wife, no seal registered",
    "a3": "一郎: 太郎's son, under 15",
    "b1": "an adult ward with a seal",
    "c1": "moved out", "c2": "moving out", "c3": "deceased", "c4": "moved in today",
    "c5": "characters being registered", "c6": "register change pending",
    "c7": "support measure", "d1": "seal registration abolished",
    "e1": "a household member is moving out", "e2": "a household member has a support measure",
    "f1": "in register fr-2 whose change is pending",
    "g1": "次郎: linked to register fr-1 by a use registration; lives elsewhere",
    "h1": "a name the font cannot draw",
    "z1": "a resident of the second tenant (Chiyoda)",
}


def date(day: dt.date) -> types_pb2.Date:
    return types_pb2.Date(year=day.year, month=day.month, day=day.day)


def _d(year: int, month: int, day: int) -> types_pb2.Date:
    return types_pb2.Date(year=year, month=month, day=day)


def kofu_tenant(*, maintenance_day: dt.date | None = None) -> register_pb2.Tenant:
    weekdays_9_17 = K.ServiceHours(
        days=range(K.WEEKDAY_MONDAY, K.WEEKDAY_FRIDAY + 1), opens=K.TimeOfDay(hours=9),
        closes=K.TimeOfDay(hours=17), year_end_closure=True, closed_on_holidays=True)
    permitted = K.ResidenceRecordOptions(
        show_registered_domicile=True, show_household_head=True, show_individual_number=False,
        show_nationality=True, show_residence_card_number=True, show_residence_status=True)
    offers = [
        R.KindOffer(kind=K.CERTIFICATE_KIND_RESIDENCE_RECORD, fee=K.Money(yen=200),
                    max_copies=3, permitted_options=permitted),
        R.KindOffer(kind=K.CERTIFICATE_KIND_RESIDENCE_RECORD_ITEMS, fee=K.Money(yen=200),
                    max_copies=3, permitted_options=permitted),
        R.KindOffer(kind=K.CERTIFICATE_KIND_SEAL_REGISTRATION, fee=K.Money(yen=200)),
        R.KindOffer(kind=K.CERTIFICATE_KIND_INCOME_TAX, fee=K.Money(yen=200),
                    fiscal_years=[2025]),
    ] + [
        R.KindOffer(kind=kind, fee=K.Money(yen=350), hours=weekdays_9_17)
        for kind in (K.CERTIFICATE_KIND_FAMILY_REGISTER_FULL,
                     K.CERTIFICATE_KIND_FAMILY_REGISTER_INDIVIDUAL,
                     K.CERTIFICATE_KIND_FAMILY_REGISTER_ADDRESS_HISTORY)
    ]
    return R.Tenant(
        code=K.MunicipalityCode(value=KOFU), name="甲府市", issuer_line="甲府市長 山梨 一",
        offers=offers,
        maintenance_days=[date(maintenance_day)] if maintenance_day else [],
    )


def _resident(rid: str, name: str, household: str, born: types_pb2.Date, **fields: object
              ) -> register_pb2.Resident:
    base: dict[str, object] = {
        "name_kana": "コウフ タロウ", "sex": R.SEX_MALE,
        "address": "山梨県甲府市丸の内一丁目18番1号",
        "relationship": "世帯主", "registered_domicile": DOMICILE, "head_of_register": "葛西 太郎",
        "moved_in_on": _d(2010, 4, 1), "status": R.RESIDENT_STATUS_ACTIVE,
    }
    base.update(fields)
    return R.Resident(id=rid, name=name, household_id=household, birth_date=born,
                      **base)  # type: ignore[arg-type]


def kofu_data(today: dt.date, *, maintenance_day: dt.date | None = None
              ) -> register_pb2.MunicipalityData:
    """Kofu's records; ``today`` is the day 'moved in today' means."""
    one = _d(1970, 1, 1)
    residents = [
        _resident("r-taro", IVS_NAME, "h-1", _d(1980, 5, 1), former_surname="山田",
                  individual_number="123456789018"),
        _resident("r-hanako", "葛西 花子", "h-1", _d(1982, 7, 7), relationship="妻",
                  sex=R.SEX_FEMALE),
        _resident("r-ichiro", "葛西 一郎", "h-1", _d(today.year - 10, 1, 1), relationship="子"),
        _resident("r-ward", "甲斐 守", "h-2", one, adult_ward=True),
        _resident("r-out", "転出 済", "h-3", one, status=R.RESIDENT_STATUS_MOVED_OUT),
        _resident("r-moving", "転出 予定", "h-4", one, status=R.RESIDENT_STATUS_MOVING_OUT),
        _resident("r-dead", "死亡 者", "h-5", one, status=R.RESIDENT_STATUS_DECEASED),
        _resident("r-new", "転入 者", "h-6", one, moved_in_on=date(today)),
        _resident("r-chars", "外字 者", "h-7", one, characters_pending=True),
        _resident("r-change", "変更 中", "h-8", one, register_change_pending=True),
        _resident("r-dv", "支援 者", "h-9", one, support_measure=True),
        _resident("r-abolished", "廃止 者", "h-10", one),
        _resident("r-e1", "世帯 主", "h-11", one),
        _resident("r-e1b", "世帯 員", "h-11", one, relationship="子",
                  status=R.RESIDENT_STATUS_MOVING_OUT),
        _resident("r-e2", "支援 主", "h-12", one),
        _resident("r-e2b", "支援 員", "h-12", one, relationship="妻", support_measure=True),
        _resident("r-f1", "戸籍 変更", "h-13", one),
        _resident("r-h1", f"絵{UNDRAWABLE}", "h-14", one),
    ]
    seals = [
        R.SealRegistration(resident_id="r-taro", number="S-0001",
                           state=R.SEAL_STATE_REGISTERED, registered_on=_d(2015, 1, 5)),
        R.SealRegistration(resident_id="r-ward", number="S-0002",
                           state=R.SEAL_STATE_REGISTERED),
        R.SealRegistration(resident_id="r-abolished", number="S-0003",
                           state=R.SEAL_STATE_ABOLISHED),
    ]
    tax = [R.TaxRecord(resident_id="r-taro", fiscal_year=2025,
                       total_income=K.Money(yen=5_000_000), municipal_tax=K.Money(yen=180_000),
                       prefectural_tax=K.Money(yen=120_000), dependants=2)]

    def member(mid: str, name: str, born: types_pb2.Date, relationship: str,
               resident_id: str = "", **fields: object) -> register_pb2.RegisterMember:
        return R.RegisterMember(
            id=mid, resident_id=resident_id, name=name, birth_date=born,
            relationship=relationship, father="葛西 一", mother="葛西 春",
            events=[R.RegisterEvent(date=born, kind="出生", text="甲府市で出生")],
            **fields)  # type: ignore[arg-type]

    fr1 = R.FamilyRegister(
        id="fr-1", registered_domicile=DOMICILE, head_of_register="葛西 太郎",
        members=[
            member("m-taro", IVS_NAME, _d(1980, 5, 1), "夫", "r-taro"),
            member("m-hanako", "葛西 花子", _d(1982, 7, 7), "妻", "r-hanako"),
            member("m-ichiro", "葛西 一郎", _d(today.year - 10, 1, 1), "長男", "r-ichiro"),
            member("m-jiro", "葛西 次郎", _d(1999, 3, 3), "二男"),
        ],
        address_history=[
            R.AddressEntry(member_id="m-taro", address="山梨県甲府市丸の内一丁目18番1号",
                           from_date=_d(2010, 4, 1)),
            R.AddressEntry(member_id="m-jiro", address="東京都千代田区九段南一丁目2番1号",
                           from_date=_d(2020, 4, 1)),
        ],
    )
    fr2 = R.FamilyRegister(
        id="fr-2", registered_domicile="山梨県甲府市朝日一丁目1番", head_of_register="戸籍 変更",
        members=[member("m-f1", "戸籍 変更", one, "夫", "r-f1")], change_pending=True,
    )
    bindings = {"a1": "r-taro", "a2": "r-hanako", "a3": "r-ichiro", "b1": "r-ward",
                "c1": "r-out", "c2": "r-moving", "c3": "r-dead", "c4": "r-new",
                "c5": "r-chars", "c6": "r-change", "c7": "r-dv", "d1": "r-abolished",
                "e1": "r-e1", "e2": "r-e2", "f1": "r-f1", "h1": "r-h1"}
    return R.MunicipalityData(
        tenant=kofu_tenant(maintenance_day=maintenance_day), residents=residents, seals=seals,
        tax_records=tax, family_registers=[fr1, fr2],
        card_bindings=[R.CardBinding(certificate_serial=s, resident_id=r)
                       for s, r in bindings.items()],
        register_links=[R.RegisterLink(certificate_serial="g1", register_id="fr-1",
                                       member_id="m-jiro")],
    )


def chiyoda_data() -> register_pb2.MunicipalityData:
    """The second tenant: one resident, residence records only."""
    tenant = R.Tenant(
        code=K.MunicipalityCode(value=CHIYODA), name="千代田区",
        offers=[R.KindOffer(kind=K.CERTIFICATE_KIND_RESIDENCE_RECORD, fee=K.Money(yen=300))])
    resident = _resident("r-taro", "千代田 太郎", "h-1", _d(1975, 1, 1),
                         address="東京都千代田区九段南一丁目2番1号")
    return R.MunicipalityData(
        tenant=tenant, residents=[resident],
        card_bindings=[R.CardBinding(certificate_serial="z1", resident_id="r-taro")])


def demo_dataset(today: dt.date, *, maintenance_day: dt.date | None = None
                 ) -> register_pb2.Dataset:
    """Both tenants."""
    return R.Dataset(municipalities=[kofu_data(today, maintenance_day=maintenance_day),
                                     chiyoda_data()])


def demo_dataset_json(today: dt.date) -> str:
    """The import format of :func:`demo_dataset`."""
    return json.dumps(json_format.MessageToDict(demo_dataset(today)), ensure_ascii=False,
                      indent=2)
