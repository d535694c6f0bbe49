"""konbini.docimage on certificate-like pages: front fingerprint, block scramble, back side."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pikepdf
import pytest
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from konbini.docimage import (
    MATCH_THRESHOLD,
    BackSideUnreadable,
    Box,
    ImageShapeMismatch,
    add_back_pages,
    check_back,
    compare_front_back,
    find_qr_codes,
    fingerprint_distance,
    front_fingerprint,
    page_count,
    qr_image,
    rasterize_page,
    rasterize_pages,
    read_back,
    scramble,
    scramble_source,
    unscramble,
    unscramble_back,
)
from konbini.docimage.backside import (
    BACK_DPI,
    LABEL_SCALE,
    LABEL_TOP,
    PAGE_SIZE,
    SCRAMBLE_BOX,
    SCRAMBLE_LEFT,
    SCRAMBLE_SIZE,
    SCRAMBLE_TOP,
    Marker,
    back_image,
    copy_void_pattern,
    make_back_page,
    marker_text,
    parse_marker,
)
from konbini.docimage.bitmapfont import text_mask
from konbini.docimage.fingerprint import FINGERPRINT_LENGTH
from konbini.docimage.pdfimage import images_to_pdf
from konbini.docimage.scramble import bench_scramble, derive_shuffle

FONT = Path("/usr/share/fonts/truetype/ipamj/ipamjm.ttf")
NAME = "YAMADA TARO"
NUMBER = "2026-004711"
KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
NAME_TOP = 500  # pixels at 300 dpi: the first line of the body carries the name


def draw_front(name: str = NAME, number: str = NUMBER, points: float = 11) -> np.ndarray:
    """A 300 dpi A4 residence-record-like page (about 500 characters) as a uint8 array; only the
    first occurrence of the name and the issue number take the arguments."""
    if not FONT.exists():
        pytest.skip("IPAmj Mincho is not installed")
    image = Image.new("L", (2480, 3508), 255)
    draw = ImageDraw.Draw(image)
    size = round(points * 300 / 72)
    font = ImageFont.truetype(str(FONT), size)
    draw.text((700, 250), "住民票の写し", font=ImageFont.truetype(str(FONT), 80), fill=0)
    y = NAME_TOP
    for block in range(4):
        lines = [
            f"氏名  {name if block == 0 else NAME}",
            "生年月日  昭和55年4月1日",
            "住所  東京都千代田区霞が関一丁目2番3号",
            f"発行番号  {number if block == 0 else NUMBER}",
            "本籍  東京都千代田区千代田1番",
            "筆頭者  山田 一郎",
            "住民となった年月日  平成20年5月10日",
            "前住所  大阪府大阪市北区梅田3丁目4番5号",
        ]
        for line in lines:
            draw.text((250, y), line, font=font, fill=0)
            y += int(size * 1.8)
    draw.rectangle((200, NAME_TOP - 50, 2280, y + 20), outline=0, width=3)
    draw.text((250, y + 100), "この写しは住民票の原本と相違ないことを証明する。", font=font, fill=0)
    return np.asarray(image)


def rescan(image: np.ndarray, seed: int, sigma: float = 6.0, blur: float = 0.8) -> np.ndarray:
    """A mild scanner: Gaussian blur of ``blur`` pixels, then Gaussian noise of ``sigma`` levels."""
    blurred = np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(blur)))
    noise = np.random.default_rng(seed).normal(0.0, sigma, image.shape)
    return np.clip(blurred + noise, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def front_pdf() -> bytes:
    return images_to_pdf([draw_front()])


@pytest.fixture(scope="module")
def renders(front_pdf: bytes) -> dict[int, np.ndarray]:
    return {dpi: rasterize_page(front_pdf, 0, dpi) for dpi in (150, 300)}


@pytest.fixture(scope="module")
def edited_name_150() -> np.ndarray:
    # "YAMADA TARO" → "SUZUKI JIRO": a changed word of 11 characters at 11 pt.
    return rasterize_page(images_to_pdf([draw_front(name="SUZUKI JIRO")]), 0, 150)


@pytest.fixture(scope="module")
def with_back(front_pdf: bytes) -> bytes:
    return add_back_pages(front_pdf, "sk0001", KEY)


@pytest.fixture(scope="module")
def with_back_150(with_back: bytes) -> list[np.ndarray]:
    return rasterize_pages(with_back, 150)


# --- front fingerprint -------------------------------------------------------------------------


def test_fingerprint_is_compact_and_deterministic(renders: dict[int, np.ndarray]) -> None:
    first = front_fingerprint(renders[150])
    assert len(first) == FINGERPRINT_LENGTH == 64
    assert front_fingerprint(renders[150].copy()) == first
    assert fingerprint_distance(first, first) == 0


def test_fingerprint_same_pdf_at_150_and_300_dpi(renders: dict[int, np.ndarray]) -> None:
    at_150, at_300 = front_fingerprint(renders[150]), front_fingerprint(renders[300])
    assert fingerprint_distance(at_150, at_300) <= 8  # measured 3


@pytest.mark.parametrize(("dpi", "blur"), [(300, 0.8), (150, 0.6)])
def test_fingerprint_tolerates_a_mild_rescan(
    renders: dict[int, np.ndarray], dpi: int, blur: float
) -> None:
    reference = front_fingerprint(renders[300])
    for seed in range(2):
        scanned = rescan(renders[dpi], seed, 6.0, blur)
        distance = fingerprint_distance(reference, front_fingerprint(scanned))
        assert distance <= 15  # measured 6–11
        assert distance < MATCH_THRESHOLD


def test_fingerprint_sees_a_changed_name(
    renders: dict[int, np.ndarray], edited_name_150: np.ndarray
) -> None:
    genuine = front_fingerprint(renders[150])
    distance = fingerprint_distance(genuine, front_fingerprint(edited_name_150))
    assert distance > MATCH_THRESHOLD  # measured 57
    noise = fingerprint_distance(genuine, front_fingerprint(rescan(renders[150], 7, 6.0, 0.6)))
    assert distance > 3 * noise


def test_fingerprint_sees_a_changed_number() -> None:
    # A 10-digit number replaced by another at 12 pt.
    before = rasterize_page(images_to_pdf([draw_front(number="1357913579", points=12)]), 0, 150)
    after = rasterize_page(images_to_pdf([draw_front(number="8642086420", points=12)]), 0, 150)
    distance = fingerprint_distance(front_fingerprint(before), front_fingerprint(after))
    assert distance > MATCH_THRESHOLD  # measured 26


def test_fingerprint_excludes_the_seal_area() -> None:
    # The municipality digests the page before the QR exists, excluding where it will be; the
    # verifier digests the printed page, excluding the QR it found a pixel or two off.
    page = draw_front()
    seal = qr_image("KONBINI-SEAL-" + "7" * 120, 4)
    top, left = 3000, 1900
    module = 4 * 4  # the quiet zone, in pixels
    side = seal.shape[0] - 2 * module
    planned = Box(left + module, top + module, left + module + side, top + module + side)
    printed = page.copy()
    printed[top : top + seal.shape[0], left : left + seal.shape[1]] = seal
    image = rasterize_page(images_to_pdf([printed]), 0, 150)
    found = find_qr_codes(image)
    assert len(found) == 1
    before_seal = front_fingerprint(
        rasterize_page(images_to_pdf([page]), 0, 150), exclude=[planned.scaled(0.5)]
    )
    assert fingerprint_distance(before_seal, front_fingerprint(image, exclude=[found[0].box])) <= 5
    # Without the exclusion the seal itself would dominate the digest.
    assert fingerprint_distance(before_seal, front_fingerprint(image)) > MATCH_THRESHOLD


def test_fingerprint_distance_rejects_a_wrong_length() -> None:
    with pytest.raises(ValueError):
        fingerprint_distance(bytes(64), bytes(63))


# --- block scramble ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def noise_page() -> np.ndarray:
    return np.random.default_rng(3).integers(0, 256, (1754, 1240), dtype=np.uint8)


def test_scramble_round_trip_is_exact(noise_page: np.ndarray) -> None:
    scrambled = scramble(noise_page, KEY)
    assert scrambled.shape == noise_page.shape
    assert np.array_equal(unscramble(scrambled, KEY), noise_page)


def test_scramble_moves_every_block_but_keeps_the_remainder(noise_page: np.ndarray) -> None:
    scrambled = scramble(noise_page, KEY)
    grid = (1754 // 16, 1240 // 16)
    blocks = lambda a: a[: grid[0] * 16, : grid[1] * 16].reshape(grid[0], 16, grid[1], 16)  # noqa: E731
    same = (blocks(scrambled) == blocks(noise_page)).all(axis=(1, 3))
    assert same.mean() < 0.01  # a block stays only if it maps to itself unturned
    # The strips beyond the last whole block (8 and 10 pixels) are left as they were.
    assert np.array_equal(scrambled[grid[0] * 16 :], noise_page[grid[0] * 16 :])
    assert np.array_equal(scrambled[:, grid[1] * 16 :], noise_page[:, grid[1] * 16 :])


def test_a_different_key_does_not_unscramble(noise_page: np.ndarray) -> None:
    wrong = unscramble(scramble(noise_page, KEY), OTHER_KEY)
    assert (wrong != noise_page).mean() > 0.9


def test_shuffle_is_a_keyed_permutation_per_geometry() -> None:
    shuffle = derive_shuffle(KEY, 1754, 1240)
    assert sorted(shuffle.perm.tolist()) == list(range(109 * 77))
    assert set(shuffle.turn.tolist()) == set(range(8))
    again = derive_shuffle(bytes(KEY), 1754, 1240)
    assert np.array_equal(again.perm, shuffle.perm)
    assert not np.array_equal(derive_shuffle(OTHER_KEY, 1754, 1240).perm, shuffle.perm)
    other_height = derive_shuffle(KEY, 1760, 1240)
    assert not np.array_equal(other_height.perm[: shuffle.perm.size], shuffle.perm)
    with pytest.raises(ValueError):
        derive_shuffle(b"", 1754, 1240)


def test_bench_scramble_reports_milliseconds() -> None:
    scramble_ms, unscramble_ms = bench_scramble(repeat=5)
    assert 0 < scramble_ms < 250
    assert 0 < unscramble_ms < 250


def test_compare_front_back_needs_equal_sizes() -> None:
    with pytest.raises(ImageShapeMismatch):
        compare_front_back(np.zeros((32, 32), np.uint8), np.zeros((32, 48), np.uint8))


def test_compare_front_back_localises_a_word_drawn_over_the_front(
    renders: dict[int, np.ndarray],
) -> None:
    front = scramble_source(renders[150])
    assert compare_front_back(front, front).ok
    forged = Image.fromarray(front)
    ImageDraw.Draw(forged).text((600, 900), "PAID 0 YEN", font=ImageFont.load_default(24), fill=0)
    result = compare_front_back(np.asarray(forged), front)
    assert not result.ok
    rows = {r for r, _ in result.changed_blocks}
    cols = {c for _, c in result.changed_blocks}
    assert min(rows) >= 900 // 16 - 1 and max(rows) <= (900 + 32) // 16 + 1
    assert min(cols) >= 600 // 16 - 1 and max(cols) <= (600 + 200) // 16 + 1


# --- back side ---------------------------------------------------------------------------------


def test_add_back_pages_interleaves_image_only_backs(front_pdf: bytes) -> None:
    two_pages = images_to_pdf([draw_front(), draw_front(name="SATO HANAKO")])
    out = add_back_pages(two_pages, "sk0002", KEY)
    assert page_count(out) == 2 * page_count(two_pages)
    with pikepdf.open(io.BytesIO(out)) as document:
        for back in (document.pages[1], document.pages[3]):
            operators = {str(op) for _, op in pikepdf.parse_content_stream(back)}
            assert operators <= {"q", "cm", "Do", "Q"}
            assert "/Font" not in back.obj.Resources
            assert [float(v) for v in back.mediabox] == [0, 0, 595.28, 841.89]
    images = rasterize_pages(out, 150)
    for index in (0, 1):
        side = read_back(images[2 * index + 1])
        assert (side.key_id, side.page_index) == ("sk0002", index)
        assert check_back(images[2 * index], images[2 * index + 1], lambda _: KEY)[1].ok
    # Pages must not be paired with the wrong back.
    assert not check_back(images[0], images[3], lambda _: KEY)[1].ok


@pytest.mark.parametrize("dpi", [150, 300])
def test_genuine_back_matches_its_front(with_back: bytes, dpi: int) -> None:
    front, back = rasterize_pages(with_back, dpi)
    side, result = check_back(front, back, {"sk0001": KEY}.__getitem__)
    assert side.key_id == "sk0001"
    assert result.ok, result.changed_blocks


def test_rescanned_and_shifted_back_still_matches(with_back_150: list[np.ndarray]) -> None:
    front, back = with_back_150
    # The scanner put the sheet 3 pixels lower and 2 to the left.
    shifted = np.full_like(back, 255)
    shifted[3:, :-2] = back[:-3, 2:]
    _, result = check_back(rescan(front, 1, 6.0, 0.6), rescan(shifted, 2, 6.0, 0.6), lambda _: KEY)
    assert result.ok, result.changed_blocks


def test_an_edited_front_does_not_match_the_back(
    with_back_150: list[np.ndarray], edited_name_150: np.ndarray
) -> None:
    genuine, back = with_back_150
    _, result = check_back(edited_name_150, back, lambda _: KEY)
    assert not result.ok
    # The changed blocks lie on the name's line (grid rows in the scramble area's pixels).
    changed = np.argwhere(edited_name_150 != genuine)
    top, bottom = changed[:, 0].min(), changed[:, 0].max()
    scale = SCRAMBLE_SIZE[0] / PAGE_SIZE[0]
    for row, _ in result.changed_blocks:
        assert top * scale - 16 <= row * 16 <= bottom * scale + 16


def test_a_changed_digit_is_caught_by_the_back(with_back_150: list[np.ndarray]) -> None:
    _, back = with_back_150
    one_digit = rasterize_page(images_to_pdf([draw_front(number="2026-004717")]), 0, 150)
    _, result = check_back(one_digit, back, lambda _: KEY)
    assert not result.ok


def test_the_wrong_key_does_not_match(with_back_150: list[np.ndarray]) -> None:
    front, back = with_back_150
    assert not check_back(front, back, lambda _: OTHER_KEY)[1].ok


def test_unscrambled_back_is_the_front(with_back_150: list[np.ndarray]) -> None:
    front, back = with_back_150
    side = read_back(back)
    source = scramble_source(front).astype(np.int16)
    restored = unscramble_back(side, KEY).astype(np.int16)
    scrambled = side.scrambled.astype(np.int16)

    def block_diffs(image: np.ndarray) -> np.ndarray:
        return np.abs(image - source).reshape(96, 16, 68, 16).mean(axis=(1, 3))

    # Printing and rendering blur stroke edges a little; the order of the blocks is restored.
    assert np.abs(restored - source).mean() < 4
    assert np.abs(scrambled - source).mean() > 3 * np.abs(restored - source).mean()
    assert (block_diffs(restored) > 20).mean() < 0.06
    assert (block_diffs(scrambled) > 20).mean() > 0.15


def test_back_layout_prints_key_id_and_marker(renders: dict[int, np.ndarray]) -> None:
    back = back_image(renders[150], "sk0042", KEY, page_index=2)
    assert back.shape == PAGE_SIZE
    label = text_mask("KEY sk0042  PAGE 3", LABEL_SCALE)
    height, width = label.shape
    drawn = back[LABEL_TOP : LABEL_TOP + height, SCRAMBLE_LEFT : SCRAMBLE_LEFT + width]
    assert np.array_equal(drawn == 0, label)
    assert [q.text for q in find_qr_codes(back)] == [marker_text("sk0042", 2)]
    rows, cols = SCRAMBLE_SIZE
    area = back[SCRAMBLE_TOP : SCRAMBLE_TOP + rows, SCRAMBLE_LEFT : SCRAMBLE_LEFT + cols]
    assert np.array_equal(area, scramble(scramble_source(renders[150]), KEY))


def test_make_back_page_scales_to_300_dpi(renders: dict[int, np.ndarray]) -> None:
    image = make_back_page(renders[300], "sk0001", KEY, dpi=2 * BACK_DPI)
    assert image.size == (2480, 3508)
    assert read_back(np.asarray(image)).key_id == "sk0001"
    with pytest.raises(ValueError):
        make_back_page(renders[150], "sk0001", KEY, dpi=200)


def test_copy_void_word_survives_a_copier_that_drops_fine_dots() -> None:
    pattern = copy_void_pattern(400, 600)
    word = text_mask("COPY ", 16)  # 80 × 304 pixels, tiled over the page
    latent = np.tile(word, (5, 2))[:400, :600]
    # To the eye both areas are the same grey: 1/16 of the paper is ink.
    assert pattern[latent].mean() == pytest.approx(1 / 16, abs=0.01)
    assert pattern[~latent].mean() == pytest.approx(1 / 16, abs=0.01)
    # A copier at half the resolution averages 2 × 2 pixels and thresholds: single dots fade out.
    ink = pattern.reshape(200, 2, 300, 2).mean(axis=(1, 3)) > 0.5
    coarse_latent = latent.reshape(200, 2, 300, 2).all(axis=(1, 3))
    coarse_background = ~latent.reshape(200, 2, 300, 2).any(axis=(1, 3))
    assert ink[coarse_latent].mean() == pytest.approx(1 / 16, abs=0.01)  # every coarse dot stays
    assert not ink[coarse_background].any()


def test_read_back_rejects_a_page_without_marker(renders: dict[int, np.ndarray]) -> None:
    with pytest.raises(BackSideUnreadable):
        read_back(renders[150])


@pytest.mark.parametrize("key_id", ["", "a:b", "鍵", "x" * 33])
def test_key_ids_are_restricted(key_id: str, renders: dict[int, np.ndarray]) -> None:
    with pytest.raises(ValueError):
        back_image(renders[150], key_id, KEY)


def test_key_for_gets_the_printed_key_id(with_back_150: list[np.ndarray]) -> None:
    asked: list[str] = []

    def key_for(key_id: str) -> bytes:
        asked.append(key_id)
        return KEY

    lookup: Callable[[str], bytes] = key_for
    check_back(*with_back_150, lookup)
    assert asked == ["sk0001"]


def test_marker_describes_the_scramble_grid() -> None:
    text = marker_text("sk0007", 1)
    assert text == "KKB1:sk0007:1:16:76:176:1088:1536"
    assert parse_marker(text) == Marker("sk0007", 1, 16, SCRAMBLE_BOX)
    for bad in ("KKB1:sk0007:1", "KKB1:sk0007:1:6:76:176:1088:1536",  # block not cells of 4
                "KKB1:sk0007:1:16:76:176:1000:1536",  # not whole blocks
                "KKB1:sk0007:1:16:900:176:1088:1536"):  # off the page
        with pytest.raises(BackSideUnreadable):
            parse_marker(bad)


def test_back_is_read_from_the_grid_its_marker_names(renders: dict[int, np.ndarray]) -> None:
    # A back drawn with a smaller scramble area than the layout's: read by the marker alone.
    small = Box(76, 176, 76 + 64 * 16, 176 + 90 * 16)
    back = back_image(renders[150], "sk0001", KEY)
    page = np.full_like(back, 255)
    page[:SCRAMBLE_TOP] = back[:SCRAMBLE_TOP]
    qr = qr_image(marker_text("sk0001", 0, 16, small), 4)
    page[16 : 16 + qr.shape[0], 1164 - qr.shape[1] : 1164] = qr
    shuffled = scramble(scramble_source(renders[150], (small.height, small.width)), KEY)
    page[small.top : small.bottom, small.left : small.right] = shuffled
    side, result = check_back(renders[150], page, lambda _: KEY)
    assert side.scrambled.shape == (small.height, small.width)
    assert result.ok, result.changed_blocks


def test_print_resolution_back_has_fine_dots_and_the_same_layout(
    renders: dict[int, np.ndarray],
) -> None:
    at_150 = back_image(renders[150], "sk0001", KEY)
    at_300 = back_image(renders[150], "sk0001", KEY, dpi=300)
    assert at_300.shape == (3508, 2480)
    # The layout (label, marker, scramble) is the 150 dpi one with each pixel doubled...
    area = (slice(SCRAMBLE_TOP * 2, (SCRAMBLE_TOP + 64) * 2), slice(SCRAMBLE_LEFT * 2, 400))
    doubled = np.repeat(np.repeat(at_150, 2, axis=0), 2, axis=1)
    assert np.array_equal(at_300[area], doubled[area])
    # ...while the copy-void ground is drawn at 300 dpi: single-pixel dots, 1/16 of the paper.
    ground = at_300[3440:3500, 40:2440] == 0
    assert ground.mean() == pytest.approx(1 / 16, abs=0.01)
    lone = ground[1:-1, 1:-1] & ~ground[:-2, 1:-1] & ~ground[1:-1, :-2] & ~ground[1:-1, 2:]
    assert lone.sum() > 1000


def test_check_back_lets_key_for_refuse_an_unknown_key(with_back_150: list[np.ndarray]) -> None:
    def unknown(key_id: str) -> bytes:
        raise LookupError(key_id)

    with pytest.raises(LookupError, match="sk0001"):
        check_back(*with_back_150, unknown)
