"""Verification of a printed certificate (VERIFY-OFFLINE, VERIFY-DETECT, VERIFY-KEY-ROTATION):
the checks every verifier runs, the centre's VerificationService, ``konbini verify`` and the
conformance suite alike.

:func:`verify_pdf` (the centre's PDF: front, back, front, back, ...) and :func:`verify_scans`
(scans of each sheet as (front PNG, back PNG), 150 dpi or more) run the same checks on each
sheet, in this order, and answer a ``VerifyDocumentResponse`` whose findings name them:

``trust_list``          the signed trust list chains to the document-signing CA and is current
``pages.count``         front/back pairs, as many as the seals say
``seal.present``        one ``KK1:`` QR code on the front
``seal.signature``      its claims verify with the municipality key the trust list names,
                        valid at the issue time printed in the seal (so old paper outlives a
                        key rotation)
``seal.consistent``     every page names the same municipality, kind, issue number, time and
                        subjects, and its own page number
``front.fingerprint``   the front's fingerprint, seal square excluded, is within
                        MATCH_THRESHOLD of the signed one (the procedure:
                        :mod:`konbini.docimage.fingerprint`, "Sealed pages")
``back.key``            the back's marker names a scramble key the trust list publishes
``back.matches_front``  the back, unscrambled with that key, shows the same page as the front

The verdict is GENUINE only when every check passed. Findings carry no personal data: ids,
codes, counts and distances only. Each page is rasterized once, at 150 dpi, and that one image
serves the seal, the fingerprint and the back comparison.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from cryptography import x509

from konbini.common.v1 import trust_pb2, types_pb2
from konbini.docimage.backside import PAGE_SIZE, check_back, marker_placement
from konbini.docimage.errors import DocImageError
from konbini.docimage.fingerprint import (
    MATCH_THRESHOLD,
    fingerprint_distance,
    front_fingerprint,
    seal_square,
)
from konbini.docimage.geometry import Box
from konbini.docimage.qr import find_qr_codes, qr_matrix
from konbini.docimage.raster import bin_down, load_scan, rasterize_pages
from konbini.docimage.register import (
    REGISTER_DPI,
    PagePlacement,
    RegistrationFailed,
    register_scan,
    seal_placement,
)
from konbini.pki import DocumentSignatureRejected, TrustListRejected
from konbini.pki.trustlist import TrustList, from_proto, scramble_key, verify_signed_trust_list_at
from konbini.seal import SEAL_PREFIX, SealRejected, signed_at, verify_seal
from konbini.verification.v1 import verification_pb2

PAGE_DPI = 150  # the resolution the front fingerprint is defined at; backs read at it too
MAX_SHEETS = 20  # a certificate has a few pages; more is refused before any rendering
Sheets = list[tuple[np.ndarray, np.ndarray]]

__all__ = [
    "MAX_SHEETS", "PAGE_DPI", "register_back", "register_front", "verify_pdf", "verify_scans",
    "verify_sheets",
]


@dataclass
class _Result:
    findings: list[verification_pb2.Finding] = field(default_factory=list)
    claims: types_pb2.SealClaims | None = None

    def add(self, check: str, passed: bool, detail: str, page: int = 0) -> bool:
        self.findings.append(
            verification_pb2.Finding(check=check, passed=passed, detail=detail, page=page)
        )
        return passed


def _trust(
    result: _Result, signed: trust_pb2.SignedTrustList, roots: Sequence[x509.Certificate],
    at: dt.datetime,
) -> TrustList | None:
    try:
        trust_list = verify_signed_trust_list_at(from_proto(signed), roots, at)
    except TrustListRejected as exc:
        result.add("trust_list", False, f"{exc.cause}: {exc.message}")
        return None
    result.add("trust_list", True, f"edition {trust_list.sequence}, "
               f"{len(trust_list.document_signers)} signers, "
               f"{len(trust_list.scramble_keys)} scramble keys")
    return trust_list


def _seal(result: _Result, front: np.ndarray, page: int) -> tuple[str, Box] | None:
    seals = [q for q in find_qr_codes(front) if q.text.startswith(SEAL_PREFIX)]
    if len(seals) != 1:
        result.add("seal.present", False, f"{len(seals)} visible seals found on the front", page)
        return None
    result.add("seal.present", True, "one visible seal found", page)
    return seals[0].text, seals[0].box


def _claims(
    result: _Result, text: str, trust_list: TrustList, at: dt.datetime, page: int
) -> types_pb2.SealClaims | None:
    try:
        claims = verify_seal(text, trust_list, at)
    except (SealRejected, DocumentSignatureRejected) as exc:
        result.add("seal.signature", False, f"{exc.cause}: {exc.message}", page)
        return None
    result.add("seal.signature", True, f"signed by municipality {claims.municipality_code}"
               f" key {claims.signing_key_id} at {signed_at(claims).isoformat()}", page)
    return claims


def _consistent(result: _Result, claims: types_pb2.SealClaims, page: int, pages: int) -> bool:
    first = result.claims
    if first is None:
        result.claims = first = claims
    same = all(getattr(claims, f) == getattr(first, f) for f in (
        "municipality_code", "kind", "issue_number", "issued_at_unix", "subject_digest",
        "signing_key_id", "page_count"))
    if not same:
        return result.add("seal.consistent", False,
                          "this page's seal belongs to another certificate", page)
    if claims.page_index != page or claims.page_count != pages:
        return result.add("seal.consistent", False, f"the seal says page {claims.page_index} of"
                          f" {claims.page_count}; this is sheet {page} of {pages}", page)
    return result.add("seal.consistent", True, f"page {page} of {pages}", page)


def _fingerprint(
    result: _Result, front: np.ndarray, seal: tuple[str, Box], claims: types_pb2.SealClaims,
    page: int,
) -> None:
    text, modules_box = seal
    square = seal_square(modules_box, len(qr_matrix(text)))  # error level M, as the signer draws
    try:
        distance = fingerprint_distance(
            front_fingerprint(front, exclude=[square]), claims.front_fingerprint
        )
    except ValueError:
        result.add("front.fingerprint", False, "the seal's fingerprint is malformed", page)
        return
    ok = distance <= MATCH_THRESHOLD
    result.add("front.fingerprint", ok, f"distance {distance} (match at most"
               f" {MATCH_THRESHOLD}): the front {'is' if ok else 'is NOT'} the page signed", page)


def _back(
    result: _Result, front: np.ndarray, back: np.ndarray, trust_list: TrustList, page: int
) -> None:
    def key_for(key_id: str) -> bytes:
        return scramble_key(trust_list, key_id).key

    try:
        side, comparison = check_back(front, back, key_for)
    except DocumentSignatureRejected as exc:
        result.add("back.key", False, exc.message, page)
        return
    except DocImageError as exc:
        result.add("back.key", False, f"the back's marker is unreadable: {exc}", page)
        return
    result.add("back.key", True, f"scramble key {side.key_id}", page)
    changed = len(comparison.changed_blocks)
    result.add("back.matches_front", comparison.ok,
               f"{changed} blocks differ, mean difference {comparison.mean_abs_diff:.1f}", page)


def verify_sheets(
    sheets: Sequence[tuple[np.ndarray, np.ndarray]], trust_list: TrustList, at: dt.datetime,
) -> list[verification_pb2.Finding]:
    """The per-sheet findings for (front, back) page images (fronts at :data:`PAGE_DPI`, backs
    at any resolution) against a trust list already verified (low-level: :func:`verify_pdf` and
    :func:`verify_scans` add the trust-list and page-count checks and the verdict)."""
    result = _Result()
    _verify_sheets(sheets, result, trust_list, at)
    return result.findings


def _verify_sheets(
    sheets: Sequence[tuple[np.ndarray, np.ndarray]], result: _Result, trust_list: TrustList,
    at: dt.datetime,
) -> None:
    for page, (front, back) in enumerate(sheets, start=1):
        seal = _seal(result, front, page)
        claims = None if seal is None else _claims(result, seal[0], trust_list, at, page)
        if seal is not None and claims is not None:
            _consistent(result, claims, page, len(sheets))
            _fingerprint(result, front, seal, claims, page)
        _back(result, front, back, trust_list, page)


def _response(result: _Result) -> verification_pb2.VerifyDocumentResponse:
    genuine = bool(result.findings) and all(f.passed for f in result.findings)
    response = verification_pb2.VerifyDocumentResponse(
        verdict=verification_pb2.VERDICT_GENUINE if genuine else verification_pb2.VERDICT_REJECTED,
        findings=result.findings,
    )
    claims = result.claims
    if claims is not None:
        response.municipality_code.value = claims.municipality_code
        response.kind = claims.kind
        response.issue_number = claims.issue_number
        response.issued_at.FromDatetime(signed_at(claims))
    return response


def _verify(
    load: Callable[[_Result], Sheets | None], signed: trust_pb2.SignedTrustList,
    roots: Sequence[x509.Certificate], at: dt.datetime,
) -> verification_pb2.VerifyDocumentResponse:
    result = _Result()
    trust_list = _trust(result, signed, roots, at)
    try:
        sheets = load(result)
    except DocImageError as exc:
        result.add("pages.count", False, f"the document cannot be read: {exc}")
        return _response(result)
    if sheets is not None and trust_list is not None:
        _verify_sheets(sheets, result, trust_list, at)
    return _response(result)


def verify_pdf(
    pdf: bytes, signed_trust_list: trust_pb2.SignedTrustList,
    roots: Sequence[x509.Certificate], at: dt.datetime,
) -> verification_pb2.VerifyDocumentResponse:
    """Verify the centre's PDF (each front page followed by its back) at time ``at``, against a
    signed trust list checked with the document-signing CA ``roots``."""

    def load(result: _Result) -> Sheets | None:
        pages = rasterize_pages(pdf, PAGE_DPI, limit=2 * MAX_SHEETS)
        count = len(pages)
        if not count or count % 2:
            result.add("pages.count", False, f"{count} pages: expected front/back pairs"
                       f" (at most {MAX_SHEETS} sheets)")
            return None
        result.add("pages.count", True, f"{count // 2} sheets (front and back)")
        return [(pages[i], pages[i + 1]) for i in range(0, count, 2)]

    return _verify(load, signed_trust_list, roots, at)


def _seal_placement(text: str) -> PagePlacement | None:
    return seal_placement(len(qr_matrix(text))) if text.startswith(SEAL_PREFIX) else None


def register_front(scan: np.ndarray) -> np.ndarray:
    """A front scan (any resolution, any small rotation, scale and shift) as the page at
    :data:`PAGE_DPI`, registered by its visible seal at :data:`SEAL_SQUARE_MM`; a scan whose
    seal cannot be located is only brought to PAGE_DPI (its checks then fail on their own)."""
    try:
        page = register_scan(scan, _seal_placement, REGISTER_DPI)
    except RegistrationFailed:
        return front_at_page_dpi(scan)
    factor = REGISTER_DPI // PAGE_DPI
    return bin_down(page, factor, factor)  # as a PDF page is rasterized at PAGE_DPI


def register_back(scan: np.ndarray) -> np.ndarray:
    """A back scan as the page at REGISTER_DPI, registered by its marker QR; unchanged when the
    marker cannot be located (reading the back then reports it)."""
    try:
        return register_scan(scan, marker_placement, REGISTER_DPI)
    except RegistrationFailed:
        return scan


def front_at_page_dpi(scan: np.ndarray) -> np.ndarray:
    """A front scan brought to :data:`PAGE_DPI` when it is a whole multiple of it (a 300 dpi A4
    scan is binned 2 × 2, exactly as a PDF page is rasterized), else as it is."""
    factor = round(scan.shape[1] / PAGE_SIZE[1])
    if factor >= 2 and abs(scan.shape[1] - factor * PAGE_SIZE[1]) <= factor:
        return bin_down(scan, factor, factor)
    return scan


def verify_scans(
    pages: Sequence[tuple[bytes, bytes]], signed_trust_list: trust_pb2.SignedTrustList,
    roots: Sequence[x509.Certificate], at: dt.datetime,
) -> verification_pb2.VerifyDocumentResponse:
    """Verify scans of each sheet, ``(front PNG, back PNG)`` in order (150 dpi or more, 300 dpi
    advised). Each side is first registered to the page by its QR code (:func:`register_front`,
    :func:`register_back`), so a scan may be turned by a degree or so, scaled by a percent or
    so and shifted by a few mm."""

    def load(result: _Result) -> Sheets | None:
        if not pages or len(pages) > MAX_SHEETS:
            result.add("pages.count", False, f"{len(pages)} sheets (1 to {MAX_SHEETS} expected)")
            return None
        result.add("pages.count", True, f"{len(pages)} sheets (front and back)")
        try:
            return [(register_front(load_scan(f)), register_back(load_scan(b))) for f, b in pages]
        except OSError as exc:  # Pillow: "cannot identify image file"
            raise DocImageError(f"a scan is not an image: {exc}") from exc

    return _verify(load, signed_trust_list, roots, at)
