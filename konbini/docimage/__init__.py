"""Document-image primitives shared by the centre, verifiers and the conformance suite.

The safe, high-level calls:

* :func:`rasterize_page` / :func:`load_scan` — a page as a grayscale uint8 array;
* :func:`find_qr_codes`, :func:`b45encode` / :func:`b45decode` — the visible seal's transport;
* :func:`front_fingerprint` / :func:`fingerprint_distance` — the front's digest for the signed seal;
* :func:`add_back_pages` (centre) and :func:`check_back` (verifier) — the scrambled back side;
* :mod:`konbini.verify` builds the whole certificate check on these.

Modules hold the low-level pieces (``scramble.derive_shuffle``, ``fingerprint.front_grid``, …).
"""

from konbini.docimage.backside import (
    BackSide,
    add_back_pages,
    check_back,
    make_back_page,
    read_back,
    scramble_source,
    unscramble_back,
)
from konbini.docimage.base45 import b45decode, b45encode
from konbini.docimage.errors import (
    BackSideUnreadable,
    DocImageError,
    ImageShapeMismatch,
    PdfUnreadable,
)
from konbini.docimage.fingerprint import (
    MATCH_THRESHOLD,
    fingerprint_distance,
    fingerprints_match,
    front_fingerprint,
    seal_square,
)
from konbini.docimage.geometry import Box
from konbini.docimage.qr import FoundQr, find_qr_codes, qr_image
from konbini.docimage.raster import (
    all_pages_a4,
    is_a4_size,
    load_scan,
    page_count,
    page_size_points,
    rasterize_page,
    rasterize_pages,
)
from konbini.docimage.scramble import Comparison, compare_front_back, scramble, unscramble

__all__ = [
    "MATCH_THRESHOLD",
    "BackSide",
    "BackSideUnreadable",
    "Box",
    "Comparison",
    "DocImageError",
    "FoundQr",
    "ImageShapeMismatch",
    "PdfUnreadable",
    "add_back_pages",
    "all_pages_a4",
    "b45decode",
    "b45encode",
    "check_back",
    "compare_front_back",
    "find_qr_codes",
    "fingerprint_distance",
    "fingerprints_match",
    "front_fingerprint",
    "is_a4_size",
    "load_scan",
    "make_back_page",
    "page_count",
    "page_size_points",
    "qr_image",
    "rasterize_page",
    "rasterize_pages",
    "read_back",
    "scramble",
    "scramble_source",
    "seal_square",
    "unscramble",
    "unscramble_back",
]
