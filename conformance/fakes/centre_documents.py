"""The fake centre's documents: small image-only A4 PDFs (pikepdf, no fonts, no text) whose
front page carries a QR code naming the issuance and copy they belong to.

The suite judges what a terminal printed by meaning: a printed PDF is identified by its bytes
when the terminal printed what it was given, and otherwise by rasterizing the front page and
reading its QR code, so re-encoding by the terminal does not hide whose document it is.
"""

from __future__ import annotations

import numpy as np

from konbini.docimage.pdfimage import images_to_pdf
from konbini.docimage.qr import find_qr_codes, qr_image
from konbini.docimage.raster import rasterize_page

MARK_PREFIX = "KONBINI-CONFORMANCE "
PAGE_PX = (594, 420)  # A4 at ~51 dpi: enough for a readable QR code, small on the wire
READ_DPI = 72


def document_mark(issuance_id: str, copy: int) -> str:
    """The text in a document's QR code."""
    return f"{MARK_PREFIX}{issuance_id} {copy}"


def document_pdf(issuance_id: str, copy: int) -> bytes:
    """One copy: a front page with the mark and a plain back page."""
    front = np.full(PAGE_PX, 255, dtype=np.uint8)
    code = qr_image(document_mark(issuance_id, copy), 4)
    front[40 : 40 + code.shape[0], 40 : 40 + code.shape[1]] = code
    # A band whose length depends on the copy, so copies differ visibly too.
    front[300:310, 40 : 60 + 20 * (copy % 15)] = 0
    back = np.full(PAGE_PX, 255, dtype=np.uint8)
    back[500:504, 40:380] = 0
    return images_to_pdf([front, back])


def read_mark(pdf: bytes) -> str | None:
    """The mark on a printed document's front page, or None when none can be read."""
    try:
        image = rasterize_page(pdf, 0, READ_DPI)
    except Exception:  # an unreadable PDF is judged by the caller as "not ours"
        return None
    for found in find_qr_codes(image):
        if found.text.startswith(MARK_PREFIX):
            return found.text
    return None
