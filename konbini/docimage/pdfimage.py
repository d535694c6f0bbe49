"""Image-only PDF pages with pikepdf: one grayscale image XObject, no fonts, no text operators."""

from __future__ import annotations

import io
import zlib

import numpy as np
import pikepdf

from konbini.docimage.raster import A4_POINTS

FLATE_LEVEL = 6  # level 9 costs far more time for a few percent on page images


def image_xobject(pdf: pikepdf.Pdf, image: np.ndarray) -> pikepdf.Stream:
    """A DeviceGray 8-bit Flate image stream for ``image`` (uint8, rows × columns)."""
    if image.ndim != 2 or image.dtype != np.uint8:
        raise ValueError("expected a 2-D uint8 grayscale image")
    height, width = image.shape
    stream = pikepdf.Stream(pdf, zlib.compress(np.ascontiguousarray(image).tobytes(), FLATE_LEVEL))
    stream.Type = pikepdf.Name.XObject
    stream.Subtype = pikepdf.Name.Image
    stream.Width = width
    stream.Height = height
    stream.ColorSpace = pikepdf.Name.DeviceGray
    stream.BitsPerComponent = 8
    stream.Filter = pikepdf.Name.FlateDecode
    return stream


def image_page(
    pdf: pikepdf.Pdf, image: np.ndarray, size_points: tuple[float, float] = A4_POINTS
) -> pikepdf.Page:
    """A page of ``pdf`` (not yet inserted) showing ``image`` over the whole page."""
    width, height = size_points
    content = f"q {width:.2f} 0 0 {height:.2f} 0 0 cm /Im0 Do Q\n".encode()
    page = pikepdf.Dictionary(
        Type=pikepdf.Name.Page,
        MediaBox=pikepdf.Array([0, 0, width, height]),
        Resources=pikepdf.Dictionary(XObject=pikepdf.Dictionary(Im0=image_xobject(pdf, image))),
        Contents=pikepdf.Stream(pdf, content),
    )
    return pikepdf.Page(pdf.make_indirect(page))


def images_to_pdf(
    images: list[np.ndarray], size_points: tuple[float, float] = A4_POINTS
) -> bytes:
    """A PDF with one image-only page per image (each scaled to fill ``size_points``)."""
    pdf = pikepdf.new()
    for image in images:
        pdf.pages.append(image_page(pdf, image, size_points))
    out = io.BytesIO()
    pdf.save(out)
    return out.getvalue()
