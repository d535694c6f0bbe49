"""Typed failures of the document-image primitives.

They are ``ValueError`` subclasses (the input was not what was expected); callers that speak the
wire map them to the catalogue reason ``DOCUMENT_INVALID``.
"""

from __future__ import annotations


class DocImageError(ValueError):
    """Base class: a document image or PDF could not be used."""


class PdfUnreadable(DocImageError):
    """The bytes are not a PDF that the renderer can open, or the page index is out of range."""


class ImageShapeMismatch(DocImageError):
    """Two images that must have the same size (front and unscrambled back) do not."""


class BackSideUnreadable(DocImageError):
    """The back-side marker QR was not found or does not carry a valid ``KKB1`` payload."""
