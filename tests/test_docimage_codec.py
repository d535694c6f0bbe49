"""konbini.docimage: base45, QR codes, rasterizing, scans, resampling and the bitmap font."""

from __future__ import annotations

import io

import numpy as np
import pikepdf
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from konbini.docimage import (
    PdfUnreadable,
    all_pages_a4,
    b45decode,
    b45encode,
    find_qr_codes,
    is_a4_size,
    load_scan,
    page_count,
    page_size_points,
    qr_image,
    rasterize_page,
)
from konbini.docimage.bitmapfont import GLYPH_HEIGHT, text_mask
from konbini.docimage.pdfimage import images_to_pdf
from konbini.docimage.raster import to_png
from konbini.docimage.resample import area_means

# RFC 9285 section 4.3 and 4.4 examples.
RFC9285_VECTORS = [
    (b"AB", "BB8"),
    (b"Hello!!", "%69 VD92EX0"),
    (b"base-45", "UJCLQE7W581"),
    (b"ietf!", "QED8WEX0"),
]


@pytest.mark.parametrize(("raw", "text"), RFC9285_VECTORS)
def test_base45_rfc9285_vectors(raw: bytes, text: str) -> None:
    assert b45encode(raw) == text
    assert b45decode(text) == raw


@pytest.mark.parametrize(
    "bad",
    [
        "GGW",  # 65535 + 1: a three-character group above two bytes
        "ZZZ",  # far above two bytes
        ":Z",  # a two-character group above one byte
        "A",  # a dangling single character
        "BB8A",  # a dangling character after a valid group
        "bb8",  # lower case is not in the alphabet
        "BB#",  # '#' is not in the alphabet
    ],
)
def test_base45_rejects_malformed_text(bad: str) -> None:
    with pytest.raises(ValueError):
        b45decode(bad)


def test_base45_largest_groups_decode() -> None:
    assert b45decode("FGW") == b"\xff\xff"
    assert b45decode("U5") == b"\xff"


@given(st.binary(max_size=64))
def test_base45_round_trip(raw: bytes) -> None:
    text = b45encode(raw)
    assert len(text) == len(raw) // 2 * 3 + len(raw) % 2 * 2
    assert b45decode(text) == raw


def _page_with(patches: list[tuple[int, int, np.ndarray]], size: tuple[int, int]) -> np.ndarray:
    page = np.full(size, 255, dtype=np.uint8)
    for top, left, patch in patches:
        page[top : top + patch.shape[0], left : left + patch.shape[1]] = patch
    return page


@pytest.mark.parametrize("dpi", [150, 300])
def test_qr_codes_are_found_on_a_rendered_page(dpi: int) -> None:
    # Two seals drawn at 300 dpi (3 px modules, 0.25 mm), text as base45 of binary data.
    payload = b45encode(bytes(range(200)))
    other = "KKB1:sk0001:3"
    page = _page_with(
        [(3000, 1900, qr_image(payload, 3)), (200, 200, qr_image(other, 6))], (3508, 2480)
    )
    image = rasterize_page(images_to_pdf([page]), 0, dpi)
    found = find_qr_codes(image)
    assert [q.text for q in found] == [other, payload]  # ordered top to bottom
    scale = dpi / 300
    # The first module starts after the 4-module quiet zone.
    seal = found[1].box
    assert abs(seal.left - (1900 + 12) * scale) <= 2
    assert abs(seal.top - (3000 + 12) * scale) <= 2
    assert b45decode(found[1].text) == bytes(range(200))


def test_no_qr_code_on_a_blank_page() -> None:
    assert find_qr_codes(np.full((400, 300), 255, dtype=np.uint8)) == []


def test_a4_rasters_have_the_expected_pixel_sizes() -> None:
    pdf = images_to_pdf([np.full((3508, 2480), 255, dtype=np.uint8)] * 2)
    assert page_count(pdf) == 2
    assert all_pages_a4(pdf)
    assert rasterize_page(pdf, 1, 300).shape == (3508, 2480)
    assert rasterize_page(pdf, 0, 150).shape == (1754, 1240)
    width, height = page_size_points(pdf, 0)
    assert is_a4_size(width, height)


def test_150_dpi_is_the_area_mean_of_300_dpi() -> None:
    rng = np.random.default_rng(5)
    page = np.where(rng.random((3508, 2480)) < 0.05, 0, 255).astype(np.uint8)
    pdf = images_to_pdf([page])
    fine = rasterize_page(pdf, 0, 300).astype(np.float64)
    coarse = rasterize_page(pdf, 0, 150).astype(np.float64)
    mean = fine.reshape(1754, 2, 1240, 2).mean(axis=(1, 3))
    assert np.abs(coarse - mean).max() <= 0.5


def test_letter_size_is_not_a4() -> None:
    pdf = images_to_pdf([np.full((110, 85), 255, dtype=np.uint8)], size_points=(612, 792))
    assert not all_pages_a4(pdf)
    assert rasterize_page(pdf, 0, 150).shape == (1650, 1275)


def test_unreadable_pdf_and_missing_page_raise_typed_errors() -> None:
    with pytest.raises(PdfUnreadable):
        page_count(b"%PDF-1.7 nonsense")
    pdf = images_to_pdf([np.full((35, 25), 255, dtype=np.uint8)])
    with pytest.raises(PdfUnreadable):
        rasterize_page(pdf, 1, 150)


def test_image_pages_carry_no_text_operators() -> None:
    pdf = images_to_pdf([np.full((35, 25), 0, dtype=np.uint8)])
    with pikepdf.open(io.BytesIO(pdf)) as document:
        operators = {str(op) for _, op in pikepdf.parse_content_stream(document.pages[0])}
    assert operators == {"q", "cm", "Do", "Q"}


def test_load_scan_reads_png_gray_rgb_and_transparent(tmp_path) -> None:
    gray = np.arange(256, dtype=np.uint8).reshape(16, 16)
    assert np.array_equal(load_scan(to_png(gray)), gray)
    rgb = Image.fromarray(np.stack([gray] * 3, axis=2))
    path = tmp_path / "scan.png"
    rgb.save(path)
    assert np.array_equal(load_scan(path), gray)
    # A transparent scan: transparent pixels are paper (white), opaque ones keep their gray.
    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[0, 0] = (0, 0, 0, 255)
    out = io.BytesIO()
    Image.fromarray(rgba).save(out, format="PNG")
    assert load_scan(out.getvalue()).tolist() == [[0, 255], [255, 255]]


def _brute_area_mean(values: np.ndarray, rows: int, cols: int) -> np.ndarray:
    height, width = values.shape
    out = np.zeros((rows, cols))
    for r in range(rows):
        y0, y1 = r * height / rows, (r + 1) * height / rows
        for c in range(cols):
            x0, x1 = c * width / cols, (c + 1) * width / cols
            total = 0.0
            for y in range(int(np.floor(y0)), int(np.ceil(y1))):
                wy = min(y + 1, y1) - max(y, y0)
                for x in range(int(np.floor(x0)), int(np.ceil(x1))):
                    total += values[y, x] * wy * (min(x + 1, x1) - max(x, x0))
            out[r, c] = total / ((y1 - y0) * (x1 - x0))
    return out


@pytest.mark.parametrize(
    ("shape", "grid"),
    [
        ((37, 53), (5, 7)),
        ((19, 31), (19, 4)),
        ((8, 8), (8, 8)),
        ((70, 90), (4, 5)),  # long spans: summed span by span
        ((50, 40), (43, 9)),
    ],
)
def test_area_means_are_exact_with_fractional_cells(
    shape: tuple[int, int], grid: tuple[int, int]
) -> None:
    values = np.random.default_rng(2).integers(0, 256, shape).astype(np.uint8)
    assert np.allclose(area_means(values, *grid), _brute_area_mean(values, *grid))


def test_bitmap_font_draws_key_ids() -> None:
    mask = text_mask("sk-01", scale=2)
    assert mask.shape == (GLYPH_HEIGHT * 2, (5 * 3 + 4) * 2)
    assert np.array_equal(text_mask("SK-01"), text_mask("sk-01"))
    assert not np.array_equal(text_mask("0"), text_mask("8"))
    with pytest.raises(ValueError):
        text_mask("鍵")
