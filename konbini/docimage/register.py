"""Registering a scanned page to the page grid by a QR code printed at a known place.

A scan is rotated (about 1° at most on a flatbed), scaled (a scanner's dpi is good to about 1 %)
and shifted (a few mm) relative to the page; the front fingerprint and the back's block grid need
the page itself. Each side of the sheet carries a QR code whose place on the page is fixed by the
protocol:

* the front: the visible seal in its square, :data:`SEAL_SQUARE_MM` (the QR with its 4-module
  quiet zone filling the square, so one module is ``side / (n + 8)`` for an ``n``-module code);
* the back: the marker QR of :mod:`konbini.docimage.backside` (``QR_TOP``, ``QR_RIGHT``,
  ``QR_MODULE`` pixels at ``BACK_DPI``).

Procedure: zxing-cpp's corners of the code give a first guess; each of the three finder patterns
(7 × 7 modules, white around them by the standard) is then located as the centroid of its
darkness in a window of 8 × 8 modules, recentred three times; a similarity (rotation, one scale,
shift) fitted to the three centres against their places on the page maps page → scan. The scan is
resampled (bilinear, Pillow) to the page at :data:`REGISTER_DPI` and, for the 150 dpi page images
the checks use, averaged 2 × 2, as a PDF page is rasterized (:mod:`konbini.docimage.raster`).

Accuracy, measured on synthetic 300 dpi scans of the 300 dpi render (tests/test_verify_scans.py:
rotation up to 1°, scale ±1 %, shifts of 2–5 mm, blur and noise): 0.2–1.3 px at 300 dpi at the
sheet's corners. The limit is the render itself: at 300 dpi pdfium snaps the QR's module edges by
up to half a pixel (finder centres 0.1–0.15 px apart from where the vector drawing puts them), and
the QR's corner of the sheet is 250 mm from the opposite one. That is enough for the back (its
comparison tolerates a pixel) but not for the front fingerprint, which moves by about 16 (of its
threshold 20) for one 300 dpi pixel of shift and by 23 for a scale error of 0.1 %; and even with
the exact geometry, the resampling of a turned scan moves it by 21–26. A printer whose paper feed
stretches the page unevenly is outside what one map can correct.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image

from konbini.docimage.errors import DocImageError
from konbini.docimage.qr import QUIET_ZONE_MODULES, FoundQr, find_qr_codes, qr_matrix

MM_PER_INCH = 25.4
A4_MM = (210.0, 297.0)  # width, height of a portrait A4 sheet
# The visible seal's square on every front page (left, top, side; mm from the sheet's top-left
# corner): the QR code and its 4-module quiet zone, which fills the square. A protocol constant,
# where the municipality's layout has always drawn it (20 mm right margin, the quiet zone reaching
# 4 mm into it; 8 mm above the bottom edge).
SEAL_SQUARE_MM = (162.0, 257.0, 32.0)
REGISTER_DPI = 300  # the grid a scan is resampled to first (the print resolution of the backs)
FINDER_MODULES = 7
_WINDOW_MODULES = 8  # a finder and half of its white separator on each side
_RECENTRE = 3  # centroid passes; each one removes most of the window's off-centre bias
_MAX_ROTATION = 0.1  # radians (about 6°): a page fed or laid that crooked is rescanned
_MAX_SHEAR = 0.05  # x and y scales differing by more than 10 % are not a scanner's error


class RegistrationFailed(DocImageError):
    """The QR code's finder patterns could not be located, or they give no plausible scan of the
    page (upside down, mirrored, or scaled far from the page)."""


@dataclass(frozen=True)
class PagePlacement:
    """Where a QR code sits on the page: the centre of its first module (top-left) and the step
    of one module, in mm from the sheet's top-left corner."""

    left: float
    top: float
    module: float

    def point(self, u: float, v: float) -> tuple[float, float]:
        """The page point (mm) at module coordinates ``u`` (columns) and ``v`` (rows), where
        (0, 0) is the top-left corner of the first module."""
        return self.left + u * self.module, self.top + v * self.module


def seal_placement(modules: int) -> PagePlacement:
    """The front's seal QR of ``modules`` × ``modules`` modules, drawn in :data:`SEAL_SQUARE_MM`."""
    left, top, side = SEAL_SQUARE_MM
    module = side / (modules + 2 * QUIET_ZONE_MODULES)
    return PagePlacement(
        left + QUIET_ZONE_MODULES * module, top + QUIET_ZONE_MODULES * module, module
    )


@dataclass(frozen=True)
class Affine:
    """``scan = matrix @ (x_mm, y_mm) + offset``, scan coordinates continuous (the top-left
    corner of the image at (0, 0), pixel centres at +0.5), x to the right, y down."""

    matrix: np.ndarray  # 2 × 2
    offset: np.ndarray  # 2

    def apply(self, x: float, y: float) -> tuple[float, float]:
        out = self.matrix @ np.array([x, y]) + self.offset
        return float(out[0]), float(out[1])


def _finder_centres(modules: int) -> list[tuple[float, float]]:
    """Centres of the three finder patterns in module coordinates (u, v)."""
    half = FINDER_MODULES / 2
    return [(half, half), (modules - half, half), (half, modules - half)]


def _centroid(scan: np.ndarray, x: float, y: float, half: float) -> tuple[float, float] | None:
    """The darkness centroid (continuous coordinates) of the square window of half-side ``half``
    around (x, y); darkness is taken below the window's paper white, with a floor for a
    scanner's grain so that noise in the white does not pull the centroid to the window's centre."""
    left, top = math.floor(x - half), math.floor(y - half)
    right, bottom = math.ceil(x + half), math.ceil(y + half)
    if left < 0 or top < 0 or right > scan.shape[1] or bottom > scan.shape[0]:
        return None
    window = scan[top:bottom, left:right].astype(np.float64)
    white = float(np.percentile(window, 95))
    black = float(np.percentile(window, 5))
    if white - black < 48:  # no finder here: as flat as paper
        return None
    weight = np.clip(white - window - 0.15 * (white - black), 0.0, None)
    total = float(weight.sum())
    return (
        left + 0.5 + float(weight.sum(axis=0) @ np.arange(window.shape[1])) / total,
        top + 0.5 + float(weight.sum(axis=1) @ np.arange(window.shape[0])) / total,
    )


def _solve(page: list[tuple[float, float]], scan: list[tuple[float, float]]) -> Affine:
    """The affine map taking the ``page`` points (mm) to the ``scan`` points (least squares)."""
    design = np.array([[x, y, 1.0] for x, y in page])
    solution, *_ = np.linalg.lstsq(design, np.array(scan), rcond=None)
    return Affine(solution[:2].T.copy(), solution[2].copy())


def _solve_similarity(page: list[tuple[float, float]], scan: list[tuple[float, float]]) -> Affine:
    """The similarity (rotation, one scale, shift) taking ``page`` to ``scan`` (least squares):
    four parameters from six coordinates, so one finder's rendering error is shared out."""
    rows, values = [], []
    for (x, y), (sx, sy) in zip(page, scan, strict=True):
        rows += [[x, -y, 1.0, 0.0], [y, x, 0.0, 1.0]]
        values += [sx, sy]
    (a, b, tx, ty), *_ = np.linalg.lstsq(np.array(rows), np.array(values), rcond=None)
    return Affine(np.array([[a, -b], [b, a]]), np.array([tx, ty]))


def locate_qr(scan: np.ndarray, found: FoundQr, modules: int, placement: PagePlacement) -> Affine:
    """The affine map page (mm) → ``scan`` pixels from the QR code ``found`` (with its corners)
    of ``modules`` modules per side, placed on the page as ``placement`` says."""
    if len(found.corners) != 4:
        raise RegistrationFailed("the QR code was found without its corners")
    # zxing-cpp's corners are the outer corners of the symbol: top-left, top-right,
    # bottom-right, bottom-left.
    symbol = [(0.0, 0.0), (modules, 0.0), (modules, modules), (0.0, modules)]
    coarse = _solve(symbol, [(float(x), float(y)) for x, y in found.corners])
    step = float(np.sqrt(abs(np.linalg.det(coarse.matrix))))  # scan pixels per module
    half = _WINDOW_MODULES / 2 * step
    page_points, scan_points = [], []
    for u, v in _finder_centres(modules):
        x, y = coarse.apply(u, v)
        for _ in range(_RECENTRE):
            centre = _centroid(scan, x, y, half)
            if centre is None:
                raise RegistrationFailed("a finder pattern of the QR code is not on the scan")
            x, y = centre
        page_points.append(placement.point(u, v))
        scan_points.append((x, y))
    affine = _solve_similarity(page_points, scan_points)
    _check_plausible(affine)
    return affine


def _check_plausible(affine: Affine) -> None:
    # A scan is a small rotation and scaling of the page: a mirrored, upside-down or strongly
    # sheared map means the QR is not where the protocol puts it (or is not the page's own).
    (a, b), (c, d) = affine.matrix
    determinant = a * d - b * c
    if determinant <= 0:
        raise RegistrationFailed("the QR code is mirrored on the scan")
    scale = math.sqrt(determinant)
    rotation = abs(c - b) / (2 * scale)
    shear, aspect = abs(b + c) / (2 * scale), abs(a - d) / (2 * scale)
    if a <= 0 or d <= 0 or rotation > _MAX_ROTATION or max(shear, aspect) > _MAX_SHEAR:
        raise RegistrationFailed("the QR code is turned or sheared far beyond a scan's skew")


def warp_to_page(scan: np.ndarray, affine: Affine, dpi: int = REGISTER_DPI) -> np.ndarray:
    """The A4 page at ``dpi`` sampled from ``scan`` through ``affine`` (bilinear); what lies
    outside the scan is paper white."""
    width = round(A4_MM[0] / MM_PER_INCH * dpi)
    height = round(A4_MM[1] / MM_PER_INCH * dpi)
    mm_per_px = MM_PER_INCH / dpi
    # Pillow maps continuous output coordinates to continuous input ones: compose page px → mm.
    (a, b), (c, d) = affine.matrix * mm_per_px
    ox, oy = affine.offset
    image = Image.fromarray(np.ascontiguousarray(scan, dtype=np.uint8))
    warped = image.transform(
        (width, height), Image.Transform.AFFINE, (a, b, ox, c, d, oy),
        Image.Resampling.BILINEAR, fillcolor=255,
    )
    return np.asarray(warped, dtype=np.uint8)


def register_scan(
    scan: np.ndarray, placement_of: Callable[[str], PagePlacement | None],
    dpi: int = REGISTER_DPI,
) -> np.ndarray:
    """``scan`` resampled to the page at ``dpi``, registered by the one QR code on it for which
    ``placement_of(text)`` gives a place on the page (None: not the code to register by).
    Raises :class:`RegistrationFailed` when there is not exactly one such code."""
    if scan.ndim != 2:
        raise ValueError("expected a 2-D grayscale scan")
    placed = [(q, p) for q in find_qr_codes(scan) if (p := placement_of(q.text)) is not None]
    if len(placed) != 1:
        raise RegistrationFailed(f"{len(placed)} registration QR codes found (one expected)")
    found, placement = placed[0]
    affine = locate_qr(scan, found, qr_matrix(found.text).shape[0], placement)
    return warp_to_page(scan, affine, dpi)
