"""The back of every front page: the scramble image, its key id and the copy-void ground
(DOC-BACK-SCRAMBLE, DOC-COPY-VOID).

``add_back_sides(front_pdf, keys, at) -> bytes``: each front page of the municipality's PDF
(kept byte for byte) followed by its back, made under ``keys.current_key_at(at)``.
:func:`read_back_side` reads a back again (a rasterized PDF page or a registered scan).

Layout of a back (an A4 page image at 300 dpi, :data:`PAGE_PX`):

- the **scramble**: the front rasterized at :data:`SCRAMBLE_DPI`, scaled to
  :data:`SCRAMBLE_SIZE` (an exact grid of :data:`BLOCK`-pixel blocks), shuffled with
  :func:`konbini.docimage.scramble.scramble` under the key, drawn twice enlarged in
  :data:`REGION` on white;
- the **marker**: a QR code at :data:`MARKER_AT` whose text is
  ``KKB1:<key id>:<block>:<left>:<top>:<width>:<height>:<scramble width>:<scramble height>``
  (the region in 300 dpi page pixels), and the key id printed beside it, so a verifier needs
  nothing but the published scramble keys;
- the **copy-void ground** everywhere else: a fine dot screen in which the word ``COPY`` is
  drawn with coarser dots of the same average tone. The eye sees an even tint; a copier, which
  drops fine dots and keeps coarse ones, makes the word appear.

Built on :mod:`konbini.docimage` (raster, qr, scramble, pdfimage).
TODO(lead): once ``konbini.docimage.backside`` (add_back_pages/read_back) lands, this module
should delegate to it so that terminals and the conformance suite read backs the same way.
"""

from __future__ import annotations

import datetime as dt
import functools
import io
from dataclasses import dataclass

import numpy as np
import pikepdf
from PIL import Image, ImageDraw, ImageFont

from konbini.docimage.errors import BackSideUnreadable
from konbini.docimage.geometry import Box
from konbini.docimage.pdfimage import image_page
from konbini.docimage.qr import QUIET_ZONE_MODULES, find_qr_codes, qr_image, qr_matrix
from konbini.docimage.raster import rasterize_pages
from konbini.docimage.scramble import scramble
from konbini.pki import ScrambleKeySet

PAGE_DPI = 300
PAGE_PX = (2480, 3508)  # A4 at 300 dpi (width, height)
SCRAMBLE_DPI = 150  # the front is rasterized at this resolution for the scramble
BLOCK = 16
SCRAMBLE_SIZE = (992, 1392)  # 62 × 87 blocks: the front at 80 %, within 0.1 % of its aspect
REGION = Box(248, 480, 248 + 2 * SCRAMBLE_SIZE[0], 480 + 2 * SCRAMBLE_SIZE[1])
MARKER_AT = (248, 120)  # top-left of the marker QR (quiet zone included), page pixels
MARKER_MODULE_PX = 8
MARKER_PREFIX = "KKB1:"
_INK = 0
_TINT = 150  # gray level of the ground's dots


# Crop offsets (image pixels) a verifier tries, in order, when the first comparison fails.
NUDGES: tuple[tuple[int, int], ...] = tuple(
    (x, y) for r in (0, 1, 2) for x in range(-r, r + 1) for y in range(-r, r + 1)
    if max(abs(x), abs(y)) == r
)


@dataclass(frozen=True)
class BackSide:
    """What a back carries: the key id, the block size and the scrambled image at its own
    size (:data:`SCRAMBLE_SIZE` for the centre's backs)."""

    key_id: str
    block: int
    scrambled: np.ndarray


def _marker_text(key_id: str) -> str:
    r = REGION
    w, h = SCRAMBLE_SIZE
    return f"{MARKER_PREFIX}{key_id}:{BLOCK}:{r.left}:{r.top}:{r.width}:{r.height}:{w}:{h}"


@functools.cache
def _copy_void_ground() -> np.ndarray:
    """The ground of every back (cached: it does not depend on the page)."""
    width, height = PAGE_PX
    mask_img = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(mask_img)
    font = ImageFont.load_default(size=420)
    for row, y in enumerate(range(300, height, 700)):
        draw.text((150 + (row % 2) * 500, y), "COPY", fill=255, font=font)
    latent = np.asarray(mask_img) > 0
    ys, xs = np.mgrid[0:height, 0:width]
    fine = (ys % 4 == 0) & (xs % 4 == 0)  # 1-pixel dots every 4 px: about 6 % ink
    coarse = (ys % 8 < 2) & (xs % 8 < 2)  # 2×2 dots every 8 px: the same 6 %
    dots = np.where(latent, coarse, fine)
    ground = np.where(dots, _TINT, 255).astype(np.uint8)
    ground.flags.writeable = False
    return ground


def _key_label(key_id: str) -> np.ndarray:
    image = Image.new("L", (900, 60), 255)
    ImageDraw.Draw(image).text((0, 0), f"SCRAMBLE KEY {key_id}", fill=_INK,
                               font=ImageFont.load_default(size=44))
    return np.asarray(image)


def back_image(front: np.ndarray, key_id: str, key: bytes) -> np.ndarray:
    """The back page (PAGE_PX, 300 dpi) of ``front`` (a grayscale page image, any size)."""
    small = Image.fromarray(front).resize(SCRAMBLE_SIZE, Image.Resampling.BOX)
    scrambled = scramble(np.asarray(small, dtype=np.uint8), key, BLOCK)
    page = _copy_void_ground().copy()
    r = REGION
    page[r.top:r.bottom, r.left:r.right] = np.repeat(np.repeat(scrambled, 2, axis=0), 2, axis=1)
    marker = qr_image(_marker_text(key_id), MARKER_MODULE_PX)
    x, y = MARKER_AT
    page[y:y + marker.shape[0], x:x + marker.shape[1]] = marker
    label = _key_label(key_id)
    lx, ly = x + marker.shape[0] + 40, y + marker.shape[0] // 2 - 30
    page[ly:ly + label.shape[0], lx:lx + label.shape[1]] = label
    return page


def add_back_sides(front_pdf: bytes, keys: ScrambleKeySet, at: dt.datetime) -> bytes:
    """The front pages of ``front_pdf``, each followed by its back under the scramble key
    current at ``at`` (raises ``NoScrambleKey`` when none is)."""
    key = keys.current_key_at(at)
    fronts = rasterize_pages(front_pdf, SCRAMBLE_DPI)
    out = pikepdf.new()
    with pikepdf.open(io.BytesIO(front_pdf)) as source:
        for index, front in enumerate(fronts):
            out.pages.append(source.pages[index])
            out.pages.append(image_page(out, back_image(front, key.key_id, key.key)))
        buffer = io.BytesIO()
        out.save(buffer)
    return buffer.getvalue()


def _parse_marker(text: str) -> tuple[str, int, Box, tuple[int, int]]:
    parts = text[len(MARKER_PREFIX):].split(":")
    if len(parts) != 8 or not parts[0]:
        raise BackSideUnreadable("the back's marker does not have its eight fields")
    try:
        block, left, top, width, height, sw, sh = (int(p) for p in parts[1:])
    except ValueError:
        raise BackSideUnreadable("the back's marker holds a non-number") from None
    if block < 4 or block % 4 or sw % block or sh % block or min(width, height, sw, sh) < block:
        raise BackSideUnreadable("the back's marker describes an impossible scramble grid")
    return parts[0], block, Box(left, top, left + width, top + height), (sw, sh)


def read_back_side(image: np.ndarray, nudge: tuple[int, int] = (0, 0)) -> BackSide:
    """Read a back page image (a rasterized PDF page or a scan of the whole sheet, any dpi).

    The marker QR gives the key id and the scramble region; the region is located from where
    the marker was actually found, so a scan shifted by a few pixels still reads. ``nudge``
    (x, y image pixels) moves the crop: a detector's box may be a pixel off, and a verifier
    retries a failed comparison with small nudges (:data:`NUDGES`)."""
    markers = [q for q in find_qr_codes(image) if q.text.startswith(MARKER_PREFIX)]
    if len(markers) != 1:
        raise BackSideUnreadable(f"{len(markers)} back-side markers found (one expected)")
    key_id, block, region, (sw, sh) = _parse_marker(markers[0].text)
    scale = image.shape[1] / PAGE_PX[0]
    # Where the marker's centre should be, against where it is: the scan's offset (the
    # centre, as a detector may round one edge of the box a pixel off).
    found = markers[0].box
    half = (len(qr_matrix(markers[0].text)) / 2 + QUIET_ZONE_MODULES) * MARKER_MODULE_PX
    expected_x = (MARKER_AT[0] + half) * scale
    expected_y = (MARKER_AT[1] + half) * scale
    dx = (found.left + found.right) / 2 - expected_x
    dy = (found.top + found.bottom) / 2 - expected_y
    left = round(region.left * scale + dx) + nudge[0]
    top = round(region.top * scale + dy) + nudge[1]
    right, bottom = left + round(region.width * scale), top + round(region.height * scale)
    if left < 0 or top < 0 or right > image.shape[1] or bottom > image.shape[0]:
        raise BackSideUnreadable("the scramble region lies outside the scanned page")
    crop = Image.fromarray(np.ascontiguousarray(image[top:bottom, left:right]))
    scrambled = np.asarray(crop.resize((sw, sh), Image.Resampling.BOX), dtype=np.uint8)
    return BackSide(key_id, block, scrambled)
