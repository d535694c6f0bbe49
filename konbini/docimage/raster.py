"""PDF pages and scans as grayscale numpy arrays (uint8, 0 = black, 255 = white).

Pixel sizes follow the page size rounded to whole pixels: an A4 page is 2480 × 3508 at 300 dpi and
1240 × 1754 at 150 dpi (pdfium rounds up, so the sliver column/row it adds is cut off).

Below :data:`MIN_RENDER_DPI` a page is rendered at that dpi and area-averaged down. pdfium's own
downsampling of image XObjects moves content by up to half a pixel between resolutions, which a
front fingerprint would see as a change; averaging the 300 dpi render keeps every resolution
consistent with it (a 150 dpi raster is exactly the 2 × 2 mean of the 300 dpi one, up to rounding).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pypdfium2 as pdfium
from PIL import Image

from konbini.docimage.errors import PdfUnreadable
from konbini.docimage.resample import resize_area

A4_POINTS = (595.28, 841.89)  # 210 × 297 mm in PDF points (1/72 inch)
A4_TOLERANCE_POINTS = 3.0  # about 1 mm: generators round the page box differently
POINTS_PER_INCH = 72.0
MIN_RENDER_DPI = 300.0


def _open(pdf: bytes) -> pdfium.PdfDocument:
    try:
        return pdfium.PdfDocument(pdf)
    except pdfium.PdfiumError as exc:
        raise PdfUnreadable(f"not a readable PDF: {exc}") from exc


def page_count(pdf: bytes) -> int:
    """Number of pages of ``pdf``."""
    doc = _open(pdf)
    try:
        return len(doc)
    finally:
        doc.close()


def page_size_points(pdf: bytes, index: int = 0) -> tuple[float, float]:
    """Width and height of page ``index`` in points."""
    doc = _open(pdf)
    try:
        if not 0 <= index < len(doc):
            raise PdfUnreadable(f"page {index} out of range (document has {len(doc)})")
        width, height = doc[index].get_size()
        return float(width), float(height)
    finally:
        doc.close()


def is_a4_size(width: float, height: float, tolerance: float = A4_TOLERANCE_POINTS) -> bool:
    """True if ``width`` × ``height`` points is portrait A4 within ``tolerance`` points."""
    return abs(width - A4_POINTS[0]) <= tolerance and abs(height - A4_POINTS[1]) <= tolerance


def all_pages_a4(pdf: bytes, tolerance: float = A4_TOLERANCE_POINTS) -> bool:
    """True if every page of ``pdf`` is portrait A4 (and there is at least one page)."""
    doc = _open(pdf)
    try:
        sizes = [doc[i].get_size() for i in range(len(doc))]
    finally:
        doc.close()
    return bool(sizes) and all(is_a4_size(w, h, tolerance) for w, h in sizes)


def pixel_size(width_pt: float, height_pt: float, dpi: float) -> tuple[int, int]:
    """Pixel width and height of a page of the given size rendered at ``dpi``."""
    return round(width_pt * dpi / POINTS_PER_INCH), round(height_pt * dpi / POINTS_PER_INCH)


def _render(page: pdfium.PdfPage, dpi: float) -> np.ndarray:
    if dpi <= 0:
        raise ValueError("dpi must be positive")
    width_pt, height_pt = page.get_size()
    width, height = pixel_size(width_pt, height_pt, dpi)
    render_dpi = max(dpi, MIN_RENDER_DPI)
    render_width, render_height = pixel_size(width_pt, height_pt, render_dpi)
    bitmap = page.render(scale=render_dpi / POINTS_PER_INCH, grayscale=True)
    array = bitmap.to_numpy()
    if array.ndim == 3:  # some pdfium builds return (h, w, 1) for grayscale
        array = array[:, :, 0]
    # Cut pdfium's rounded-up sliver, or pad with paper white if the render came out short.
    full = np.full((render_height, render_width), 255, dtype=np.uint8)
    rows, cols = min(render_height, array.shape[0]), min(render_width, array.shape[1])
    full[:rows, :cols] = array[:rows, :cols]
    if (render_width, render_height) == (width, height):
        return full
    if render_width % width == 0 and render_height % height == 0:  # the common 300 → 150 case
        return bin_down(full, render_height // height, render_width // width)
    return resize_area(full, height, width)


def bin_down(image: np.ndarray, fy: int, fx: int) -> np.ndarray:
    """``image`` (uint8) reduced by whole factors: each output pixel the rounded mean of an
    ``fy`` × ``fx`` block (a remainder strip at the bottom or right is dropped)."""
    if fy < 1 or fx < 1:
        raise ValueError("factors must be at least 1")
    height, width = image.shape[0] // fy, image.shape[1] // fx
    image = image[: height * fy, : width * fx]
    # Integer sums of strided views, rows first (halving the data), in uint16 while the sum
    # fits: exact, and several times cheaper than a float mean over a reshaped array.
    wide = np.uint16 if fy * fx <= 256 else np.uint32
    rows = image[0::fy].astype(wide)
    for dy in range(1, fy):
        rows += image[dy::fy]
    sums = rows[:, 0::fx].copy()
    for dx in range(1, fx):
        sums += rows[:, dx::fx]
    sums += fy * fx // 2  # round half up, as the division below truncates
    sums //= fy * fx
    return sums.astype(np.uint8)


def rasterize_page(pdf: bytes, index: int = 0, dpi: float = 150) -> np.ndarray:
    """Page ``index`` of ``pdf`` as a grayscale uint8 array (rows × columns) at ``dpi``."""
    doc = _open(pdf)
    try:
        if not 0 <= index < len(doc):
            raise PdfUnreadable(f"page {index} out of range (document has {len(doc)})")
        return _render(doc[index], dpi)
    finally:
        doc.close()


def rasterize_pages(pdf: bytes, dpi: float = 150, *, limit: int | None = None) -> list[np.ndarray]:
    """Every page of ``pdf`` as grayscale uint8 arrays at ``dpi`` (one document load). With a
    ``limit``, a document of more pages is refused (:class:`PdfUnreadable`) before rendering."""
    doc = _open(pdf)
    try:
        if limit is not None and len(doc) > limit:
            raise PdfUnreadable(f"{len(doc)} pages, more than the {limit} accepted")
        return [_render(doc[i], dpi) for i in range(len(doc))]
    finally:
        doc.close()


def load_scan(source: bytes | Path | str) -> np.ndarray:
    """A scanned page (PNG or any format Pillow reads) as a grayscale uint8 array.

    ``source`` is the file content or its path. Transparency is flattened onto white.
    """
    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    with Image.open(io.BytesIO(data)) as opened:
        image: Image.Image = opened.copy()
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        image = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image.alpha_composite(rgba)
    return np.asarray(image.convert("L"), dtype=np.uint8).copy()


def to_png(image: np.ndarray) -> bytes:
    """A grayscale uint8 array as PNG bytes (for storing or sending a rendered page)."""
    out = io.BytesIO()
    Image.fromarray(np.asarray(image, dtype=np.uint8)).save(out, format="PNG")
    return out.getvalue()
