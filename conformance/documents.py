"""Judging delivered documents by meaning: PDF structure (pikepdf), pages as images (pdfium),
the visible seal (QR) and the signed metadata against the trust list.

Every function returns findings (a list of human-readable problems) instead of raising, so a
check can attach all of them to its failure.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pikepdf

from konbini.common.v1 import types_pb2
from konbini.docimage.qr import find_qr_codes
from konbini.docimage.raster import is_a4_size, page_count, page_size_points, rasterize_page
from konbini.pki.trustlist import TrustList
from konbini.seal import decode_seal, parse_metadata, verify_document, verify_seal

MIN_DPI = 300.0
DPI_TOLERANCE = 0.98  # rounding of page boxes and image sizes
TEXT_OPERATORS = frozenset({"BT", "ET", "Tj", "TJ", "'", '"', "Tf", "Td", "TD", "Tm", "T*"})
QR_DPI = 200  # enough for the seal's modules, cheaper than 300


@dataclass(frozen=True)
class DrawnImage:
    """An image XObject drawn on a page and the resolution it is drawn at."""

    name: str
    width_px: int
    height_px: int
    dpi_x: float
    dpi_y: float


def _multiply(a: list[float], b: list[float]) -> list[float]:
    """PDF matrix product a × b ([a b c d e f] row-vector convention)."""
    return [
        a[0] * b[0] + a[1] * b[2],
        a[0] * b[1] + a[1] * b[3],
        a[2] * b[0] + a[3] * b[2],
        a[2] * b[1] + a[3] * b[3],
        a[4] * b[0] + a[5] * b[2] + b[4],
        a[4] * b[1] + a[5] * b[3] + b[5],
    ]


def _walk(
    container: pikepdf.Object,
    resources: pikepdf.Object,
    ctm: list[float],
    *,
    findings: list[str],
    images: list[DrawnImage],
    depth: int = 0,
) -> None:
    """Walk one content stream: text operators, fonts, and the CTM at each image."""
    if depth > 8:
        findings.append("form XObjects nested deeper than 8")
        return
    if resources is not None and "/Font" in resources:
        findings.append("a /Font resource is present")
    stack: list[list[float]] = []
    for operands, operator in pikepdf.parse_content_stream(container):
        op = str(operator)
        if op in TEXT_OPERATORS:
            findings.append(f"text operator {op} in a content stream")
        elif op == "q":
            stack.append(ctm)
        elif op == "Q":
            ctm = stack.pop() if stack else ctm
        elif op == "cm":
            ctm = _multiply([float(x) for x in operands], ctm)
        elif op == "Do":
            name = str(operands[0])
            xobjects = resources.get("/XObject", {}) if resources is not None else {}
            xobj = xobjects.get(name) if xobjects else None
            if xobj is None:
                findings.append(f"Do {name} names no XObject")
                continue
            subtype = str(xobj.get("/Subtype"))
            if subtype == "/Image":
                w, h = int(xobj.Width), int(xobj.Height)
                width_pt = math.hypot(ctm[0], ctm[1])
                height_pt = math.hypot(ctm[2], ctm[3])
                images.append(
                    DrawnImage(
                        name,
                        w,
                        h,
                        w / (width_pt / 72) if width_pt else math.inf,
                        h / (height_pt / 72) if height_pt else math.inf,
                    )
                )
            elif subtype == "/Form":
                matrix = [float(x) for x in xobj.get("/Matrix", [1, 0, 0, 1, 0, 0])]
                _walk(
                    xobj,
                    xobj.get("/Resources", resources),
                    _multiply(matrix, ctm),
                    findings=findings,
                    images=images,
                    depth=depth + 1,
                )
        elif op in ("BI", "INLINE IMAGE"):
            findings.append("an inline image (cannot check its resolution)")


def pdf_structure_findings(pdf: bytes) -> tuple[list[str], list[str], list[DrawnImage]]:
    """(text/font findings, page-size findings, drawn images) of a PDF."""
    text_findings: list[str] = []
    size_findings: list[str] = []
    images: list[DrawnImage] = []
    with pikepdf.open(io.BytesIO(pdf)) as doc:
        if "/AcroForm" in doc.Root:
            text_findings.append("the PDF has an AcroForm (form fields are text)")
        for number, page in enumerate(doc.pages, start=1):
            box = [float(x) for x in page.mediabox]
            width, height = box[2] - box[0], box[3] - box[1]
            if not is_a4_size(width, height):
                size_findings.append(
                    f"page {number} is {width:.1f}×{height:.1f} pt, not A4 portrait"
                )
            if "/Annots" in page.obj:
                text_findings.append(f"page {number} has annotations")
            page_findings: list[str] = []
            _walk(
                page.obj,
                page.obj.get("/Resources"),
                [1, 0, 0, 1, 0, 0],
                findings=page_findings,
                images=images,
            )
            text_findings += [f"page {number}: {f}" for f in page_findings]
    return text_findings, size_findings, images


def low_resolution(images: list[DrawnImage]) -> list[str]:
    return [
        f"image {i.name} ({i.width_px}×{i.height_px} px) is drawn at "
        f"{min(i.dpi_x, i.dpi_y):.0f} dpi (< {MIN_DPI:.0f})"
        for i in images
        if min(i.dpi_x, i.dpi_y) < MIN_DPI * DPI_TOLERANCE
    ]


def page_images(pdf: bytes, dpi: int = QR_DPI) -> Iterator[np.ndarray]:
    for index in range(page_count(pdf)):
        yield rasterize_page(pdf, index, dpi)


@dataclass(frozen=True)
class SealReading:
    """What the QR codes of a document's pages say."""

    claims: list[types_pb2.SealClaims]
    findings: list[str]


def read_seals(pdf: bytes, trust_list: TrustList | None, at: dt.datetime) -> SealReading:
    """Decode (and, with a trust list, verify) the visible seal of every page."""
    claims: list[types_pb2.SealClaims] = []
    findings: list[str] = []
    for number, image in enumerate(page_images(pdf), start=1):
        codes = [c for c in find_qr_codes(image) if c.text.startswith("KK1:")]
        if len(codes) != 1:
            findings.append(f"page {number}: {len(codes)} visible seal QR codes (expected 1)")
            continue
        try:
            if trust_list is not None:
                claims.append(verify_seal(codes[0].text, trust_list, at))
            else:
                claims.append(decode_seal(codes[0].text)[0])
        except Exception as error:
            findings.append(f"page {number}: seal rejected: {type(error).__name__}: {error}")
    return SealReading(claims, findings)


def metadata_findings(
    document: types_pb2.Document, trust_list: TrustList | None, at: dt.datetime
) -> tuple[types_pb2.DocumentMetadata | None, list[str]]:
    """Parse (and verify) a document's signed metadata; check front_pdf_sha256."""
    findings: list[str] = []
    try:
        metadata = (
            verify_document(document, trust_list, at)
            if trust_list is not None
            else parse_metadata(document)
        )
    except Exception as error:
        return None, [f"metadata rejected: {type(error).__name__}: {error}"]
    if hashlib.sha256(document.pdf).digest() != metadata.front_pdf_sha256:
        findings.append("front_pdf_sha256 does not match the PDF delivered")
    pages = page_count(document.pdf)
    if pages != metadata.page_count:
        findings.append(f"the PDF has {pages} pages; the metadata says {metadata.page_count}")
    return metadata, findings


def page_sizes(pdf: bytes) -> list[tuple[float, float]]:
    return [page_size_points(pdf, i) for i in range(page_count(pdf))]


# -- comparing renderings ----------------------------------------------------------------------
DIFF_DPI = 100
CELL = 12  # pixels at DIFF_DPI (about 3 mm)


def _cells(pdf: bytes) -> list[np.ndarray]:
    out = []
    for image in page_images(pdf, DIFF_DPI):
        h, w = image.shape
        img = image[: h - h % CELL, : w - w % CELL].astype(np.int16)
        out.append(img.reshape(h // CELL, CELL, w // CELL, CELL))
    return out


def changed_cells(a: bytes, b: bytes) -> list[np.ndarray]:
    """Per page, a bool grid of the cells where two renderings differ."""
    pages_a, pages_b = _cells(a), _cells(b)
    if len(pages_a) != len(pages_b):
        return [np.ones((1, 1), dtype=bool)]
    return [np.abs(x - y).max(axis=(1, 3)) > 64 for x, y in zip(pages_a, pages_b, strict=True)]


def _dilate(grid: np.ndarray, by: int = 1) -> np.ndarray:
    out = grid.copy()
    for dy in range(-by, by + 1):
        for dx in range(-by, by + 1):
            out |= np.roll(np.roll(grid, dy, axis=0), dx, axis=1)
    return out


def differs_beyond_noise(baseline_a: bytes, baseline_b: bytes, other: bytes) -> bool:
    """True when ``other`` differs from ``baseline_b`` somewhere that two renderings of the same
    record (``baseline_a``, ``baseline_b``: issue number, time, QR) do not."""
    noise = changed_cells(baseline_a, baseline_b)
    diff = changed_cells(baseline_b, other)
    if len(noise) != len(diff):
        return True
    return any(bool((d & ~_dilate(n)).any()) for n, d in zip(noise, diff, strict=True))
