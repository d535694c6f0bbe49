"""The municipality's certificates: a layout per kind, rendered image-only and sealed.

:func:`compose` turns a :class:`DocumentRequest` into one signed ``Document`` per copy (each
front page carrying its own signed visible seal); :func:`layout_for` is the pure layout step,
testable without pixels; :func:`bench_compose` backs ``konbini bench render``.
"""

from municipality.documents.bench import bench_compose
from municipality.documents.compose import (
    SealingError,
    blanked,
    compose,
    page_fingerprints,
    qr_pixel_box,
)
from municipality.documents.errors import ComposeError
from municipality.documents.layout import layout_for, subjects_of
from municipality.documents.request import DocumentRequest
from municipality.documents.signer import DocumentSigner

__all__ = [
    "ComposeError",
    "DocumentRequest",
    "DocumentSigner",
    "SealingError",
    "bench_compose",
    "blanked",
    "compose",
    "layout_for",
    "page_fingerprints",
    "qr_pixel_box",
    "subjects_of",
]
