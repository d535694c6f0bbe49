"""The back side the centre adds to each front page, and reading it back.

The one implementation: the centre adds backs with :func:`add_back_pages`, and every verifier
(the centre's service, ``konbini verify``, the conformance suite) reads them with
:func:`check_back`.

Layout, in pixels of an A4 page at :data:`BACK_DPI` (150 dpi, 1240 × 1754), drawn at any multiple
of it (:data:`PRINT_DPI` for paper):

* header band (``y < SCRAMBLE_TOP``): the key id and page number drawn with our bitmap font
  (no PDF text), and at the top right the marker QR code (:func:`marker_text`)
  ``KKB1:<key id>:<page index>:<block>:<left>:<top>:<width>:<height>``: the key, the page, and
  the scramble area's block size and box in BACK_DPI pixels, so a verifier needs nothing but the
  published keys to read it; it also registers the page by the QR's position;
* the scramble area (``SCRAMBLE_SIZE``, an exact grid of 16-pixel blocks): the front, area-resized
  to that size (:func:`scramble_source`) and shuffled under the centre key, each pixel repeated
  at higher resolutions so the blocks stay sharp;
* everywhere else, the copy-void background (けん制文字), drawn at the output resolution: 1-pixel
  dots on a 4-pixel pitch, and in the latent word "COPY" 2 × 2 dots on an 8-pixel pitch. Both
  cover 1/16 of the paper, so the print looks an even grey; a copier drops the fine dots (at
  300 dpi, 0.08 mm) and keeps the coarse ones, and the word appears on the copy.
"""

from __future__ import annotations

import functools
import io
import math
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pikepdf
from PIL import Image

from konbini.docimage.bitmapfont import text_mask
from konbini.docimage.errors import BackSideUnreadable
from konbini.docimage.geometry import Box
from konbini.docimage.pdfimage import image_page
from konbini.docimage.qr import QUIET_ZONE_MODULES, find_qr_codes, qr_image, qr_matrix
from konbini.docimage.raster import rasterize_pages
from konbini.docimage.register import MM_PER_INCH, PagePlacement
from konbini.docimage.resample import resize_area
from konbini.docimage.scramble import (
    CELL,
    DEFAULT_BLOCK,
    Comparison,
    compare_front_back,
    scramble,
)
from konbini.docimage.scramble import unscramble as unscramble_blocks

BACK_DPI = 150  # the layout's own resolution; the scramble grid is always this one
PRINT_DPI = 300  # what the centre prints: fine enough for a copy-void screen a copier drops
PAGE_SIZE = (1754, 1240)  # rows, columns: A4 at BACK_DPI
BLOCK = DEFAULT_BLOCK
SCRAMBLE_TOP = 176
SCRAMBLE_LEFT = 76
SCRAMBLE_SIZE = (96 * BLOCK, 68 * BLOCK)  # 1536 × 1088: the A4 aspect within 0.2 %
SCRAMBLE_BOX = Box(
    SCRAMBLE_LEFT, SCRAMBLE_TOP, SCRAMBLE_LEFT + SCRAMBLE_SIZE[1], SCRAMBLE_TOP + SCRAMBLE_SIZE[0]
)
QR_PREFIX = "KKB1"
QR_MODULE = 4  # pixels per module at BACK_DPI
QR_TOP = 16
QR_RIGHT = PAGE_SIZE[1] - SCRAMBLE_LEFT
LABEL_TOP = 40
LABEL_SCALE = 5  # 15 × 25 pixel glyphs (2.5 × 4.2 mm)
LATENT_WORD = "COPY"
LATENT_SCALE = 16  # font pixel of the latent word, in BACK_DPI pixels
KEY_ID_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,32}")
_MARKER = re.compile(rf"{QR_PREFIX}:([A-Za-z0-9._-]{{1,32}}):(\d{{1,4}})((?::\d{{1,4}}){{5}})")


@dataclass(frozen=True)
class Marker:
    """The content of a back's QR code: key id, 0-based page index, and the scramble grid (block
    size and box in BACK_DPI pixels)."""

    key_id: str
    page_index: int
    block: int = BLOCK
    region: Box = SCRAMBLE_BOX


@dataclass(frozen=True)
class BackSide:
    """What :func:`read_back` finds: the key id and page index from the back's QR code, the
    block size, and the scramble area resampled to its BACK_DPI size (still scrambled)."""

    key_id: str
    page_index: int
    scrambled: np.ndarray
    block: int = BLOCK


@dataclass(frozen=True)
class _Located:
    marker: Marker
    shift: tuple[float, float]  # the page's offset from the layout (rows, columns; BACK_DPI px)
    scale: float  # image pixels per BACK_DPI pixel


def _check_key_id(key_id: str) -> None:
    if not KEY_ID_PATTERN.fullmatch(key_id):
        raise ValueError("a key id is 1–32 of A–Z a–z 0–9 . _ -")


def marker_text(
    key_id: str, page_index: int, block: int = BLOCK, region: Box = SCRAMBLE_BOX
) -> str:
    """The content of the back's QR code."""
    _check_key_id(key_id)
    if page_index < 0:
        raise ValueError("page_index must be non-negative")
    return (
        f"{QR_PREFIX}:{key_id}:{page_index}:{block}:"
        f"{region.left}:{region.top}:{region.width}:{region.height}"
    )


def parse_marker(text: str) -> Marker:
    """The :class:`Marker` in a back QR's content; raises :class:`BackSideUnreadable`."""
    match = _MARKER.fullmatch(text)
    if not match:
        raise BackSideUnreadable("the QR code is not a back-side marker")
    block, left, top, width, height = (int(v) for v in match.group(3)[1:].split(":"))
    region = Box(left, top, left + width, top + height)
    # The comparison works on CELL-pixel cells; the grid must be whole blocks inside the page.
    if block < CELL or block % CELL or width % block or height % block or min(width, height) == 0:
        raise BackSideUnreadable("the back's marker describes an impossible scramble grid")
    if region.right > PAGE_SIZE[1] or region.bottom > PAGE_SIZE[0]:
        raise BackSideUnreadable("the back's marker places the scramble area off the page")
    return Marker(match.group(1), int(match.group(2)), block, region)


def _qr_origin(text: str) -> tuple[int, int]:
    """Top-left pixel of the QR's first module (inside the quiet zone) at BACK_DPI."""
    modules = qr_matrix(text).shape[0]
    left = QR_RIGHT - (modules + 2 * QUIET_ZONE_MODULES) * QR_MODULE
    return QR_TOP + QUIET_ZONE_MODULES * QR_MODULE, left + QUIET_ZONE_MODULES * QR_MODULE


def marker_placement(text: str) -> PagePlacement | None:
    """Where the back's marker QR with content ``text`` sits on the page (for registering a scan
    with :func:`konbini.docimage.register.register_scan`); None for any other QR code."""
    if not _MARKER.fullmatch(text):
        return None
    top, left = _qr_origin(text)
    mm_per_px = MM_PER_INCH / BACK_DPI
    return PagePlacement(left * mm_per_px, top * mm_per_px, QR_MODULE * mm_per_px)


def scramble_source(front: np.ndarray, size: tuple[int, int] = SCRAMBLE_SIZE) -> np.ndarray:
    """The front page image (any resolution) resized to the scramble grid: what the back carries
    shuffled, and what a verifier compares the unscrambled back with."""
    if front.ndim != 2 or front.dtype != np.uint8:
        raise ValueError("expected a 2-D uint8 grayscale page image")
    return resize_area(front, *size)


@functools.cache  # the same page size every time; read-only so that sharing it is safe
def copy_void_pattern(rows: int, cols: int, word_scale: int = LATENT_SCALE) -> np.ndarray:
    """The background pattern (True = ink) with the latent word tiled over it; the dots are in
    pixels of the output, the word's font pixel is ``word_scale`` output pixels."""
    y = np.arange(rows)[:, None]
    x = np.arange(cols)[None, :]
    fine = (y % 4 == 0) & (x % 4 == 0)
    coarse = (y % 8 < 2) & (x % 8 < 2)
    word = text_mask(LATENT_WORD + " ", word_scale)
    tiled = np.tile(word, (-(-rows // word.shape[0]), -(-cols // word.shape[1])))[:rows, :cols]
    pattern = np.where(tiled, coarse, fine)
    pattern.flags.writeable = False
    return pattern


@functools.cache
def _ground(factor: int) -> np.ndarray:
    rows, cols = PAGE_SIZE
    pattern = copy_void_pattern(rows * factor, cols * factor, LATENT_SCALE * factor)
    ground = np.where(pattern, 0, 255).astype(np.uint8)
    ground.flags.writeable = False
    return ground


def _paste(page: np.ndarray, piece: np.ndarray, top: int, left: int, factor: int) -> None:
    """Draw ``piece`` (BACK_DPI pixels) at (top, left) of ``page`` (``factor`` × BACK_DPI)."""
    if factor > 1:
        piece = np.repeat(np.repeat(piece, factor, axis=0), factor, axis=1)
    top, left = top * factor, left * factor
    page[top : top + piece.shape[0], left : left + piece.shape[1]] = piece


def back_image(
    front: np.ndarray, key_id: str, key: bytes, page_index: int = 0, dpi: int = BACK_DPI
) -> np.ndarray:
    """The back of ``front`` (a page image at any resolution) as a uint8 array at ``dpi``, a
    multiple of BACK_DPI (1754 × 1240 at BACK_DPI)."""
    if dpi % BACK_DPI or dpi <= 0:
        raise ValueError(f"dpi must be a multiple of {BACK_DPI}")
    factor = dpi // BACK_DPI
    text = marker_text(key_id, page_index)
    page = _ground(factor).copy()
    # A white panel under the label, the label on it; then the QR (its quiet zone is white).
    mask = text_mask(f"KEY {key_id}  PAGE {page_index + 1}", LABEL_SCALE)
    panel = Box(SCRAMBLE_LEFT, LABEL_TOP, SCRAMBLE_LEFT + mask.shape[1], LABEL_TOP + mask.shape[0])
    panel = panel.expanded(LABEL_SCALE * 2)
    label = np.full((panel.height, panel.width), 255, dtype=np.uint8)
    margin = LABEL_SCALE * 2
    label[margin : margin + mask.shape[0], margin : margin + mask.shape[1]][mask] = 0
    _paste(page, label, panel.top, panel.left, factor)
    qr = qr_image(text, QR_MODULE)
    _paste(page, qr, QR_TOP, QR_RIGHT - qr.shape[1], factor)
    _paste(page, scramble(scramble_source(front), key, BLOCK), SCRAMBLE_TOP, SCRAMBLE_LEFT, factor)
    return page


def make_back_page(
    front: np.ndarray, key_id: str, key: bytes, *, page_index: int = 0, dpi: int = BACK_DPI
) -> Image.Image:
    """:func:`back_image` as a grayscale PIL image."""
    return Image.fromarray(back_image(front, key_id, key, page_index, dpi))


def add_back_pages(pdf: bytes, key_id: str, key: bytes, dpi: int = PRINT_DPI) -> bytes:
    """``pdf`` with each page followed by its back: image-only pages (no fonts, no text
    operators) of the same size as the front, drawn at ``dpi``. The front pages are kept as
    they are (each front is rasterized once, at BACK_DPI, for its scramble)."""
    _check_key_id(key_id)
    fronts = rasterize_pages(pdf, BACK_DPI)
    document = pikepdf.open(io.BytesIO(pdf))
    with document:
        for index in reversed(range(len(fronts))):
            box = [float(v) for v in document.pages[index].mediabox]
            size = (box[2] - box[0], box[3] - box[1])
            back = back_image(fronts[index], key_id, key, index, dpi)
            document.pages.insert(index + 1, image_page(document, back, size))
        out = io.BytesIO()
        document.save(out)
    return out.getvalue()


def _locate(back: np.ndarray) -> _Located:
    if back.ndim != 2:
        raise ValueError("expected a 2-D grayscale page image")
    markers = [q for q in find_qr_codes(back) if q.text.startswith(QR_PREFIX + ":")]
    if len(markers) != 1:
        raise BackSideUnreadable(f"{len(markers)} back-side marker QR codes found (one expected)")
    found = markers[0]
    marker = parse_marker(found.text)
    scale = back.shape[1] / PAGE_SIZE[1]
    return _Located(marker, _registration(back, found.box, found.text, scale), scale)


def _cut(back: np.ndarray, located: _Located) -> BackSide:
    marker, scale = located.marker, located.scale
    region = marker.region
    top = (region.top + located.shift[0]) * scale
    left = (region.left + located.shift[1]) * scale
    cut = _crop(back, top, left, round(region.height * scale), round(region.width * scale))
    if cut.shape[0] > region.height and cut.shape[1] > region.width:
        cut = resize_area(cut, region.height, region.width)
    elif cut.shape != (region.height, region.width):  # a scan a little under BACK_DPI
        resized = Image.fromarray(cut).resize((region.width, region.height), Image.Resampling.BOX)
        cut = np.asarray(resized, dtype=np.uint8)
    return BackSide(marker.key_id, marker.page_index, cut, marker.block)


def read_back(back: np.ndarray) -> BackSide:
    """Find the marker QR on a back page image (any resolution, the whole page) and cut out the
    scramble area the marker describes, registered by the QR's position to a fraction of a
    pixel. Raises :class:`BackSideUnreadable`."""
    return _cut(back, _locate(back))


def _crop(image: np.ndarray, top: float, left: float, rows: int, cols: int) -> np.ndarray:
    """``rows`` × ``cols`` pixels of ``image`` from a fractional position (bilinear), so that a
    registration good to a fraction of a pixel is not rounded to a whole one."""
    y0, x0 = math.floor(top), math.floor(left)
    fy, fx = top - y0, left - x0
    if y0 < 0 or x0 < 0 or y0 + rows + 1 > image.shape[0] or x0 + cols + 1 > image.shape[1]:
        raise BackSideUnreadable("the scramble area lies outside the image")
    patch = image[y0 : y0 + rows + 1, x0 : x0 + cols + 1].astype(np.float32)
    rows_mixed = patch[:-1] * (1 - fy) + patch[1:] * fy
    mixed = rows_mixed[:, :-1] * (1 - fx) + rows_mixed[:, 1:] * fx
    return np.clip(np.rint(mixed), 0, 255).astype(np.uint8)


def _dark_centroid(region: np.ndarray) -> tuple[float, float] | None:
    # Weighted by darkness below the window's paper white: anti-aliased edge pixels count for
    # what they cover, which a threshold would round to a whole pixel.
    weight = float(region.max()) - region.astype(np.float64)
    total = float(weight.sum())
    if total <= 0.0:
        return None
    return (
        float(weight.sum(axis=1) @ np.arange(region.shape[0])) / total,
        float(weight.sum(axis=0) @ np.arange(region.shape[1])) / total,
    )


def _registration(back: np.ndarray, found: Box, text: str, scale: float) -> tuple[float, float]:
    """How far (rows, columns, in BACK_DPI pixels) the page sits from the layout, measured on the
    QR code. The detector's box is only good to a pixel, which would misalign every block; the
    centroid of the QR's dark modules, compared with the same QR drawn at its place in the layout,
    is good to a fraction of a pixel."""
    expected_top, expected_left = _qr_origin(text)
    coarse_y = found.top / scale - expected_top
    coarse_x = found.left / scale - expected_left
    modules = qr_matrix(text)
    size = modules.shape[0] * QR_MODULE
    # A window of the QR plus half its quiet zone: wide enough for the detector's error, still
    # inside the white quiet zone so that no background dot counts.
    pad = QUIET_ZONE_MODULES * QR_MODULE // 2
    top = round((expected_top + coarse_y - pad) * scale)
    left = round((expected_left + coarse_x - pad) * scale)
    bottom = round((expected_top + coarse_y + size + pad) * scale)
    right = round((expected_left + coarse_x + size + pad) * scale)
    if top < 0 or left < 0 or bottom > back.shape[0] or right > back.shape[1]:
        return coarse_y, coarse_x
    centroid = _dark_centroid(back[top:bottom, left:right])
    if centroid is None:
        return coarse_y, coarse_x
    ys, xs = np.nonzero(modules)
    # Pixel centres: the found centroid (in ``back`` pixels) and the drawn one (in layout
    # pixels); a module's centroid is its centre, whatever QR_MODULE is.
    found_y = (top + centroid[0] + 0.5) / scale
    found_x = (left + centroid[1] + 0.5) / scale
    return (
        found_y - (expected_top + (ys.mean() + 0.5) * QR_MODULE),
        found_x - (expected_left + (xs.mean() + 0.5) * QR_MODULE),
    )


def unscramble_back(back: BackSide, key: bytes) -> np.ndarray:
    """The scramble area of ``back`` put back in order under ``key``."""
    return unscramble_blocks(back.scrambled, key, back.block)


def check_back(
    front: np.ndarray, back: np.ndarray, key_for: Callable[[str], bytes]
) -> tuple[BackSide, Comparison]:
    """Read ``back``, unscramble it with the key ``key_for(key_id)`` returns (it may raise to
    refuse an unknown key id), and compare it with ``front`` (both whole-page images, any
    resolution).

    There is no search over crop offsets: tried on a page whose issue number had one digit
    changed, half-pixel nudges of the crop found one that matched, so a search would let small
    edits through. The QR registration is good to a fraction of a pixel and the comparison
    already tolerates a pixel of residual shift.
    """
    side = read_back(back)
    key = key_for(side.key_id)
    rows, cols = side.scrambled.shape
    source = scramble_source(front, (rows, cols))
    return side, compare_front_back(source, unscramble_back(side, key), side.block)
