"""Certificate documents: image-only PDF, A4, QR, seal, pagination, determinism, benchmark."""

from __future__ import annotations

import io
import re

import numpy as np
import pikepdf
import pypdfium2 as pdfium
import pytest
import zxingcpp
from PIL import Image, ImageDraw

from municipality.render import (
    CertificateLayout,
    DocumentBuilder,
    GlyphFont,
    GlyphMissing,
    Heading,
    LayoutError,
    Note,
    Paragraph,
    SealImage,
    Spacer,
    Table,
    bench_render,
    qr_box,
    render_certificate,
    same_qr,
)
from municipality.render.fonts import IPAMJ_PATHS
from municipality.render.layout import BODY_BOTTOM

IPAMJ = next((p for p in IPAMJ_PATHS if p.is_file()), None)
pytestmark = pytest.mark.skipif(IPAMJ is None, reason="IPAmj Mincho (fonts-ipamj-mincho) missing")

A4 = (595.276, 841.89)
TEXT_OPERATORS = {"BT", "ET", "Tj", "TJ", "'", '"', "Tf", "Td", "TD", "Tm", "T*", "Tr", "Tz"}
# A base45 text of the length of a signed compact payload (alphanumeric QR mode).
PAYLOAD = "NCFOXN%TSMAHN-HWWK2RL99TEZ*7*A /$:.+" * 8


@pytest.fixture(scope="module")
def font() -> GlyphFont:
    assert IPAMJ is not None
    return GlyphFont.from_path(IPAMJ)


def red_seal() -> bytes:
    """A plausible municipal seal: a red square stamp on a transparent background, as PNG."""
    img = Image.new("RGBA", (200, 200), (0, 0, 0, 0))
    draw = ImageDraw.Draw(img)
    draw.rectangle((6, 6, 193, 193), outline=(205, 30, 35, 255), width=12)
    for i in range(3):
        draw.rectangle((40 + i * 45, 40, 65 + i * 45, 160), fill=(205, 30, 35, 255))
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()


def layout(body: list, **overrides: object) -> CertificateLayout:
    fields: dict[str, object] = {
        "title": "住民票の写し",
        "municipality_name": "山梨県甲府市",
        "issuer_line": "甲府市長 山田 太郎",
        "issue_number": "19201-2025-000123",
        "issued_on": "令和7年4月1日",
        "body": body,
        "certification": "この写しは、住民票の原本と相違ないことを証明する。",
        "municipal_seal": red_seal(),
        "qr_for_page": same_qr(PAYLOAD),
    }
    fields.update(overrides)
    return CertificateLayout(**fields)  # type: ignore[arg-type]


def resident_body(rows: int = 6) -> list:
    table = [
        ("氏名", "葛\U000e0102西 辻\U000e0102子"),
        ("生年月日", "昭和50年1月2日"),
        ("性別", "女"),
    ]
    table += [(f"項目{i}", f"甲府市丸の内一丁目{i}番{i}号") for i in range(rows - len(table))]
    return [Heading("世帯員"), Table(table), Note("旧氏 高橋"), Spacer(10), Paragraph("以下余白")]


def rasterize(pdf: bytes, dpi: int = 200) -> list[Image.Image]:
    doc = pdfium.PdfDocument(pdf)
    return [doc[i].render(scale=dpi / 72).to_pil().convert("RGB") for i in range(len(doc))]


def _forms(obj: pikepdf.Object) -> list[pikepdf.Object]:
    xobjects = obj.get("/Resources", {}).get("/XObject", {})
    return [x for x in xobjects.values() if x.get("/Subtype") == "/Form"]


def test_pdf_has_no_font_and_no_text_operator(font: GlyphFont) -> None:
    pdf = pikepdf.open(io.BytesIO(render_certificate(layout(resident_body()), font=font)))
    for obj in pdf.objects:
        if isinstance(obj, pikepdf.Dictionary | pikepdf.Stream):
            assert "/Font" not in obj
            assert obj.get("/Type") != "/Font"
            assert obj.get("/Subtype") not in ("/Type0", "/TrueType", "/Type1", "/Type3")
    streams: list[pikepdf.Object] = []
    for page in pdf.pages:
        streams.append(page.obj)
        streams.extend(_forms(page.obj))
    assert len(streams) > 20  # the page and its glyph forms
    for stream in streams:
        ops = {str(instr.operator) for instr in pikepdf.parse_content_stream(stream)}
        assert not ops & TEXT_OPERATORS, ops & TEXT_OPERATORS
    assert b"/Font" not in render_certificate(layout(resident_body()), font=font)


def test_pages_are_a4_and_glyph_forms_are_shared(font: GlyphFont) -> None:
    pdf = pikepdf.open(io.BytesIO(render_certificate(layout(resident_body(80)), font=font)))
    assert len(pdf.pages) >= 2
    for page in pdf.pages:
        box = [float(v) for v in page.mediabox]
        assert box[:2] == [0, 0] and box[2:] == pytest.approx(A4, abs=0.01)
    # the title's glyphs are on every page, but each is one object in the file
    first = {name: x.objgen for name, x in page_forms(pdf.pages[0]).items()}
    second = {name: x.objgen for name, x in page_forms(pdf.pages[1]).items()}
    shared = first.keys() & second.keys()
    assert shared
    assert all(first[n] == second[n] for n in shared)
    forms = [
        o for o in pdf.objects if isinstance(o, pikepdf.Stream) and o.get("/Subtype") == "/Form"
    ]
    assert len(forms) == len({f.objgen for p in pdf.pages for f in page_forms(p).values()})


def page_forms(page: pikepdf.Page) -> dict[str, pikepdf.Object]:
    return {k: v for k, v in page.obj.Resources.XObject.items() if v.get("/Subtype") == "/Form"}


def test_qr_decodes_to_the_exact_content_on_every_page(font: GlyphFont) -> None:
    calls: list[tuple[int, int]] = []

    def qr_for_page(index: int, count: int) -> str:
        calls.append((index, count))
        return f"{PAYLOAD}P{index + 1}/{count}"

    pdf = render_certificate(layout(resident_body(70), qr_for_page=qr_for_page), font=font)
    images = rasterize(pdf, dpi=200)
    count = len(images)
    assert count >= 2
    assert calls == [(i, count) for i in range(count)]
    x, y, w, h = qr_box()
    for index, image in enumerate(images):
        codes = zxingcpp.read_barcodes(image)
        assert [c.text for c in codes] == [f"{PAYLOAD}P{index + 1}/{count}"]
        assert codes[0].format == zxingcpp.BarcodeFormat.QRCode
        # where qr_box() says: its centre lies in the box
        centre = codes[0].position
        cx = sum(p.x for p in (centre.top_left, centre.bottom_right)) / 2 * 72 / 200
        cy = sum(p.y for p in (centre.top_left, centre.bottom_right)) / 2 * 72 / 200
        assert x < cx < x + w and y < cy < y + h


def test_no_qr_when_the_payload_is_not_known_yet(font: GlyphFont) -> None:
    pdf = render_certificate(layout(resident_body(), qr_for_page=None), font=font)
    assert zxingcpp.read_barcodes(rasterize(pdf)[0]) == []


def test_same_input_gives_the_same_bytes(font: GlyphFont) -> None:
    a = render_certificate(layout(resident_body()), font=font)
    b = render_certificate(layout(resident_body()), font=font)
    assert a == b
    assert b"CreationDate" not in a and b"Producer" not in a
    c = render_certificate(layout(resident_body(), issue_number="19201-2025-000124"), font=font)
    assert c != a


def _red_pixels(image: Image.Image) -> int:
    px = np.asarray(image).astype(int)
    return int(((px[..., 0] > 150) & (px[..., 1] < 110) & (px[..., 2] < 110)).sum())


def test_long_table_paginates_with_seal_on_last_page_only(font: GlyphFont) -> None:
    rows = [(f"世帯員{i}", f"山梨県甲府市相生{i}丁目{i}番地 葛\U000e0102西 {i}") for i in range(90)]
    pdf_bytes = render_certificate(layout([Heading("世帯員一覧"), Table(rows)]), font=font)
    pdf = pikepdf.open(io.BytesIO(pdf_bytes))
    assert len(pdf.pages) >= 3

    def images_on(page: pikepdf.Page) -> int:
        xobjects = page.obj.Resources.XObject.values()
        return sum(1 for x in xobjects if x.get("/Subtype") == "/Image")

    assert [images_on(p) for p in pdf.pages] == [0] * (len(pdf.pages) - 1) + [1]
    rasters = rasterize(pdf_bytes, dpi=100)
    assert _red_pixels(rasters[-1]) > 100  # the seal is printed, in red
    assert all(_red_pixels(r) == 0 for r in rasters[:-1])
    # nothing from the body runs past the body's bottom into the footer band
    qr_left, qr_top, _w, _h = qr_box()
    top, bottom = round((BODY_BOTTOM + 1) * 100 / 72), round((qr_top + 10) * 100 / 72)
    assert bottom - top > 5
    for raster in rasters:
        band = np.asarray(raster.convert("L"))[top:bottom, : round(qr_left * 100 / 72)]
        assert (band < 128).sum() == 0


def test_each_page_has_its_own_page_number(font: GlyphFont) -> None:
    rows = [(f"項目{i}", "値") for i in range(70)]
    pdf = pikepdf.open(io.BytesIO(render_certificate(layout([Table(rows)]), font=font)))
    count = len(pdf.pages)
    digit_glyphs = [font.shape(f"{i + 1} / {count}").gids for i in range(count)]
    for page, gids in zip(pdf.pages, digit_glyphs, strict=True):
        # the page's own "i / n" glyphs are among its resources
        assert {f"/G{g}" for g in gids if not font.outline(g).empty} <= set(page_forms(page))


def test_a_row_taller_than_a_page_is_split_not_lost(font: GlyphFont) -> None:
    long_value = "甲府市" * 1500
    pdf = render_certificate(layout([Table([("備考", long_value)])]), font=font)
    assert len(pikepdf.open(io.BytesIO(pdf)).pages) >= 3


def test_missing_glyph_in_the_body_refuses_the_whole_document(font: GlyphFont) -> None:
    with pytest.raises(GlyphMissing) as caught:
        render_certificate(layout([Table([("氏名", "山田 😀 花子")])]), font=font)
    assert caught.value.char == "😀"


def test_impossible_layouts_are_typed_errors(font: GlyphFont) -> None:
    with pytest.raises(LayoutError):
        render_certificate(layout([Table([("a", "b")], column_widths=(400.0, 400.0))]), font=font)
    with pytest.raises(LayoutError):
        DocumentBuilder(font).build()


def test_seal_impression_block_and_grayscale_images(font: GlyphFont) -> None:
    gray = Image.new("L", (120, 80), 255)
    ImageDraw.Draw(gray).ellipse((10, 10, 110, 70), outline=0, width=6)
    pdf_bytes = render_certificate(
        layout([Paragraph("登録印影"), SealImage(gray, width=90)], municipal_seal=None), font=font
    )
    pdf = pikepdf.open(io.BytesIO(pdf_bytes))
    (image,) = [x for x in pdf.pages[0].Resources.XObject.values() if x.Subtype == "/Image"]
    # Stays grayscale, and is resampled so that its 90 pt box holds 300 dpi (DOC-RESOLUTION).
    assert image.ColorSpace == "/DeviceGray"
    assert int(image.Width) / (90 / 72) >= 300 and int(image.Height) / (60 / 72) >= 300
    raster = np.asarray(rasterize(pdf_bytes)[0].convert("L"))
    assert (raster < 100).sum() > 500


def test_page_drawing_api_returns_widths(font: GlyphFont) -> None:
    doc = DocumentBuilder(font)
    page = doc.new_page()
    width = page.text(50, 100, 10, "住民票")
    assert width == pytest.approx(30, abs=0.01)  # three full-width characters at 10 pt
    assert page.text_right(500, 120, 10, "住民票") == pytest.approx(width)
    assert page.text_wrapped(50, 140, 10, "あ" * 30, width=100) == pytest.approx(140 + 3 * 15)
    page.qr("HELLO", 400, 600, 100)
    built = doc.build()
    image = rasterize(built, dpi=300)[0]
    assert [c.text for c in zxingcpp.read_barcodes(image)] == ["HELLO"]
    pdf = pikepdf.open(io.BytesIO(built))
    ops = {str(i.operator) for i in pikepdf.parse_content_stream(pdf.pages[0])}
    assert {"cm", "Do", "re", "f"} <= ops


def test_bench_render_reports_milliseconds_per_page(font: GlyphFont) -> None:
    warm = bench_render(2, True, runs=2, font=font)
    assert warm["pages"] == 2 and warm["warm"] is True
    assert 700 <= int(warm["chars_per_page"]) <= 900
    assert 0 < float(warm["min_ms_per_page"]) <= float(warm["median_ms_per_page"])
    cold = bench_render(1, False, runs=1, font=font)
    assert float(cold["median_ms_per_page"]) > 0
    assert font.cached_glyphs > 100  # the cold run filled the cache again
    assert re.fullmatch(r"\d+", str(cold["pdf_bytes"]))
