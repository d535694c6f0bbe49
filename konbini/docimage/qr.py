"""QR codes on page images: draw one (segno) and find every one on a page (zxing-cpp).

Payloads are base45 text (see :mod:`konbini.docimage.base45`), which segno encodes in
alphanumeric mode, the densest mode for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import segno
import zxingcpp

from konbini.docimage.geometry import Box

QUIET_ZONE_MODULES = 4  # the standard's quiet zone; the fingerprint relies on it staying white
_FIXED_MASK = 0  # automatic mask selection costs ~5× the encoding (ARCHITECTURE.md)


@dataclass(frozen=True)
class FoundQr:
    """One decoded QR code: its text, its bounding box in pixels of the searched image, and the
    outer corners of the symbol (top-left, top-right, bottom-right, bottom-left of the code as
    read, so a turned code keeps its own corners) as zxing-cpp found them."""

    text: str
    box: Box
    corners: tuple[tuple[float, float], ...] = field(default=(), compare=False)


def qr_matrix(text: str, *, error: str = "m") -> np.ndarray:
    """The modules of the QR code for ``text`` as a bool array (True = dark), no quiet zone."""
    code = segno.make_qr(text, error=error, mask=_FIXED_MASK, boost_error=False)
    return np.array(code.matrix, dtype=bool)


def qr_image(text: str, module_px: int, *, error: str = "m") -> np.ndarray:
    """The QR code for ``text`` as a uint8 image with ``module_px`` pixels per module and the
    4-module white quiet zone around it."""
    if module_px < 1:
        raise ValueError("module_px must be at least 1")
    modules = np.pad(qr_matrix(text, error=error), QUIET_ZONE_MODULES, constant_values=False)
    image = np.where(modules, 0, 255).astype(np.uint8)
    return np.kron(image, np.ones((module_px, module_px), dtype=np.uint8))


def _box_of(position: zxingcpp.Position, scale: float) -> Box:
    points = (position.top_left, position.top_right, position.bottom_left, position.bottom_right)
    xs = [p.x for p in points]
    ys = [p.y for p in points]
    return Box(
        int(min(xs) / scale),
        int(min(ys) / scale),
        int(np.ceil((max(xs) + 1) / scale)),
        int(np.ceil((max(ys) + 1) / scale)),
    )


def _corners_of(position: zxingcpp.Position, scale: float) -> tuple[tuple[float, float], ...]:
    points = (position.top_left, position.top_right, position.bottom_right, position.bottom_left)
    return tuple((p.x / scale, p.y / scale) for p in points)


def _read(image: np.ndarray, binarizer: zxingcpp.Binarizer) -> list[zxingcpp.Barcode]:
    return zxingcpp.read_barcodes(
        image, formats=zxingcpp.BarcodeFormat.QRCode, binarizer=binarizer
    )


def find_qr_codes(image: np.ndarray) -> list[FoundQr]:
    """Every QR code readable on ``image`` (grayscale uint8), ordered top to bottom, left to
    right. Boxes cover the modules (not the quiet zone) in pixels of ``image``.

    A page scanned at 150 dpi may give modules of 2–3 pixels, at the limit of the detector; when
    the first pass finds nothing, it tries a global binarizer and then a 2× enlargement.
    """
    if image.ndim != 2:
        raise ValueError("expected a 2-D grayscale image")
    image = np.ascontiguousarray(image, dtype=np.uint8)
    found = _read(image, zxingcpp.Binarizer.LocalAverage)
    scale = 1.0
    if not found:
        found = _read(image, zxingcpp.Binarizer.GlobalHistogram)
    if not found:
        scale = 2.0
        enlarged = np.kron(image, np.ones((2, 2), dtype=np.uint8))
        found = _read(enlarged, zxingcpp.Binarizer.LocalAverage)
    codes: dict[tuple[str, Box], FoundQr] = {}
    for barcode in found:
        if barcode.valid:
            box = _box_of(barcode.position, scale)
            codes.setdefault((barcode.text, box), FoundQr(barcode.text, box, _corners_of(
                barcode.position, scale)))
    return sorted(codes.values(), key=lambda q: (q.box.top, q.box.left))
