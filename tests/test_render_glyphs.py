"""Glyph-exact rendering: variation sequences, missing glyphs, font discovery and line breaking."""

from __future__ import annotations

import itertools
import logging
import struct
from pathlib import Path

import numpy as np
import pypdfium2 as pdfium
import pytest
from PIL import Image, ImageDraw, ImageFont

from municipality.render import DocumentBuilder, FontMissing, GlyphFont, GlyphMissing, find_font
from municipality.render.fonts import ENV_VAR, IPAMJ_PATHS
from municipality.render.wrap import wrap_text

IPAMJ = next((p for p in IPAMJ_PATHS if p.is_file()), None)
pytestmark = pytest.mark.skipif(IPAMJ is None, reason="IPAmj Mincho (fonts-ipamj-mincho) missing")

DPI = 300
PX = DPI / 72
# A 72 pt glyph with its origin at (72 pt, 144 pt) from the top-left: (300 px, 600 px) at 300 dpi,
# so the PDF raster and the reference raster share the pixel grid exactly.
ORIGIN_X, BASELINE, SIZE = 72.0, 144.0, 72.0

# DOMAIN.md "Glyphs", checked with IPAmj Mincho 005.01.
KUZU = "葛"
KUZU_E0102 = "葛\U000e0102"  # mj022335, unlike plain 葛 (mj022336)
TSUJI_E0102 = "辻\U000e0102"  # mj025760
TSUJI_E0103 = "辻\U000e0103"  # mj025761, the same glyph as plain 辻


@pytest.fixture(scope="module")
def font() -> GlyphFont:
    assert IPAMJ is not None
    return GlyphFont.from_path(IPAMJ)


def _crop(gray: np.ndarray) -> np.ndarray:
    """The glyph's em box (plus descent) around the shared origin, as ink booleans."""
    ox, oy = round(ORIGIN_X * PX), round(BASELINE * PX)
    em = round(SIZE * PX)
    return gray[oy - em : oy + em // 3, ox - 20 : ox + em + 20] < 128


def _pdf_raster(font: GlyphFont, text: str) -> np.ndarray:
    doc = DocumentBuilder(font)
    doc.new_page().text(ORIGIN_X, BASELINE, SIZE, text)
    page = pdfium.PdfDocument(doc.build())[0]
    image = page.render(scale=PX, grayscale=True).to_pil().convert("L")
    return _crop(np.asarray(image))


def _reference_raster(text: str) -> np.ndarray:
    """Drawn independently: Pillow with FreeType's rasterizer (libraqm shaping), no PDF involved."""
    assert IPAMJ is not None
    width, height = round(595.276 * PX), round(841.89 * PX)
    image = Image.new("L", (width, height), 255)
    ft = ImageFont.truetype(str(IPAMJ), round(SIZE * PX), layout_engine=ImageFont.Layout.RAQM)
    origin = (round(ORIGIN_X * PX), round(BASELINE * PX))
    ImageDraw.Draw(image).text(origin, text, font=ft, fill=0, anchor="ls")
    return _crop(np.asarray(image))


def _difference(a: np.ndarray, b: np.ndarray) -> float:
    """Pixels that differ, as a fraction of the ink of ``a``."""
    assert a.sum() > 1000, "nothing was drawn"
    return float((a ^ b).sum() / a.sum())


def test_variation_sequences_resolve_to_distinct_mj_glyphs(font: GlyphFont) -> None:
    names = {s: font.glyph_name(font.shape(s).gids[0]) for s in (KUZU, KUZU_E0102, TSUJI_E0102)}
    assert names == {KUZU: "mj022336", KUZU_E0102: "mj022335", TSUJI_E0102: "mj025760"}
    assert font.glyph_name(font.shape(TSUJI_E0103).gids[0]) == "mj025761"
    # a base character and its selector are one glyph, one cluster
    assert len(font.shape(KUZU_E0102).gids) == 1
    assert font.choice.resolves_mj_sequences


@pytest.mark.parametrize(("text", "other"), [(KUZU_E0102, KUZU), (TSUJI_E0102, TSUJI_E0103)])
def test_pdf_glyph_matches_harfbuzz_glyph_pixel_for_pixel(
    font: GlyphFont, text: str, other: str
) -> None:
    drawn = _pdf_raster(font, text)
    assert _difference(drawn, _reference_raster(text)) < 0.06
    # and the sequence did not fall back to the other form of the character
    assert _difference(drawn, _reference_raster(other)) > 0.2
    assert _difference(drawn, _pdf_raster(font, other)) > 0.2


@pytest.mark.parametrize("char", ["\U0010fffd", "😀"])
def test_missing_glyph_raises_typed_error_naming_the_character(font: GlyphFont, char: str) -> None:
    doc = DocumentBuilder(font)
    page = doc.new_page()
    with pytest.raises(GlyphMissing) as caught:
        page.text(50, 50, 10, f"山田{char}太郎")
    assert caught.value.char == char
    assert f"U+{ord(char):04X}" in str(caught.value)


def test_missing_glyph_keeps_its_variation_selector(font: GlyphFont) -> None:
    with pytest.raises(GlyphMissing) as caught:
        font.shape("甲\U0010fffd\U000e0102府")
    assert caught.value.codepoints == "U+10FFFD U+E0102"


def test_konbini_font_pointing_nowhere_is_font_missing(tmp_path: Path) -> None:
    with pytest.raises(FontMissing) as caught:
        find_font(env={ENV_VAR: str(tmp_path / "none.ttf")}, ipamj_paths=[IPAMJ], fc=None)
    assert "apt-get install fonts-ipamj-mincho" in str(caught.value)


def test_no_font_anywhere_says_how_to_install_one() -> None:
    with pytest.raises(FontMissing) as caught:
        find_font(env={}, ipamj_paths=[], fc=lambda _pattern: None)
    assert "apt-get install fonts-ipamj-mincho" in str(caught.value)
    assert ENV_VAR in str(caught.value)


def test_a_font_without_japanese_is_not_accepted() -> None:
    latin = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
    if not latin.is_file():
        pytest.skip("DejaVu Sans not installed")
    with pytest.raises(FontMissing):
        find_font(env={}, ipamj_paths=[], fc=lambda _pattern: latin)
    with pytest.raises(FontMissing):
        find_font(env={ENV_VAR: str(latin)}, ipamj_paths=[], fc=None)


def test_ipamj_is_found_first_and_env_overrides() -> None:
    assert IPAMJ is not None
    choice = find_font(env={}, ipamj_paths=[IPAMJ], fc=None)
    assert (choice.path, choice.resolves_mj_sequences, choice.source) == (IPAMJ, True, "ipamj")
    assert find_font(env={ENV_VAR: str(IPAMJ)}, ipamj_paths=[], fc=None).source == "env"


def _without_variation_sequences(source: Path, target: Path) -> Path:
    """A copy of the font whose cmap format 14 subtable is hidden: a Japanese font that does not
    resolve MJ variation sequences, like IPAex or Noto CJK."""
    data = bytearray(source.read_bytes())
    (num_tables,) = struct.unpack(">H", data[4:6])
    for i in range(num_tables):
        tag, _checksum, offset, _length = struct.unpack(">4sIII", data[12 + 16 * i : 28 + 16 * i])
        if tag == b"cmap":
            (count,) = struct.unpack(">H", data[offset + 2 : offset + 4])
            for j in range(count):
                rec = offset + 4 + 8 * j
                if struct.unpack(">HH", data[rec : rec + 4]) == (0, 5):
                    data[rec + 2 : rec + 4] = struct.pack(">H", 7)  # no longer (0, 5)
    target.write_bytes(bytes(data))
    return target


def test_fallback_font_is_used_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert IPAMJ is not None
    plain = _without_variation_sequences(IPAMJ, tmp_path / "plain-japanese.ttf")
    with caplog.at_level(logging.WARNING, logger="municipality.render.fonts"):
        choice = find_font(env={}, ipamj_paths=[plain], fc=lambda _pattern: plain)
    assert (choice.source, choice.resolves_mj_sequences) == ("fallback", False)
    assert "variation sequences" in caplog.text
    with pytest.raises(FontMissing):  # and never without permission
        find_font(env={}, ipamj_paths=[plain], fc=lambda _pattern: plain, allow_fallback=False)


def test_wrapping_fits_the_width_and_keeps_text_whole(font: GlyphFont) -> None:
    text = "甲府市丸の内一丁目18番1号、葛\U000e0102西辻\U000e0102様方。" * 6
    lines = wrap_text(font, text, 10.5, 120)
    assert len(lines) > 5
    assert "".join(lines) == text
    for line in lines:
        assert font.shape(line).advance * 10.5 / font.upem <= 120 + 1e-6
        assert not line.startswith(("、", "。", "\U000e0102"))  # kinsoku, no split sequence
    # digits stay together: "18" is never split across lines
    assert not any(a.endswith("1") and b.startswith("8") for a, b in itertools.pairwise(lines))
