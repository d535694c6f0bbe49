"""The back side the centre adds to each front page, and reading it back.

Layout, in pixels of an A4 page at 150 dpi (1240 × 1754); other resolutions scale it:

* header band (``y < SCRAMBLE_TOP``): the key id and page number drawn with our bitmap font
  (no PDF text), and at the top right a QR code ``KKB1:<key id>:<page index>`` that the verifier
  reads and registers the page by;
* the scramble area (``SCRAMBLE_SIZE``, an exact grid of 16-pixel blocks): the front, area-resized
  to that size (:func:`scramble_source`) and shuffled under the centre key;
* everywhere else, the copy-void background (けん制文字): 1-pixel dots on a 4-pixel pitch, and in
  the latent word "COPY" 2 × 2 dots on an 8-pixel pitch. Both cover 1/16 of the paper, so the
  print looks an even grey; a copier drops the fine dots and keeps the coarse ones, and the word
  appears on the copy.
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
from konbini.docimage.resample import resize_area
from konbini.docimage.scramble import DEFAULT_BLOCK, Comparison, compare_front_back, scramble
from konbini.docimage.scramble import unscramble as unscramble_blocks

BACK_DPI = 150  # the layout's own resolution; the scramble grid is always this one
PAGE_SIZE = (1754, 1240)  # rows, columns: A4 at BACK_DPI
BLOCK = DEFAULT_BLOCK
SCRAMBLE_TOP = 176
SCRAMBLE_LEFT = 76
SCRAMBLE_SIZE = (96 * BLOCK, 68 * BLOCK)  # 1536 × 1088: the A4 aspect within 0.2 %
QR_PREFIX = "KKB1"
QR_MODULE = 4  # pixels per module at BACK_DPI
QR_TOP = 16
QR_RIGHT = PAGE_SIZE[1] - SCRAMBLE_LEFT
LABEL_TOP = 40
LABEL_SCALE = 5  # 15 × 25 pixel glyphs (2.5 × 4.2 mm)
LATENT_WORD = "COPY"
LATENT_SCALE = 16  # font pixel of the latent word, in pixels
KEY_ID_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,32}")


@dataclass(frozen=True)
class BackSide:
    """What :func:`read_back` finds: the key id and page index from the back's QR code, and the
    scramble area resampled to ``SCRAMBLE_SIZE`` (still scrambled)."""

    key_id: str
    page_index: int
    scrambled: np.ndarray


def _check_key_id(key_id: str) -> None:
    if not KEY_ID_PATTERN.fullmatch(key_id):
        raise ValueError("a key id is 1–32 of A–Z a–z 0–9 . _ -")


def marker_text(key_id: str, page_index: int) -> str:
    """The content of the back's QR code."""
    _check_key_id(key_id)
    if page_index < 0:
        raise ValueError("page_index must be non-negative")
    return f"{QR_PREFIX}:{key_id}:{page_index}"


def parse_marker(text: str) -> tuple[str, int]:
    """``(key id, page index)`` from a back QR's content; raises :class:`BackSideUnreadable`."""
    match = re.fullmatch(rf"{QR_PREFIX}:([A-Za-z0-9._-]{{1,32}}):(\d{{1,4}})", text)
    if not match:
        raise BackSideUnreadable("the QR code is not a back-side marker")
    return match.group(1), int(match.group(2))


def _qr_origin(key_id: str, page_index: int) -> tuple[int, int]:
    """Top-left pixel of the QR's first module (inside the quiet zone) at BACK_DPI."""
    modules = qr_matrix(marker_text(key_id, page_index)).shape[0]
    left = QR_RIGHT - (modules + 2 * QUIET_ZONE_MODULES) * QR_MODULE
    return QR_TOP + QUIET_ZONE_MODULES * QR_MODULE, left + QUIET_ZONE_MODULES * QR_MODULE


def scramble_source(front: np.ndarray) -> np.ndarray:
    """The front page image (any resolution) resized to the scramble grid: what the back carries
    shuffled, and what a verifier compares the unscrambled back with."""
    if front.ndim != 2 or front.dtype != np.uint8:
        raise ValueError("expected a 2-D uint8 grayscale page image")
    return resize_area(front, *SCRAMBLE_SIZE)


@functools.cache  # the same page size every time; read-only so that sharing it is safe
def copy_void_pattern(rows: int, cols: int) -> np.ndarray:
    """The background pattern (True = ink) with the latent word tiled over it."""
    y = np.arange(rows)[:, None]
    x = np.arange(cols)[None, :]
    fine = (y % 4 == 0) & (x % 4 == 0)
    coarse = (y % 8 < 2) & (x % 8 < 2)
    word = text_mask(LATENT_WORD + " ", LATENT_SCALE)
    tiled = np.tile(word, (-(-rows // word.shape[0]), -(-cols // word.shape[1])))[:rows, :cols]
    pattern = np.where(tiled, coarse, fine)
    pattern.flags.writeable = False
    return pattern


def back_image(front: np.ndarray, key_id: str, key: bytes, page_index: int = 0) -> np.ndarray:
    """The back of ``front`` as a uint8 array at BACK_DPI (1754 × 1240)."""
    label = f"KEY {key_id}  PAGE {page_index + 1}"
    qr = qr_image(marker_text(key_id, page_index), QR_MODULE)
    page = np.where(copy_void_pattern(*PAGE_SIZE), 0, 255).astype(np.uint8)
    # Clear white panels under the label and the QR (its quiet zone must stay white to be read).
    mask = text_mask(label, LABEL_SCALE)
    height, width = mask.shape
    label_box = Box(SCRAMBLE_LEFT, LABEL_TOP, SCRAMBLE_LEFT + width, LABEL_TOP + height)
    panel = label_box.expanded(LABEL_SCALE * 2)
    page[panel.top : panel.bottom, panel.left : panel.right] = 255
    page[label_box.top : label_box.bottom, label_box.left : label_box.right][mask] = 0
    qr_left = QR_RIGHT - qr.shape[1]
    page[QR_TOP : QR_TOP + qr.shape[0], qr_left:QR_RIGHT] = qr
    rows, cols = SCRAMBLE_SIZE
    page[SCRAMBLE_TOP : SCRAMBLE_TOP + rows, SCRAMBLE_LEFT : SCRAMBLE_LEFT + cols] = scramble(
        scramble_source(front), key, BLOCK
    )
    return page


def make_back_page(
    front: np.ndarray, key_id: str, key: bytes, *, page_index: int = 0, dpi: int = BACK_DPI
) -> Image.Image:
    """The back of ``front`` (a page image at any resolution) as a grayscale PIL image at ``dpi``
    (a multiple of BACK_DPI: each pixel is repeated, so the scramble blocks stay sharp)."""
    if dpi % BACK_DPI:
        raise ValueError(f"dpi must be a multiple of {BACK_DPI}")
    image = back_image(front, key_id, key, page_index)
    factor = dpi // BACK_DPI
    if factor > 1:
        image = np.kron(image, np.ones((factor, factor), dtype=np.uint8))
    return Image.fromarray(image)


def add_back_pages(pdf: bytes, key_id: str, key: bytes, dpi: int = BACK_DPI) -> bytes:
    """``pdf`` with each page followed by its back: image-only pages (no fonts, no text
    operators) of the same size as the front."""
    fronts = rasterize_pages(pdf, BACK_DPI)
    document = pikepdf.open(io.BytesIO(pdf))
    with document:
        for index in reversed(range(len(fronts))):
            front_page = document.pages[index]
            box = [float(v) for v in front_page.mediabox]
            size = (box[2] - box[0], box[3] - box[1])
            back = np.asarray(make_back_page(fronts[index], key_id, key, page_index=index, dpi=dpi))
            document.pages.insert(index + 1, image_page(document, back, size))
        out = io.BytesIO()
        document.save(out)
    return out.getvalue()


def read_back(back: np.ndarray) -> BackSide:
    """Find the marker QR on a back page image (any resolution, the whole page) and cut out the
    scramble area, registered by the QR's position. Raises :class:`BackSideUnreadable`."""
    if back.ndim != 2:
        raise ValueError("expected a 2-D grayscale page image")
    markers = [q for q in find_qr_codes(back) if q.text.startswith(QR_PREFIX + ":")]
    if not markers:
        raise BackSideUnreadable("no back-side marker QR code found")
    marker = markers[0]
    key_id, page_index = parse_marker(marker.text)
    scale = back.shape[1] / PAGE_SIZE[1]
    shift_y, shift_x = _registration(back, marker.box, key_id, page_index, scale)
    rows, cols = SCRAMBLE_SIZE
    top = (SCRAMBLE_TOP + shift_y) * scale
    left = (SCRAMBLE_LEFT + shift_x) * scale
    region = _crop(back, top, left, round(rows * scale), round(cols * scale))
    if region.shape != SCRAMBLE_SIZE:
        region = resize_area(region, rows, cols)
    return BackSide(key_id, page_index, region)


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


def _registration(
    back: np.ndarray, found: Box, key_id: str, page_index: int, scale: float
) -> tuple[float, float]:
    """How far (rows, columns, in BACK_DPI pixels) the page sits from the layout, measured on the
    QR code. The detector's box is only good to a pixel, which would misalign every block; the
    centroid of the QR's dark modules, compared with the same QR drawn at its place in the layout,
    is good to a fraction of a pixel."""
    expected_top, expected_left = _qr_origin(key_id, page_index)
    coarse_y = found.top / scale - expected_top
    coarse_x = found.left / scale - expected_left
    modules = qr_matrix(marker_text(key_id, page_index))
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
    ys, xs = np.nonzero(np.kron(modules, np.ones((QR_MODULE, QR_MODULE), dtype=bool)))
    # Pixel centres: the found centroid (in ``back`` pixels) and the drawn one (in layout pixels).
    found_y = (top + centroid[0] + 0.5) / scale
    found_x = (left + centroid[1] + 0.5) / scale
    return found_y - (expected_top + ys.mean() + 0.5), found_x - (expected_left + xs.mean() + 0.5)


def unscramble_back(back: BackSide, key: bytes) -> np.ndarray:
    """The scramble area of ``back`` put back in order under ``key``."""
    return unscramble_blocks(back.scrambled, key, BLOCK)


def check_back(
    front: np.ndarray, back: np.ndarray, key_for: Callable[[str], bytes]
) -> tuple[BackSide, Comparison]:
    """Read ``back``, unscramble it with the key ``key_for(key_id)`` returns, and compare it with
    ``front`` (both whole-page images, any resolution)."""
    side = read_back(back)
    restored = unscramble_back(side, key_for(side.key_id))
    return side, compare_front_back(scramble_source(front), restored, BLOCK)
