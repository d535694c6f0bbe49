"""Certificate layouts without pixels: what each kind prints, the options honoured (OPT-APPLIED),
旧氏 annotations, variation sequences kept, dates and the municipal seal."""

from __future__ import annotations

import dataclasses
import datetime as dt
import io

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from PIL import Image

from konbini.common.v1 import types_pb2
from konbini.docimage.raster import rasterize_page
from municipality.documents import DocumentRequest, DocumentSigner, layout_for, subjects_of
from municipality.documents.jpformat import era_date, fiscal_year_label, individual_number
from municipality.documents.samples import (
    ALL_KINDS,
    IVS_NAME,
    sample_household,
    sample_request,
    sample_tenant,
)
from municipality.render import (
    CertificateLayout,
    GlyphFont,
    Heading,
    Note,
    Paragraph,
    Table,
    render_certificate,
)
from municipality.render.fonts import IPAMJ_PATHS

IPAMJ = next((p for p in IPAMJ_PATHS if p.is_file()), None)
pytestmark = pytest.mark.skipif(IPAMJ is None, reason="IPAmj Mincho (fonts-ipamj-mincho) missing")

K = types_pb2
NOW = dt.datetime(2025, 4, 1, 1, 30, tzinfo=dt.UTC)
RESIDENCE = K.CERTIFICATE_KIND_RESIDENCE_RECORD
SIGNER = DocumentSigner("layout-test", ec.generate_private_key(ec.SECP256R1()))


def request_of(kind: int, **overrides: object) -> DocumentRequest:
    assert IPAMJ is not None
    return sample_request(kind, SIGNER, font_path=IPAMJ, issued_at=NOW, **overrides)  # type: ignore[arg-type]


def residence(**options: bool) -> DocumentRequest:
    opts = K.ResidenceRecordOptions(scope=K.HOUSEHOLD_SCOPE_WHOLE_HOUSEHOLD, **options)
    return request_of(RESIDENCE, options=K.CertificateOptions(residence_record=opts))


def labels(layout: CertificateLayout) -> list[str]:
    return [label for block in layout.body if isinstance(block, Table) for label, _ in block.rows]


def texts(layout: CertificateLayout) -> str:
    """Every string the body prints, joined."""
    out: list[str] = []
    for block in layout.body:
        if isinstance(block, Table):
            out += [cell for row in block.rows for cell in row]
        elif isinstance(block, Heading | Note | Paragraph):
            out.append(block.text)
    return "\n".join(out)


OPTIONAL_ITEMS = {
    "show_household_head": ["続柄", "世帯主"],
    "show_registered_domicile": ["本籍", "筆頭者"],
    "show_individual_number": ["個人番号"],
    "show_nationality": ["国籍・地域"],
    "show_residence_card_number": ["在留カード番号"],
    "show_residence_status": ["在留資格", "在留期間等の満了の日"],
}


@pytest.mark.parametrize("option", sorted(OPTIONAL_ITEMS))
def test_an_optional_item_is_printed_only_when_asked_for(option: str) -> None:
    without = layout_for(residence())
    with_it = layout_for(residence(**{option: True}))
    for label in OPTIONAL_ITEMS[option]:
        assert label not in labels(without), label
        assert label in labels(with_it), label
    # only that item was added
    extra = set(labels(with_it)) - set(labels(without))
    assert extra == set(OPTIONAL_ITEMS[option])


def test_no_optional_value_leaks_when_not_asked_for() -> None:
    printed = texts(layout_for(residence()))
    for person in sample_household():
        assert person.individual_number not in printed
        assert individual_number(person.individual_number) not in printed
        if person.registered_domicile:
            assert person.registered_domicile not in printed
        if person.HasField("foreign"):
            assert person.foreign.residence_card_number not in printed
            assert person.foreign.nationality not in printed
    asked = texts(layout_for(residence(show_individual_number=True)))
    assert "1234 5678 9018" in asked


def test_the_individual_number_changes_the_page_image() -> None:
    plain = rasterize_page(render_certificate(layout_for(residence())), 0, 100)
    with_number = rasterize_page(
        render_certificate(layout_for(residence(show_individual_number=True))), 0, 100
    )
    assert plain.shape == with_number.shape
    assert np.count_nonzero(plain != with_number) > 500


def test_foreign_items_only_for_foreign_residents() -> None:
    layout = layout_for(residence(show_nationality=True, show_residence_card_number=True))
    assert labels(layout).count("国籍・地域") == 1  # one foreign member among three
    assert labels(layout).count("在留カード番号") == 1


def test_residence_record_prints_each_member_in_order_with_basic_items() -> None:
    layout = layout_for(residence())
    names = [value for label, value in _rows(layout) if label == "氏名"]
    assert names == [p.name for p in sample_household()]
    for label in ("生年月日", "性別", "住所"):
        assert labels(layout).count(label) == 3
    assert layout.title == "住民票の写し"
    assert layout.certification == "この写しは、住民票の原本と相違ないことを証明する。"
    items = layout_for(request_of(K.CERTIFICATE_KIND_RESIDENCE_RECORD_ITEMS))
    assert items.title == "住民票記載事項証明書"


def _rows(layout: CertificateLayout) -> list[tuple[str, str]]:
    return [tuple(row) for block in layout.body if isinstance(block, Table) for row in block.rows]  # type: ignore[misc]


def test_former_surname_is_annotated_wherever_the_person_appears() -> None:
    for kind in ALL_KINDS:
        if kind == K.CERTIFICATE_KIND_FAMILY_REGISTER_INDIVIDUAL:
            continue  # covered below with the member chosen
        notes = [b.text for b in layout_for(request_of(kind)).body if isinstance(b, Note)]
        assert "旧氏　鈴木" in notes, K.CertificateKind.Name(kind)
    individual = layout_for(request_of(K.CERTIFICATE_KIND_FAMILY_REGISTER_INDIVIDUAL))
    assert "旧氏　鈴木" in texts(individual)


def test_no_former_surname_no_annotation() -> None:
    household = sample_household()
    household[0].former_surname = ""
    for kind in (RESIDENCE, K.CERTIFICATE_KIND_SEAL_REGISTRATION, K.CERTIFICATE_KIND_INCOME_TAX):
        printed = texts(layout_for(request_of(kind, residents=household)))
        assert "旧氏" not in printed


def test_seal_certificate_shows_the_registered_impression_and_number() -> None:
    request = request_of(K.CERTIFICATE_KIND_SEAL_REGISTRATION)
    layout = layout_for(request)
    images = [b for b in layout.body if type(b).__name__ == "SealImage"]
    assert len(images) == 1 and images[0].image == request.seal.seal_png  # type: ignore[union-attr, attr-defined]
    rows = dict(_rows(layout))
    assert rows["登録番号"] == "第00012345号"
    assert rows["氏名"] == IVS_NAME
    assert rows["生年月日"] == "昭和55年5月17日"


def test_tax_certificate_prints_the_year_income_and_taxes() -> None:
    rows = dict(_rows(layout_for(request_of(K.CERTIFICATE_KIND_INCOME_TAX))))
    assert rows["年度"] == "令和7年度"
    assert rows["所得の年"] == "令和6年分"
    assert rows["総所得金額"] == "4,250,000円"
    assert rows["合計"] == "285,000円"
    assert rows["扶養親族数"] == "1人"


def test_family_register_full_and_individual_print_the_chosen_members() -> None:
    full = layout_for(request_of(K.CERTIFICATE_KIND_FAMILY_REGISTER_FULL))
    individual = layout_for(request_of(K.CERTIFICATE_KIND_FAMILY_REGISTER_INDIVIDUAL))
    assert [v for k, v in _rows(full) if k == "氏名"] == [IVS_NAME, "葛西 一郎"]
    assert [v for k, v in _rows(individual) if k == "氏名"] == [IVS_NAME]
    assert "葛西 茂" in texts(full) and "葛西 茂" not in texts(individual)  # the other's father
    assert dict(_rows(full))["本籍"] == "山梨県甲府市相生二丁目1番"
    assert any(k == "【婚姻】" for k, _ in _rows(full))
    history = layout_for(request_of(K.CERTIFICATE_KIND_FAMILY_REGISTER_ADDRESS_HISTORY))
    assert "東京都新宿区西新宿二丁目8番1号" in texts(history)
    assert history.title == "戸籍の附票の写し"


def test_subjects_are_the_printed_people_in_order() -> None:
    household = sample_household()
    assert subjects_of(request_of(RESIDENCE)) == [(p.id, p.name) for p in household]
    assert subjects_of(request_of(K.CERTIFICATE_KIND_INCOME_TAX)) == [("R-0001", IVS_NAME)]
    assert subjects_of(request_of(K.CERTIFICATE_KIND_FAMILY_REGISTER_INDIVIDUAL)) == [
        ("M-0001", IVS_NAME)
    ]


def test_variation_sequence_reaches_the_page_as_its_mj_glyph() -> None:
    assert IPAMJ is not None
    font = GlyphFont.from_path(IPAMJ)
    layout = layout_for(residence())
    assert _rows(layout)[0] == ("氏名", IVS_NAME)  # the selector is not dropped
    assert font.glyph_name(font.shape("葛\U000e0102").gids[0]) == "mj022335"
    assert font.glyph_name(font.shape("葛").gids[0]) == "mj022336"
    # the page with the sequence differs from the page with the bare characters
    household = sample_household()
    household[0].name = "葛西 辻子"
    bare = request_of(RESIDENCE, residents=household)
    with_ivs = rasterize_page(render_certificate(layout), 0, 150)
    without = rasterize_page(render_certificate(layout_for(bare)), 0, 150)
    assert np.count_nonzero(with_ivs != without) > 20


def test_dates_in_japanese_eras() -> None:
    assert era_date(dt.date(2019, 5, 1)) == "令和元年5月1日"
    assert era_date(dt.date(2019, 4, 30)) == "平成31年4月30日"
    assert era_date(dt.date(1989, 1, 7)) == "昭和64年1月7日"
    assert era_date(dt.date(1989, 1, 8)) == "平成元年1月8日"
    assert fiscal_year_label(2019) == "令和元年度"
    assert fiscal_year_label(1988) == "昭和63年度"
    # the issue date is the Japan date: 2025-03-31 16:00 UTC is 1 April in Japan
    late = dataclasses.replace(
        request_of(RESIDENCE), issued_at=dt.datetime(2025, 3, 31, 16, 0, tzinfo=dt.UTC)
    )
    assert layout_for(late).issued_on == "令和7年4月1日"
    assert layout_for(late, western_dates=True).issued_on == "2025年4月1日"


def test_tenant_seal_is_used_and_a_missing_one_is_generated() -> None:
    own = io.BytesIO()
    Image.new("RGBA", (50, 50), (200, 0, 0, 255)).save(own, format="PNG")
    tenant = sample_tenant(official_seal_png=own.getvalue())
    custom = layout_for(request_of(RESIDENCE, tenant=tenant))
    assert custom.municipal_seal == own.getvalue()
    generated = layout_for(request_of(RESIDENCE)).municipal_seal
    assert isinstance(generated, bytes) and generated != own.getvalue()
    image = np.asarray(Image.open(io.BytesIO(generated)).convert("RGBA"))
    red = (image[:, :, 0] > 150) & (image[:, :, 1] < 100) & (image[:, :, 3] > 0)
    assert red.mean() > 0.05  # a red stamp on a transparent ground
    assert layout_for(request_of(RESIDENCE)).municipal_seal == generated  # deterministic


def test_each_copy_gets_its_issue_number() -> None:
    request = request_of(RESIDENCE, copies=3)
    numbers = [layout_for(request, i).issue_number for i in range(3)]
    assert numbers == list(request.issue_numbers) and len(set(numbers)) == 3
