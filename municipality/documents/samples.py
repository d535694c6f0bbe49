"""Sample records of every kind, for ``konbini bench render`` and tests (fictional people).

The names exercise what matters: an MJ variation sequence (葛 + U+E0102 draws mj022335, not the
default 葛), a registered 旧氏, a foreign resident and a multi-member household.
"""

from __future__ import annotations

import datetime as dt
import functools
import io
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from konbini.common.v1 import types_pb2
from konbini.register.v1 import register_pb2
from municipality.documents.request import DocumentRequest
from municipality.documents.signer import DocumentSigner

K = types_pb2
R = register_pb2
KOFU = "192015"
IVS_NAME = "葛\U000e0102西 辻\U000e0102子"  # both with MJ variation sequences
ADDRESS = "山梨県甲府市丸の内一丁目18番1号"
DOMICILE = "山梨県甲府市相生二丁目1番"
ALL_KINDS: tuple[int, ...] = (
    K.CERTIFICATE_KIND_RESIDENCE_RECORD,
    K.CERTIFICATE_KIND_RESIDENCE_RECORD_ITEMS,
    K.CERTIFICATE_KIND_SEAL_REGISTRATION,
    K.CERTIFICATE_KIND_INCOME_TAX,
    K.CERTIFICATE_KIND_FAMILY_REGISTER_FULL,
    K.CERTIFICATE_KIND_FAMILY_REGISTER_INDIVIDUAL,
    K.CERTIFICATE_KIND_FAMILY_REGISTER_ADDRESS_HISTORY,
)


def _date(year: int, month: int, day: int) -> types_pb2.Date:
    return types_pb2.Date(year=year, month=month, day=day)


def sample_tenant(*, official_seal_png: bytes = b"") -> register_pb2.Tenant:
    return R.Tenant(
        code=K.MunicipalityCode(value=KOFU),
        name="甲府市",
        issuer_line="甲府市長 山田 太郎",
        official_seal_png=official_seal_png,
    )


def sample_household() -> list[register_pb2.Resident]:
    """A household of three: the head (with 旧氏 and an IVS name), spouse, and a foreign member."""
    common = {"address": ADDRESS, "household_id": "H-0001", "moved_in_on": _date(2015, 4, 1)}
    return [
        R.Resident(
            id="R-0001", name=IVS_NAME, name_kana="カサイ ツジコ", birth_date=_date(1980, 5, 17),
            sex=R.SEX_FEMALE, relationship="世帯主", registered_domicile=DOMICILE,
            head_of_register=IVS_NAME, former_surname="鈴木", individual_number="123456789018",
            **common,
        ),
        R.Resident(
            id="R-0002", name="葛西 一郎", name_kana="カサイ イチロウ",
            birth_date=_date(1978, 11, 2),
            sex=R.SEX_MALE, relationship="夫", registered_domicile=DOMICILE,
            head_of_register=IVS_NAME, individual_number="987654321098", **common,
        ),
        R.Resident(
            id="R-0003", name="SMITH JOHN", name_kana="スミス ジョン", birth_date=_date(1990, 1, 9),
            sex=R.SEX_MALE, relationship="同居人", individual_number="111122223333",
            foreign=R.ForeignResident(
                nationality="英国", residence_card_number="AB12345678CD",
                residence_status="技術・人文知識・国際業務", period_of_stay_end=_date(2027, 3, 31),
            ),
            **common,
        ),
    ]


def sample_register() -> register_pb2.FamilyRegister:
    head = R.RegisterMember(
        id="M-0001", resident_id="R-0001", name=IVS_NAME, birth_date=_date(1980, 5, 17),
        sex=R.SEX_FEMALE, relationship="長女", father="鈴木 正", mother="鈴木 花",
        events=[
            R.RegisterEvent(date=_date(1980, 5, 17), kind="出生", text="山梨県甲府市で出生"),
            R.RegisterEvent(date=_date(2010, 6, 1), kind="婚姻", text="葛西一郎と婚姻届出"),
        ],
    )
    spouse = R.RegisterMember(
        id="M-0002", resident_id="R-0002", name="葛西 一郎", birth_date=_date(1978, 11, 2),
        sex=R.SEX_MALE, relationship="夫", father="葛西 茂", mother="葛西 和子",
        events=[R.RegisterEvent(date=_date(2010, 6, 1), kind="婚姻", text="婚姻届出")],
    )
    return R.FamilyRegister(
        id="F-0001", registered_domicile=DOMICILE, head_of_register=IVS_NAME,
        members=[head, spouse],
        address_history=[
            R.AddressEntry(member_id="M-0001", address="東京都新宿区西新宿二丁目8番1号",
                           from_date=_date(2005, 4, 1), to_date=_date(2015, 3, 31)),
            R.AddressEntry(member_id="M-0001", address=ADDRESS, from_date=_date(2015, 4, 1)),
            R.AddressEntry(member_id="M-0002", address=ADDRESS, from_date=_date(2015, 4, 1)),
        ],
    )


@functools.lru_cache(maxsize=4)
def sample_seal_png(font_path: Path) -> bytes:
    """A round personal seal impression (red, transparent ground) reading 葛西."""
    image = Image.new("RGBA", (200, 200), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    ink = (190, 30, 40, 255)
    draw.ellipse((8, 8, 191, 191), outline=ink, width=10)
    font = ImageFont.truetype(str(font_path), 70)
    draw.text((100, 62), "葛", font=font, fill=ink, anchor="mm")
    draw.text((100, 138), "西", font=font, fill=ink, anchor="mm")
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def sample_request(
    kind: int,
    signer: DocumentSigner,
    *,
    font_path: Path,
    issued_at: dt.datetime | None = None,
    copies: int = 1,
    options: types_pb2.CertificateOptions | None = None,
    residents: Sequence[register_pb2.Resident] | None = None,
    tenant: register_pb2.Tenant | None = None,
) -> DocumentRequest:
    """A complete, consistent request of ``kind`` about the sample household and register."""
    household = list(residents) if residents is not None else sample_household()
    register = sample_register()
    when = issued_at or dt.datetime(2025, 4, 1, 10, 30, tzinfo=dt.UTC)
    default_options = {
        K.CERTIFICATE_KIND_INCOME_TAX: K.CertificateOptions(
            income_tax=K.IncomeTaxOptions(fiscal_year=2025)
        ),
        K.CERTIFICATE_KIND_SEAL_REGISTRATION: K.CertificateOptions(
            seal_registration=K.SealRegistrationOptions()
        ),
    }
    chosen = options or default_options.get(
        kind,
        K.CertificateOptions(
            residence_record=K.ResidenceRecordOptions(
                scope=K.HOUSEHOLD_SCOPE_WHOLE_HOUSEHOLD, show_household_head=True
            )
        )
        if kind in (K.CERTIFICATE_KIND_RESIDENCE_RECORD, K.CERTIFICATE_KIND_RESIDENCE_RECORD_ITEMS)
        else K.CertificateOptions(family_register=K.FamilyRegisterOptions()),
    )
    holder = household[0]
    printed: list[register_pb2.Resident] = household
    if kind in (K.CERTIFICATE_KIND_SEAL_REGISTRATION, K.CERTIFICATE_KIND_INCOME_TAX):
        printed = [holder]
    members = list(register.members)
    if kind == K.CERTIFICATE_KIND_FAMILY_REGISTER_INDIVIDUAL:
        members = members[:1]
    return DocumentRequest(
        tenant=tenant or sample_tenant(),
        signer=signer,
        kind=kind,
        options=chosen,
        residents=printed,
        seal=R.SealRegistration(
            resident_id=holder.id, number="第00012345号", seal_png=sample_seal_png(font_path),
            state=R.SEAL_STATE_REGISTERED, registered_on=_date(2016, 2, 1),
        ),
        tax=R.TaxRecord(
            resident_id=holder.id, fiscal_year=2025, total_income=K.Money(yen=4_250_000),
            municipal_tax=K.Money(yen=171_000), prefectural_tax=K.Money(yen=114_000),
            dependants=1,
        ),
        family_register=register,
        register_members=members,
        issue_numbers=[f"19201-20250401-{i + 1:06d}" for i in range(copies)],
        reservation_id="rsv-sample-0001",
        issued_at=when,
    )
