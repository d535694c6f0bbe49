"""A compact, scan-robust digest of a page's front image (64 bytes), carried in the signed QR.

Algorithm (version 1), fixed so that any vendor can reimplement it:

1. Darkness: ``d = clip(W - v, 0, 255) / 255`` per pixel, ``W`` the smallest gray value that 90 %
   of the pixels do not exceed (the paper's white, so a grey scan and a white render agree).
   ``W`` is taken over the pixels outside the excluded boxes of step 2 (as grown there), so
   nothing inside them counts anywhere.
2. Exclusion: ``d = 0`` inside every excluded box grown by 0.5 % of the page width (1 mm on A4).
   The QR code is excluded: it carries the signed payload, so it cannot be in its own digest. Its
   quiet zone must stay white (it does by the QR standard), so a box found a pixel or two off
   blanks the same ink. Painting an excluded box white beforehand changes nothing.
3. Grid: 48 × 68 cells spanning the whole image (about 4.4 mm square on A4). The exact area mean
   of ``d`` over a 4× finer grid (fractional edges), then per axis a 12-tap Gaussian window
   (σ = 2 fine cells, zero outside the page) centred on each cell, i.e. soft cells.
4. Paper level: the 10th-percentile cell (every page has blank margins) is subtracted, then a
   floor of 0.005, and negatives are set to 0 (a scanner's grain over thousands of blank cells
   would otherwise add up). The grid is then
   centred (mean 0) and scaled to unit Euclidean norm: contrast and paper tone drop out.
5. 32 projections onto ±1 vectors, each stored as a signed 16-bit integer in units of 1/4096
   (rounded, saturated), big-endian: 64 bytes. The signs are the bits of a ChaCha20 stream (key
   SHA-256 of ``b"konbini-kofu front fingerprint v1"``, counter and nonce zero), least significant
   bit of each byte first: bit ``k`` is the sign of cell ``k % 3264`` (row by row) in projection
   ``k // 3264``, 1 meaning +1.

Distance: the projections of two unit vectors differ by ``g1 - g2`` projected, so the root mean
square of the 32 differences estimates ``|g1 - g2|`` (about ±13 %). :func:`fingerprint_distance`
returns it in thousandths. Why not a Hamming distance over threshold bits: measured on A4 pages, the
diffuse noise of a re-scan flips many more threshold bits across the page than a changed word
flips in its few cells, while the Euclidean distance weighs a concentrated change quadratically.

Measured (tests/test_docimage_pages.py; an A4 page of about 500 characters at 11 pt, drawn at
300 dpi into an image-only PDF): the same PDF at 150, 200 and 300 dpi 2–3; a re-scan with blur
0.6–0.8 px and noise σ 6 gray levels 6–11; a strong blur (1 px at 150 dpi) 16; a changed
11-character name 57; a 10-digit number replaced by another at 12 pt 26; six changed digits
about 22; two changed letters about 22; one changed digit 2–4. :data:`MATCH_THRESHOLD` is 20:
a changed word or number is caught, a single changed character is not (the unscrambled back
catches that, see :func:`konbini.docimage.scramble.compare_front_back`). The distance is
relative to the ink on the page, so on a denser page the same edit gives a smaller distance.

Sealed pages (the one procedure for ``SealClaims.front_fingerprint``, docs/protocol.md "The
visible seal"): the page image is the front page rasterized at 150 dpi with
:func:`konbini.docimage.raster.rasterize_page` (a scan: the whole sheet at 150 dpi or more), and
the one excluded box is the seal's square: the QR code with its 4-module quiet zone. The signer
fingerprints the page drawn without the QR, excluding the square it will draw the QR in; a
verifier fingerprints the printed page, excluding :func:`seal_square` of the QR it found. The two
squares agree to a pixel or two, which the exclusion margin covers. Nothing is painted.

The image must be the whole page, registered to it (a rasterized PDF, or a scan resampled to the
page by :func:`konbini.docimage.register.register_scan`, which places the seal's square at
:data:`konbini.docimage.register.SEAL_SQUARE_MM`): the digest does not search for shifts or
rotation. Rasterize PDFs with
:func:`konbini.docimage.raster.rasterize_page`, whose resolutions agree with each other.
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Iterable

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

from konbini.docimage.geometry import Box
from konbini.docimage.qr import QUIET_ZONE_MODULES
from konbini.docimage.resample import area_means

GRID_COLUMNS = 48
GRID_ROWS = 68
PROJECTIONS = 32
SCALE = 4096  # fixed-point units per 1.0 of a projection
FINGERPRINT_LENGTH = PROJECTIONS * 2
MATCH_THRESHOLD = 20  # distances at or below it match (thousandths of the unit grid vector)
_WHITE_PERCENTILE = 90
_EXCLUDE_MARGIN = 0.005  # of the page width (1 mm on A4): a found box may be a pixel or two off
_PAPER_PERCENTILE = 10  # of the cells: their paper level
_CELL_FLOOR = 0.005  # darkness a blank cell may show from a scanner's grain
_SEED = hashlib.sha256(b"konbini-kofu front fingerprint v1").digest()


@functools.cache
def _projection_signs() -> np.ndarray:
    """PROJECTIONS × cells matrix of ±1 (bit set → +1), bits taken LSB first from the stream."""
    cells = GRID_COLUMNS * GRID_ROWS
    encryptor = Cipher(algorithms.ChaCha20(_SEED, bytes(16)), mode=None).encryptor()
    stream = np.frombuffer(encryptor.update(bytes(PROJECTIONS * cells // 8)), dtype=np.uint8)
    bits = np.unpackbits(stream, bitorder="little").reshape(PROJECTIONS, cells)
    signs = bits.astype(np.float64) * 2.0 - 1.0
    signs.flags.writeable = False
    return signs


_FINE = 4  # fine cells per grid cell along each axis
_SIGMA = 2.0  # Gaussian window of a grid cell, in fine cells (half a grid cell)
_TAPS = 12  # window width in fine cells, centred on the grid cell's centre


@functools.cache
def _window() -> np.ndarray:
    offsets = np.arange(_TAPS) - (_TAPS - 1) / 2
    weights = np.exp(-0.5 * (offsets / _SIGMA) ** 2)
    return weights / weights.sum()


def _smooth_decimate(fine: np.ndarray, axis: int) -> np.ndarray:
    """Gaussian-weighted samples at grid-cell centres along ``axis`` (zero outside the page)."""
    pad = (_TAPS - _FINE) // 2
    widths = [(0, 0), (0, 0)]
    widths[axis] = (pad, pad)
    padded = np.pad(fine, widths)
    windows = np.lib.stride_tricks.sliding_window_view(padded, _TAPS, axis=axis)
    windows = windows[::_FINE] if axis == 0 else windows[:, ::_FINE]
    return windows @ _window()


def _paper_white(image: np.ndarray, blanks: list[Box]) -> int:
    """The smallest gray value that at least _WHITE_PERCENTILE % of the pixels outside the
    ``blanks`` (excluded boxes, already grown and clipped) do not exceed."""
    if len(blanks) == 1:  # the usual case, the seal: subtract its histogram
        box = blanks[0]
        counts = np.bincount(image.ravel(), minlength=256) - np.bincount(
            image[box.top : box.bottom, box.left : box.right].ravel(), minlength=256
        )
    else:
        keep = np.ones(image.shape, dtype=bool)
        for box in blanks:
            keep[box.top : box.bottom, box.left : box.right] = False
        counts = np.bincount(image[keep], minlength=256)
    cumulative = np.cumsum(counts)
    if cumulative[-1] == 0:
        return 255  # everything excluded: the grid is blank anyway
    return int(np.searchsorted(cumulative, cumulative[-1] * _WHITE_PERCENTILE / 100))


def _darkness_table(white: int) -> np.ndarray:
    return (np.clip(white - np.arange(256, dtype=np.float64), 0.0, 255.0) / 255.0).astype(
        np.float32
    )


def front_grid(image: np.ndarray, *, exclude: Iterable[Box] = ()) -> np.ndarray:
    """Steps 1–4 of the algorithm: the centred, unit-norm GRID_ROWS × GRID_COLUMNS grid
    (low-level; exposed for diagnostics such as locating a change)."""
    if image.ndim != 2 or image.dtype != np.uint8:
        raise ValueError("expected a 2-D uint8 grayscale page image")
    if image.shape[0] < GRID_ROWS * _FINE or image.shape[1] < GRID_COLUMNS * _FINE:
        raise ValueError(f"page image {image.shape} is too small for the fingerprint grid")
    height, width = image.shape
    margin = math.ceil(width * _EXCLUDE_MARGIN)
    blanks = [box.expanded(margin).clipped(width, height) for box in exclude]
    darkness = _darkness_table(_paper_white(image, blanks))[image]
    for blank in blanks:
        darkness[blank.top : blank.bottom, blank.left : blank.right] = 0.0
    # Soft (Gaussian-weighted) cells: with hard cell edges, the blur of a scanner or a fraction of
    # a pixel of shift moves ink across an edge and changes two cells at first order.
    fine = area_means(darkness, GRID_ROWS * _FINE, GRID_COLUMNS * _FINE)
    grid = _smooth_decimate(_smooth_decimate(fine, 0), 1)
    # Take the paper's level (a low percentile: every page has margins) as zero and shrink every
    # cell by a noise floor, so a scanner's grain over thousands of blank cells adds up to nothing.
    grid = np.maximum(grid - float(np.percentile(grid, _PAPER_PERCENTILE)) - _CELL_FLOOR, 0.0)
    grid -= grid.mean()
    norm = float(np.linalg.norm(grid))
    if norm == 0.0:
        return grid  # a blank page: every projection is 0
    return grid / norm


def seal_square(modules_box: Box, modules: int) -> Box:
    """The seal's square (the QR with its quiet zone) from the box of its ``modules`` × ``modules``
    modules as :func:`konbini.docimage.qr.find_qr_codes` found it: what a verifier excludes."""
    if modules < 1:
        raise ValueError("a QR code has at least one module")
    return modules_box.expanded(round(QUIET_ZONE_MODULES * modules_box.width / modules))


def front_fingerprint(image: np.ndarray, *, exclude: Iterable[Box] = ()) -> bytes:
    """The 64-byte fingerprint of a front page image (grayscale uint8, the whole page)."""
    vector = front_grid(image, exclude=exclude).ravel()
    projected = _projection_signs() @ vector
    fixed = np.clip(np.rint(projected * SCALE), -32768, 32767).astype(">i2")
    return fixed.tobytes()


def fingerprint_distance(a: bytes, b: bytes) -> int:
    """Estimated distance between the pages behind two fingerprints, in thousandths (0 = same).

    Compare with :data:`MATCH_THRESHOLD`.
    """
    if len(a) != FINGERPRINT_LENGTH or len(b) != FINGERPRINT_LENGTH:
        raise ValueError(f"a fingerprint is {FINGERPRINT_LENGTH} bytes")
    ya = np.frombuffer(a, dtype=">i2").astype(np.float64) / SCALE
    yb = np.frombuffer(b, dtype=">i2").astype(np.float64) / SCALE
    return round(1000 * float(np.sqrt(np.mean((ya - yb) ** 2))))


def fingerprints_match(a: bytes, b: bytes, threshold: int = MATCH_THRESHOLD) -> bool:
    """True if the two fingerprints are within ``threshold``."""
    return fingerprint_distance(a, b) <= threshold
