"""Compose benchmark behind ``konbini bench render``: median milliseconds per copy of each kind.

A copy costs two renders, a rasterization of each page, a fingerprint and two signatures per page
(seal) plus one (metadata). The sample records come from :mod:`municipality.documents.samples`;
the signing key is generated for the run and never stored.
"""

from __future__ import annotations

import statistics
import time

from cryptography.hazmat.primitives.asymmetric import ec

from konbini.common.v1 import types_pb2
from konbini.docimage.raster import page_count
from municipality.documents.compose import compose
from municipality.documents.samples import sample_request
from municipality.documents.signer import DocumentSigner
from municipality.render.glyphs import default_font


def bench_compose(kind: int, *, runs: int = 5) -> dict[str, object]:
    """Compose one copy of ``kind`` ``runs`` times after a warm-up; the median and its per-page
    share in milliseconds, plus the first (cold for this kind) run."""
    if runs < 1:
        raise ValueError("runs must be at least 1")
    signer = DocumentSigner("bench", ec.generate_private_key(ec.SECP256R1()))
    request = sample_request(kind, signer, font_path=default_font().choice.path)
    start = time.perf_counter()
    pages = page_count(compose(request)[0].pdf)
    first_ms = (time.perf_counter() - start) * 1000
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        compose(request)
        times.append((time.perf_counter() - start) * 1000)
    median = statistics.median(times)
    return {
        "kind": types_pb2.CertificateKind.Name(kind),  # type: ignore[arg-type]
        "pages": pages,
        "runs": runs,
        "first_ms": round(first_ms, 1),
        "median_ms_per_copy": round(median, 1),
        "median_ms_per_page": round(median / pages, 1),
    }
