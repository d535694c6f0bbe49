"""Composed certificates, end to end: image-only A4 PDFs whose every page carries a signed
visible seal naming the right subject and fingerprinting the page as printed."""

from __future__ import annotations

import dataclasses
import datetime as dt
import io

import numpy as np
import pikepdf
import pytest

from konbini.common.v1 import types_pb2
from konbini.docimage.fingerprint import (
    MATCH_THRESHOLD,
    fingerprint_distance,
    front_fingerprint,
    seal_square,
)
from konbini.docimage.qr import find_qr_codes, qr_matrix
from konbini.docimage.raster import all_pages_a4, rasterize_page, rasterize_pages
from konbini.pki import PkiDir, TrustList, pki_init, verify_signed_trust_list_at
from konbini.pki.x509util import load_certificate
from konbini.register.v1 import register_pb2 as R
from konbini.seal import (
    decode_seal,
    front_pdf_sha256_matches,
    subject_digest,
    verify_document,
    verify_seal,
)
from municipality.documents import (
    ComposeError,
    DocumentRequest,
    DocumentSigner,
    bench_compose,
    blanked,
    compose,
    layout_for,
    page_fingerprints,
    qr_pixel_box,
)
from municipality.documents.samples import (
    ALL_KINDS,
    KOFU,
    sample_household,
    sample_register,
    sample_request,
)
from municipality.render import GlyphMissing, render_certificate
from municipality.render.fonts import IPAMJ_PATHS

IPAMJ = next((p for p in IPAMJ_PATHS if p.is_file()), None)
pytestmark = pytest.mark.skipif(IPAMJ is None, reason="IPAmj Mincho (fonts-ipamj-mincho) missing")

K = types_pb2
NOW = dt.datetime(2025, 4, 1, 1, 30, tzinfo=dt.UTC)
TEXT_OPERATORS = {"BT", "ET", "Tj", "TJ", "'", '"', "Tf", "Td", "TD", "Tm", "T*", "Tr", "Tz"}


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PkiDir:
    path = tmp_path_factory.mktemp("pki")
    pki_init(path, now=NOW - dt.timedelta(days=1))
    return PkiDir(path)


@pytest.fixture(scope="module")
def trust_list(pki: PkiDir) -> TrustList:
    signed = pki.signed_trust_list_at(NOW, sequence=1, next_update_in=dt.timedelta(days=1))
    return verify_signed_trust_list_at(signed, [load_certificate(pki.docsign_ca.cert)], NOW)


@pytest.fixture(scope="module")
def signer(pki: PkiDir) -> DocumentSigner:
    return DocumentSigner.from_paths(pki.document_signer(KOFU))


def request_of(kind: int, signer: DocumentSigner, **overrides: object) -> DocumentRequest:
    assert IPAMJ is not None
    return sample_request(kind, signer, font_path=IPAMJ, issued_at=NOW, **overrides)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def composed(signer: DocumentSigner) -> dict[int, tuple[DocumentRequest, list[K.Document]]]:
    out = {}
    for kind in ALL_KINDS:
        request = request_of(kind, signer, copies=2 if kind == ALL_KINDS[0] else 1)
        out[kind] = (request, compose(request))
    return out


def expected_subjects(kind: int) -> list[tuple[str, str]]:
    """Who each sample document is about, written out from the sample data."""
    household = sample_household()
    members = sample_register().members
    return {
        K.CERTIFICATE_KIND_RESIDENCE_RECORD: [(r.id, r.name) for r in household],
        K.CERTIFICATE_KIND_RESIDENCE_RECORD_ITEMS: [(r.id, r.name) for r in household],
        K.CERTIFICATE_KIND_SEAL_REGISTRATION: [(household[0].id, household[0].name)],
        K.CERTIFICATE_KIND_INCOME_TAX: [(household[0].id, household[0].name)],
        K.CERTIFICATE_KIND_FAMILY_REGISTER_FULL: [(m.id, m.name) for m in members],
        K.CERTIFICATE_KIND_FAMILY_REGISTER_INDIVIDUAL: [(members[0].id, members[0].name)],
        K.CERTIFICATE_KIND_FAMILY_REGISTER_ADDRESS_HISTORY: [(m.id, m.name) for m in members],
    }[kind]


def _forms(obj: pikepdf.Object) -> list[pikepdf.Object]:
    xobjects = obj.get("/Resources", {}).get("/XObject", {})
    return [x for x in xobjects.values() if x.get("/Subtype") == "/Form"]


def assert_image_only(pdf_bytes: bytes) -> None:
    pdf = pikepdf.open(io.BytesIO(pdf_bytes))
    for obj in pdf.objects:
        if isinstance(obj, pikepdf.Dictionary | pikepdf.Stream):
            assert "/Font" not in obj
            assert obj.get("/Type") != "/Font"
    streams = [page.obj for page in pdf.pages]
    streams += [form for page in pdf.pages for form in _forms(page.obj)]
    assert len(streams) > 20  # pages and their glyph forms
    for stream in streams:
        ops = {str(i.operator) for i in pikepdf.parse_content_stream(stream)}
        assert not ops & TEXT_OPERATORS
    assert b"/Font" not in pdf_bytes


@pytest.mark.parametrize("kind", ALL_KINDS, ids=K.CertificateKind.Name)
def test_every_kind_is_sealed_page_by_page(
    composed: dict, trust_list: TrustList, kind: int
) -> None:
    request, documents = composed[kind]
    assert len(documents) == len(request.issue_numbers)
    digest = subject_digest(KOFU, expected_subjects(kind))
    for copy, document in enumerate(documents):
        assert_image_only(document.pdf)
        assert all_pages_a4(document.pdf)
        metadata = verify_document(document, trust_list, NOW)
        assert front_pdf_sha256_matches(document)
        assert (metadata.kind, metadata.subject_digest) == (kind, digest)
        assert metadata.issue_number == request.issue_numbers[copy]
        assert (metadata.copy_index, metadata.copy_count) == (copy + 1, len(documents))
        assert metadata.reservation_id == request.reservation_id
        pages = rasterize_pages(document.pdf, 150)
        assert metadata.page_count == len(pages)
        for index, image in enumerate(pages):
            found = find_qr_codes(image)
            assert len(found) == 1, f"page {index + 1}: {len(found)} QR codes"
            claims = verify_seal(found[0].text, trust_list, NOW)
            assert claims.subject_digest == digest
            assert (claims.kind, claims.issue_number) == (kind, metadata.issue_number)
            assert (claims.page_index, claims.page_count) == (index + 1, len(pages))
            assert claims.issued_at_unix == int(NOW.timestamp())
            # what a verifier does: exclude the seal square of the QR it found, fingerprint
            square = seal_square(found[0].box, len(qr_matrix(found[0].text)))
            assert abs(square.left - qr_pixel_box().left) <= 2
            recomputed = front_fingerprint(image, exclude=[square])
            assert fingerprint_distance(recomputed, claims.front_fingerprint) <= MATCH_THRESHOLD
            # painting the square white first (an older procedure) gives the same digest
            assert front_fingerprint(blanked(image, square), exclude=[square]) == recomputed


def test_copies_differ_only_in_issue_number(composed: dict) -> None:
    request, (first, second) = composed[ALL_KINDS[0]]
    a, b = rasterize_page(first.pdf, 0, 150), rasterize_page(second.pdf, 0, 150)
    box = qr_pixel_box()
    changed = np.argwhere(a != b)
    outside_qr = changed[
        ~(
            (changed[:, 0] >= box.top)
            & (changed[:, 0] < box.bottom)
            & (changed[:, 1] >= box.left)
            & (changed[:, 1] < box.right)
        )
    ]
    assert len(outside_qr) > 0  # the issue number in the footer
    assert outside_qr[:, 0].min() > box.top  # and nothing above the footer band
    assert request.issue_numbers[0] != request.issue_numbers[1]


def test_a_changed_name_gives_a_far_fingerprint(composed: dict, signer: DocumentSigner) -> None:
    _, (document, _) = composed[K.CERTIFICATE_KIND_RESIDENCE_RECORD]
    genuine = decode_seal(find_qr_codes(rasterize_page(document.pdf, 0, 150))[0].text)[0]
    household = sample_household()
    household[1].name = "渡邊 健太郎"  # what a forger would print over the genuine page
    forged = render_certificate(layout_for(request_of(1, signer, residents=household)))
    far = fingerprint_distance(page_fingerprints(forged)[0], genuine.front_fingerprint)
    assert far > MATCH_THRESHOLD


def test_long_household_spreads_over_pages_each_with_its_own_seal(
    signer: DocumentSigner, trust_list: TrustList
) -> None:
    base = sample_household()[1]
    household = []
    for i in range(12):
        member = R.Resident()
        member.CopyFrom(base)
        member.id = f"R-{100 + i}"
        member.name = f"葛西 次郎{i}"
        household.append(member)
    (document,) = compose(request_of(1, signer, residents=household))
    pages = rasterize_pages(document.pdf, 150)
    assert len(pages) >= 2
    seen = []
    for index, image in enumerate(pages):
        claims = verify_seal(find_qr_codes(image)[0].text, trust_list, NOW)
        assert (claims.page_index, claims.page_count) == (index + 1, len(pages))
        seen.append(claims.front_fingerprint)
    assert seen[0] != seen[1]  # each page fingerprints itself, not the first page
    digest = subject_digest(KOFU, [(m.id, m.name) for m in household])
    assert verify_document(document, trust_list, NOW).subject_digest == digest


def test_inconsistent_requests_are_refused_before_rendering(signer: DocumentSigner) -> None:
    seal_request = request_of(K.CERTIFICATE_KIND_SEAL_REGISTRATION, signer)
    other_seal = R.SealRegistration(resident_id="R-9999", number="1")
    cases = [
        dataclasses.replace(seal_request, seal=other_seal),
        dataclasses.replace(seal_request, seal=None),
        dataclasses.replace(
            request_of(K.CERTIFICATE_KIND_INCOME_TAX, signer),
            options=K.CertificateOptions(income_tax=K.IncomeTaxOptions(fiscal_year=2024)),
        ),
        dataclasses.replace(seal_request, issue_numbers=[]),
        dataclasses.replace(seal_request, issued_at=NOW.replace(tzinfo=None)),
        dataclasses.replace(seal_request, kind=K.CERTIFICATE_KIND_UNSPECIFIED),
    ]
    full = request_of(K.CERTIFICATE_KIND_FAMILY_REGISTER_FULL, signer)
    stranger = R.RegisterMember(id="M-9999", name="他人 一人")
    cases.append(dataclasses.replace(full, register_members=[stranger]))
    cases.append(dataclasses.replace(full, register_members=[]))
    for case in cases:
        with pytest.raises(ComposeError):
            compose(case)


def test_a_character_the_font_lacks_is_glyph_missing(signer: DocumentSigner) -> None:
    household = sample_household()[:1]
    household[0].name = "山田\U0010fffd"
    with pytest.raises(GlyphMissing):
        compose(request_of(1, signer, residents=household))


def test_bench_compose_reports_medians() -> None:
    result = bench_compose(K.CERTIFICATE_KIND_SEAL_REGISTRATION, runs=1)
    assert result["kind"] == "CERTIFICATE_KIND_SEAL_REGISTRATION"
    assert result["pages"] == 1
    assert 0 < result["median_ms_per_page"] <= result["median_ms_per_copy"]  # type: ignore[operator]
