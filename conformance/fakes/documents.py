"""Front pages the fake municipality issues: a real A4 PDF (vector shapes only) whose pattern
differs with every document, and signed metadata naming the card holder it was asked for."""

from __future__ import annotations

import datetime as dt
import hashlib
import io

import pikepdf
from cryptography.hazmat.primitives.asymmetric import ec

from konbini.common.v1 import types_pb2
from konbini.seal import sign_metadata, subject_digest

A4_POINTS = (595.276, 841.89)


def holder_of(serial: str) -> tuple[str, str]:
    """(subject id, name) the fake municipality holds for the card ``serial``: no personal data,
    distinct per card, so a document's subject digest says whose it is."""
    return f"card-{serial}", f"holder {serial[:12]}"


def holder_digest(code: str, serial: str) -> bytes:
    """The subject digest the fake signs into every document for the card ``serial``."""
    return subject_digest(code, [holder_of(serial)])


def front_pdf(seed: bytes) -> bytes:
    """A one-page A4 PDF of filled boxes placed by ``seed``: every document looks different, so
    a back side scrambled from another front does not match it."""
    digest = hashlib.sha256(seed).digest() * 2
    shapes = []
    for i in range(16):
        x = 40 + digest[i] * 480 // 255
        y = 60 + (digest[i + 16] * 700 // 255)
        w, h = 30 + digest[i + 32] % 90, 20 + digest[i + 40] % 60
        shapes.append(f"{x} {y} {w} {h} re f\n")
    pdf = pikepdf.new()
    page = pikepdf.Page(
        pikepdf.Dictionary(
            Type=pikepdf.Name.Page,
            MediaBox=[0, 0, *A4_POINTS],
            Contents=pdf.make_stream(("0 g\n" + "".join(shapes)).encode()),
        )
    )
    pdf.pages.append(page)
    out = io.BytesIO()
    pdf.save(out, deterministic_id=True)
    return out.getvalue()


def make_document(
    *,
    code: str,
    serial: str,
    kind: int,
    reservation_id: str,
    copy_index: int,
    copies: int,
    issued_at: dt.datetime,
    key: ec.EllipticCurvePrivateKey,
    key_id: str,
) -> types_pb2.Document:
    """One signed copy for the card ``serial`` (front page only, as a municipality answers)."""
    issue_number = f"{reservation_id[:10]}-{copy_index}"
    pdf = front_for(code, serial, issue_number)
    meta = types_pb2.DocumentMetadata(
        municipality_code=types_pb2.MunicipalityCode(value=code),
        kind=kind,  # type: ignore[arg-type]
        issue_number=issue_number,
        subject_digest=holder_digest(code, serial),
        front_pdf_sha256=hashlib.sha256(pdf).digest(),
        page_count=1,
        copy_index=copy_index,
        copy_count=copies,
        signing_key_id=key_id,
        reservation_id=reservation_id,
    )
    meta.issued_at.FromDatetime(issued_at)
    signed, signature = sign_metadata(meta, key)
    return types_pb2.Document(pdf=pdf, signed_metadata=signed, signature=signature)


def front_for(code: str, serial: str, issue_number: str) -> bytes:
    """The front PDF the fake made for this card and issue number (to compare a delivered
    front page with)."""
    return front_pdf(f"{code}/{serial}/{issue_number}".encode())
