"""The back of every front page (DOC-BACK-SCRAMBLE, DOC-COPY-VOID): the centre's choice of key.

``add_back_sides(front_pdf, keys, at) -> bytes``: each front page of the municipality's PDF
(kept as it is) followed by its back, made under ``keys.current_key_at(at)``. The back itself
(layout, scramble, marker, copy-void ground) and reading it again are
:mod:`konbini.docimage.backside`, the one implementation every verifier shares.
"""

from __future__ import annotations

import datetime as dt

from konbini.docimage.backside import PRINT_DPI, add_back_pages
from konbini.pki import ScrambleKeySet


def add_back_sides(front_pdf: bytes, keys: ScrambleKeySet, at: dt.datetime) -> bytes:
    """The front pages of ``front_pdf``, each followed by its back at PRINT_DPI under the
    scramble key current at ``at`` (raises ``NoScrambleKey`` when none is)."""
    key = keys.current_key_at(at)
    return add_back_pages(front_pdf, key.key_id, key.key, PRINT_DPI)
