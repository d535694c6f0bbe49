"""Render, fingerprint, seal and sign each copy of a request.

Per copy: render once without QR codes; rasterize each page at :data:`FINGERPRINT_DPI` and take
its front fingerprint excluding the QR square (the procedure of
:mod:`konbini.docimage.fingerprint`, "Sealed pages"); sign one
:class:`SealClaims` per page; render again with each page's own ``KK1:`` text in its QR square
(the renderer is deterministic, so the pages equal the first pass outside the QR square); then
sign the DocumentMetadata over the final PDF. Copies differ only in their issue number.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math

import numpy as np
from google.protobuf.timestamp_pb2 import Timestamp

from konbini.common.v1 import types_pb2
from konbini.docimage.fingerprint import front_fingerprint
from konbini.docimage.geometry import Box
from konbini.docimage.raster import POINTS_PER_INCH, rasterize_pages
from konbini.seal import encode_seal, sign_metadata, subject_digest
from municipality.documents.errors import ComposeError
from municipality.documents.layout import layout_for, subjects_of
from municipality.documents.request import DocumentRequest
from municipality.render import CertificateLayout, qr_box, render_certificate

FINGERPRINT_DPI = 150  # the resolution a verifier's fingerprint is compared at


class SealingError(RuntimeError):
    """The second rendering pass did not match the first (page count changed): a renderer bug,
    never to be shipped as a document."""


def qr_pixel_box(dpi: float = FINGERPRINT_DPI) -> Box:
    """The QR square of every page (:func:`municipality.render.qr_box`, quiet zone included) in
    pixels at ``dpi``, rounded outwards."""
    x, y, width, height = qr_box()
    scale = dpi / POINTS_PER_INCH
    return Box(
        math.floor(x * scale),
        math.floor(y * scale),
        math.ceil((x + width) * scale),
        math.ceil((y + height) * scale),
    )


def blanked(image: np.ndarray, box: Box) -> np.ndarray:
    """A copy of ``image`` with ``box`` painted paper white. Not part of the fingerprint
    procedure (the exclusion alone keeps the QR out); kept for tests that show painting the
    square makes no difference."""
    out = image.copy()
    out[max(0, box.top) : max(0, box.bottom), max(0, box.left) : max(0, box.right)] = 255
    return out


def page_fingerprints(pdf: bytes, dpi: float = FINGERPRINT_DPI) -> list[bytes]:
    """The signed front fingerprint of each page of ``pdf`` (drawn without its QR code): the
    page at ``dpi`` with the QR square, quiet zone included, excluded. A verifier excludes the
    QR it finds, grown by its quiet zone (:func:`konbini.docimage.fingerprint.seal_square`)."""
    box = qr_pixel_box(dpi)
    return [front_fingerprint(page, exclude=[box]) for page in rasterize_pages(pdf, dpi)]


def _timestamp(request: DocumentRequest) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(request.issued_at)
    return stamp


def _seal_copy(
    request: DocumentRequest, layout: CertificateLayout, digest: bytes, issue_number: str
) -> tuple[bytes, int]:
    """The sealed PDF of one copy and its page count."""
    draft = render_certificate(layout)
    fingerprints = page_fingerprints(draft)
    count = len(fingerprints)
    code = request.tenant.code.value
    seals = [
        encode_seal(
            types_pb2.SealClaims(
                municipality_code=code,
                kind=request.kind,  # type: ignore[arg-type]
                issue_number=issue_number,
                issued_at_unix=int(request.issued_at.timestamp()),
                subject_digest=digest,
                front_fingerprint=fingerprint,
                signing_key_id=request.signer.key_id,
                page_index=index + 1,
                page_count=count,
            ),
            request.signer.private_key,
        )
        for index, fingerprint in enumerate(fingerprints)
    ]

    def qr_for_page(index: int, page_count: int) -> str:
        if page_count != count:
            raise SealingError(f"second pass has {page_count} pages, the first {count}")
        return seals[index]

    return render_certificate(dataclasses.replace(layout, qr_for_page=qr_for_page)), count


def compose(request: DocumentRequest) -> list[types_pb2.Document]:
    """One signed Document per copy of ``request``: an image-only A4 PDF whose every page
    carries its signed visible seal, and the signed DocumentMetadata.

    Raises :class:`ComposeError` for an inconsistent request, ``GlyphMissing`` for a character
    the font cannot draw (map it to CHARACTERS_NOT_SUPPORTED), ``FontMissing`` without a font.
    """
    copies = len(request.issue_numbers)
    if copies < 1:
        raise ComposeError("a request prints at least one copy")
    code = request.tenant.code.value
    digest = subject_digest(code, subjects_of(request))
    base = layout_for(request)  # the body is shared; only the issue number changes per copy
    stamp = _timestamp(request)
    documents = []
    for index, number in enumerate(request.issue_numbers):
        layout = dataclasses.replace(base, issue_number=number)
        pdf, count = _seal_copy(request, layout, digest, number)
        metadata = types_pb2.DocumentMetadata(
            municipality_code=types_pb2.MunicipalityCode(value=code),
            kind=request.kind,  # type: ignore[arg-type]
            issue_number=number,
            issued_at=stamp,
            subject_digest=digest,
            front_pdf_sha256=hashlib.sha256(pdf).digest(),
            page_count=count,
            copy_index=index + 1,
            copy_count=copies,
            signing_key_id=request.signer.key_id,
            reservation_id=request.reservation_id,
        )
        signed, signature = sign_metadata(metadata, request.signer.private_key)
        documents.append(types_pb2.Document(pdf=pdf, signed_metadata=signed, signature=signature))
    return documents
