"""Verification of a printed certificate (VERIFY-OFFLINE, VERIFY-DETECT, VERIFY-KEY-ROTATION).

:func:`verify_pdf` (the centre's PDF: front, back, front, back, ...) and :func:`verify_scans`
(scans of each sheet as (front PNG, back PNG), 300 dpi) run the same checks on each sheet:

``trust_list``          the signed trust list chains to the document-signing CA and is current
``pages.count``         front/back pairs, as many as the seals say
``seal.present``        one ``KK1:`` QR code on the front
``seal.signature``      its claims verify with the municipality key the trust list names,
                        valid at the issue time printed in the seal (so old paper outlives a
                        key rotation)
``seal.consistent``     every page names the same municipality, kind, issue number, time and
                        subjects, and its own page number
``front.fingerprint``   the front image (QR square blanked) matches the signed fingerprint
``back.key``            the back's marker names a scramble key the trust list publishes
``back.matches_front``  the back, unscrambled with that key, shows the same page as the front

The verdict is GENUINE only when every check passed. Findings carry no personal data: ids,
codes, counts and distances only. ``VerificationServicer(trust, roots, clock=...)`` serves the
same over gRPC (``trust``: anything with ``current() -> SignedTrustList``, e.g.
:class:`centre.trustpub.TrustListPublisher`; ``roots``: the document-signing CA certificates).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import grpc
import numpy as np
from cryptography import x509
from PIL import Image

from centre.backside import NUDGES, PAGE_DPI, read_back_side
from konbini.clock import Clock, SystemClock
from konbini.common.v1 import trust_pb2, types_pb2
from konbini.docimage.errors import DocImageError
from konbini.docimage.fingerprint import (
    MATCH_THRESHOLD,
    fingerprint_distance,
    front_fingerprint,
)
from konbini.docimage.geometry import Box
from konbini.docimage.qr import QUIET_ZONE_MODULES, find_qr_codes, qr_matrix
from konbini.docimage.raster import load_scan, page_count, rasterize_page
from konbini.docimage.scramble import compare_front_back, unscramble
from konbini.errors import FieldViolation, invalid
from konbini.pki import DocumentSignatureRejected, TrustListRejected
from konbini.pki.trustlist import TrustList, from_proto, scramble_key, verify_signed_trust_list_at
from konbini.seal import SEAL_PREFIX, SealRejected, signed_at, verify_seal
from konbini.verification.v1 import verification_pb2, verification_pb2_grpc

PDF_DPI = 150  # the resolution the municipality fingerprints at and the centre scrambles at
BACK_DPI = PAGE_DPI
MAX_SHEETS = 20  # a certificate has a few pages; more is refused before any rendering


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


def seal_exclusion(text: str, modules_box: Box) -> Box:
    """The QR square with its quiet zone, from the box of its modules: what the municipality
    blanked before fingerprinting (the QR carries the fingerprint, so it cannot be in it)."""
    modules = len(qr_matrix(text))  # the municipality draws error level M too: same size
    quiet = round(QUIET_ZONE_MODULES * modules_box.width / modules)
    return modules_box.expanded(quiet)


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


def _blanked(image: np.ndarray, box: Box) -> np.ndarray:
    out = image.copy()
    out[max(0, box.top):max(0, box.bottom), max(0, box.left):max(0, box.right)] = 255
    return out


def _fingerprint(
    result: _Result, front: np.ndarray, exclusion: Box, claims: types_pb2.SealClaims, page: int
) -> None:
    try:
        # Painted white and excluded, as the municipality did before the QR existed.
        distance = fingerprint_distance(
            front_fingerprint(_blanked(front, exclusion), exclude=[exclusion]),
            claims.front_fingerprint,
        )
    except ValueError:
        result.add("front.fingerprint", False, "the seal's fingerprint is malformed", page)
        return
    ok = distance <= MATCH_THRESHOLD
    result.add("front.fingerprint", ok, f"distance {distance} (match at most"
               f" {MATCH_THRESHOLD}): the front {'is' if ok else 'is NOT'} the page signed", page)


def _resized(image: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    if image.shape == shape:
        return image
    resized = Image.fromarray(image).resize((shape[1], shape[0]), Image.Resampling.BOX)
    return np.asarray(resized, dtype=np.uint8)


def _back(
    result: _Result, front: np.ndarray, back: np.ndarray, trust_list: TrustList, page: int
) -> None:
    try:
        found = read_back_side(back)
    except DocImageError as exc:
        result.add("back.key", False, f"the back's marker is unreadable: {exc}", page)
        return
    try:
        key = scramble_key(trust_list, found.key_id)
    except DocumentSignatureRejected:
        result.add("back.key", False, f"scramble key {found.key_id!r} is not published", page)
        return
    result.add("back.key", True, f"scramble key {key.key_id}", page)
    comparison = None
    for nudge in NUDGES:  # the first is the marker's own estimate; others only on failure
        try:
            side = found if nudge == (0, 0) else read_back_side(back, nudge)
            restored = unscramble(side.scrambled, key.key, side.block)
            comparison = compare_front_back(_resized(front, restored.shape), restored, side.block)
        except DocImageError as exc:
            result.add("back.matches_front", False, str(exc), page)
            return
        if comparison.ok:
            break
    assert comparison is not None  # NUDGES is never empty
    changed = len(comparison.changed_blocks)
    result.add("back.matches_front", comparison.ok,
               f"{changed} blocks differ, mean difference {comparison.mean_abs_diff:.1f}", page)


def _verify_sheets(
    sheets: Sequence[tuple[np.ndarray, np.ndarray]], result: _Result, trust_list: TrustList,
    at: dt.datetime,
) -> None:
    for page, (front, back) in enumerate(sheets, start=1):
        seal = _seal(result, front, page)
        claims = None if seal is None else _claims(result, seal[0], trust_list, at, page)
        if seal is not None and claims is not None:
            _consistent(result, claims, page, len(sheets))
            _fingerprint(result, front, seal_exclusion(*seal), claims, page)
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


Sheets = list[tuple[np.ndarray, np.ndarray]]


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
    """Verify the centre's PDF (each front page followed by its back) at time ``at``."""

    def load(result: _Result) -> Sheets | None:
        count = page_count(pdf)
        if not count or count % 2 or count > 2 * MAX_SHEETS:
            result.add("pages.count", False, f"{count} pages: expected front/back pairs"
                       f" (at most {MAX_SHEETS} sheets)")
            return None
        result.add("pages.count", True, f"{count // 2} sheets (front and back)")
        # Backs at their own 300 dpi: a renderer's downscaling would blur the scramble blocks.
        return [
            (rasterize_page(pdf, i, PDF_DPI), rasterize_page(pdf, i + 1, BACK_DPI))
            for i in range(0, count, 2)
        ]

    return _verify(load, signed_trust_list, roots, at)


def verify_scans(
    pages: Sequence[tuple[bytes, bytes]], signed_trust_list: trust_pb2.SignedTrustList,
    roots: Sequence[x509.Certificate], at: dt.datetime,
) -> verification_pb2.VerifyDocumentResponse:
    """Verify scans of each sheet, ``(front PNG, back PNG)`` in order (300 dpi or more)."""

    def load(result: _Result) -> Sheets | None:
        if not pages or len(pages) > MAX_SHEETS:
            result.add("pages.count", False, f"{len(pages)} sheets (1 to {MAX_SHEETS} expected)")
            return None
        result.add("pages.count", True, f"{len(pages)} sheets (front and back)")
        try:
            return [(load_scan(f), load_scan(b)) for f, b in pages]
        except OSError as exc:  # Pillow: "cannot identify image file"
            raise DocImageError(f"a scan is not an image: {exc}") from exc

    return _verify(load, signed_trust_list, roots, at)


class VerificationServicer(verification_pb2_grpc.VerificationServiceServicer):
    """konbini.verification.v1.VerificationService (public: no client certificate)."""

    def __init__(
        self, trust: object, roots: Sequence[x509.Certificate], clock: Clock | None = None
    ) -> None:
        self._trust = trust
        self._roots = tuple(roots)
        self._clock = clock or SystemClock()

    async def _signed(self) -> trust_pb2.SignedTrustList:
        return await asyncio.to_thread(self._trust.current)  # type: ignore[attr-defined]

    async def VerifyDocument(
        self, request: verification_pb2.VerifyDocumentRequest, context: grpc.aio.ServicerContext
    ) -> verification_pb2.VerifyDocumentResponse:
        source = request.WhichOneof("source")
        if source is None:
            raise invalid([FieldViolation("source", "give the pdf or the scans")])
        signed = await self._signed()
        at = self._clock.now()
        if source == "pdf":
            return await asyncio.to_thread(verify_pdf, request.pdf, signed, self._roots, at)
        pairs = [(p.front_png, p.back_png) for p in request.scans.pages]
        return await asyncio.to_thread(verify_scans, pairs, signed, self._roots, at)

    async def GetTrustList(
        self, request: verification_pb2.GetTrustListRequest, context: grpc.aio.ServicerContext
    ) -> verification_pb2.GetTrustListResponse:
        return verification_pb2.GetTrustListResponse(trust_list=await self._signed())
