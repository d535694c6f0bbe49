"""`konbini verify` and the back side: a genuine certificate passes (PDF and 300 dpi scans);
an edited front, a swapped QR code and a back from another certificate are rejected; a
certificate made before a scramble-key rotation still verifies."""

from __future__ import annotations

import argparse
import datetime as dt
import io
import shutil
import statistics
import time
from pathlib import Path

import numpy as np
import pikepdf
import pytest

from centre.backside import add_back_sides
from centre.verification import verify_pdf
from centre.verify_cli import register
from konbini.common.v1 import types_pb2 as K
from konbini.docimage import read_back
from konbini.docimage.pdfimage import images_to_pdf
from konbini.docimage.qr import find_qr_codes
from konbini.docimage.raster import all_pages_a4, rasterize_page, to_png
from konbini.pki import PkiDir, ScrambleKeySet, pki_init
from konbini.pki.trustlist import to_proto
from konbini.pki.x509util import load_certificate
from konbini.verification.v1 import verification_pb2
from municipality.documents import DocumentSigner, compose
from municipality.documents.samples import sample_request

FONT = Path("/usr/share/fonts/truetype/ipamj/ipamjm.ttf")
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PkiDir:
    path = tmp_path_factory.mktemp("pki")
    pki_init(path, now=NOW - dt.timedelta(days=2))
    return PkiDir(path)


def _front(pki: PkiDir, kind: int) -> bytes:
    signer = DocumentSigner.from_paths(pki.document_signer("192015"))
    request = sample_request(kind, signer, font_path=FONT, issued_at=NOW - dt.timedelta(hours=1))
    return compose(request)[0].pdf


@pytest.fixture(scope="module")
def certificates(pki: PkiDir) -> dict[str, bytes]:
    """Two delivered certificates (fronts with backs) of the same municipality."""
    keys = ScrambleKeySet.load(pki.scramble_keys)
    return {
        "a": add_back_sides(_front(pki, K.CERTIFICATE_KIND_RESIDENCE_RECORD), keys, NOW),
        "b": add_back_sides(_front(pki, K.CERTIFICATE_KIND_INCOME_TAX), keys, NOW),
    }


def _cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(), "verify", "verify a certificate")
    parsed = parser.parse_args(["verify", *args])
    code = parsed.func(parsed)
    return code, capsys.readouterr().out


def _pdf(tmp_path: Path, pages: list[np.ndarray], name: str) -> Path:
    path = tmp_path / name
    path.write_bytes(images_to_pdf(pages))
    return path


def _sheet(pdf: bytes, index: int = 0) -> tuple[np.ndarray, np.ndarray]:
    return rasterize_page(pdf, 2 * index, 300), rasterize_page(pdf, 2 * index + 1, 300)


def _failed(out: str) -> set[str]:
    return {line.split()[1] for line in out.splitlines() if line.startswith("FAIL")}


def test_back_sides_interleave_and_name_the_key(
    pki: PkiDir, certificates: dict[str, bytes]
) -> None:
    pdf = certificates["a"]
    assert all_pages_a4(pdf)
    back = rasterize_page(pdf, 1, 300)
    side = read_back(back)
    assert side.key_id == ScrambleKeySet.load(pki.scramble_keys).current_key_at(NOW).key_id
    # The copy-void ground outside the scramble and the marker: dark dots whose ink covers 1/16
    # of the paper (the renderer smooths the 300 dpi dots a little, but keeps their ink).
    corner = back[3440:3500, 40:2440]  # below the scramble area
    darkness = float((255 - corner.astype(np.float64)).mean() / 255)
    assert darkness == pytest.approx(1 / 16, abs=0.01)
    assert corner.min() < 64 and float((corner > 230).mean()) > 0.7
    assert b"/Font" not in pdf


def test_genuine_pdf_verifies(
    pki: PkiDir, certificates: dict[str, bytes], tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "genuine.pdf"
    path.write_bytes(certificates["a"])
    code, out = _cli([str(path), "--pki", str(pki.root)], capsys)
    assert code == 0, out
    assert "GENUINE" in out and not _failed(out)
    code, out = _cli([str(path), "--pki", str(pki.root), "--json"], capsys)
    assert code == 0 and '"VERDICT_GENUINE"' in out


def test_genuine_scans_verify_with_a_trust_list_file(
    pki: PkiDir, certificates: dict[str, bytes], tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    front, back = _sheet(certificates["a"])
    rng = np.random.default_rng(7)

    def scanned(image: np.ndarray) -> np.ndarray:  # grey paper and sensor noise
        noisy = image.astype(np.float32) * 0.92 + 12 + rng.normal(0, 4, image.shape)
        return np.clip(noisy, 0, 255).astype(np.uint8)

    (tmp_path / "f.png").write_bytes(to_png(scanned(front)))
    (tmp_path / "b.png").write_bytes(to_png(scanned(back)))
    trust = tmp_path / "trust.bin"
    trust.write_bytes(to_proto(pki.signed_trust_list_at(
        NOW, sequence=5, next_update_in=dt.timedelta(hours=2))).SerializeToString())
    code, out = _cli([str(tmp_path / "f.png"), str(tmp_path / "b.png"), "--trust-list",
                      str(trust), "--root", str(pki.docsign_ca.cert)], capsys)
    assert code == 0, out


def test_edited_front_is_rejected(
    pki: PkiDir, certificates: dict[str, bytes], tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    front, back = _sheet(certificates["a"])
    # White out a strip of the body (the names of the household) and write nothing instead.
    region = (slice(560, 700), slice(700, 1700))
    assert (front[region] < 128).sum() > 500, "the test must cover printed text"
    edited = front.copy()
    edited[region] = 255
    code, out = _cli([str(_pdf(tmp_path, [edited, back], "edited.pdf")), "--pki",
                      str(pki.root)], capsys)
    assert code == 1 and "REJECTED" in out
    assert "back.matches_front" in _failed(out)
    assert "seal.signature" not in _failed(out)  # the seal itself is genuine


def test_swapped_qr_is_rejected(
    pki: PkiDir, certificates: dict[str, bytes], tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    front_a, back_a = _sheet(certificates["a"])
    front_b, _ = _sheet(certificates["b"])
    qr = next(q for q in find_qr_codes(front_b) if q.text.startswith("KK1:")).box.expanded(20)
    forged = front_a.copy()
    forged[qr.top:qr.bottom, qr.left:qr.right] = front_b[qr.top:qr.bottom, qr.left:qr.right]
    code, out = _cli([str(_pdf(tmp_path, [forged, back_a], "swapped.pdf")), "--pki",
                      str(pki.root)], capsys)
    assert code == 1
    assert {"front.fingerprint", "back.matches_front"} <= _failed(out)


def test_back_from_another_certificate_is_rejected(
    pki: PkiDir, certificates: dict[str, bytes], tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The pages themselves, swapped in the PDF: the front stays exactly the signed page.
    mixed = pikepdf.new()
    with pikepdf.open(io.BytesIO(certificates["a"])) as a, pikepdf.open(
        io.BytesIO(certificates["b"])
    ) as b:
        mixed.pages.append(a.pages[0])
        mixed.pages.append(b.pages[1])
        mixed.save(tmp_path / "mixed.pdf")
    code, out = _cli([str(tmp_path / "mixed.pdf"), "--pki", str(pki.root)], capsys)
    assert code == 1
    assert _failed(out) == {"back.matches_front"}


def test_old_certificate_verifies_after_scramble_key_rotation(
    pki: PkiDir, certificates: dict[str, bytes], tmp_path: Path,
) -> None:
    rotated = PkiDir(tmp_path / "pki")
    shutil.copytree(pki.root, rotated.root)
    later = NOW + dt.timedelta(days=1)
    keys = ScrambleKeySet.load(rotated.scramble_keys).with_new_key(later, dt.timedelta(days=90))
    keys.save(rotated.scramble_keys)
    root = load_certificate(rotated.docsign_ca.cert)
    trust = to_proto(rotated.signed_trust_list_at(later, sequence=9,
                                                  next_update_in=dt.timedelta(hours=1)))
    old = verify_pdf(certificates["a"], trust, [root], later)
    assert old.verdict == verification_pb2.VERDICT_GENUINE, old.findings
    new = add_back_sides(_front(rotated, K.CERTIFICATE_KIND_RESIDENCE_RECORD), keys, later)
    assert read_back(rasterize_page(new, 1, 300)).key_id == keys.keys[-1].key_id
    assert verify_pdf(new, trust, [root], later).verdict == verification_pb2.VERDICT_GENUINE
    # Without the old key in the trust list the old back can no longer be read.
    only_new = ScrambleKeySet((keys.keys[-1],))
    only_new.save(rotated.scramble_keys)
    stripped = to_proto(rotated.signed_trust_list_at(later, sequence=10,
                                                     next_update_in=dt.timedelta(hours=1)))
    refused = verify_pdf(certificates["a"], stripped, [root], later)
    assert refused.verdict == verification_pb2.VERDICT_REJECTED
    assert [f.check for f in refused.findings if not f.passed] == ["back.key"]


def test_timings(pki: PkiDir, certificates: dict[str, bytes]) -> None:
    """Measured for the report (printed with -s); bounds only catch a gross regression."""
    front = _front(pki, K.CERTIFICATE_KIND_RESIDENCE_RECORD)
    keys = ScrambleKeySet.load(pki.scramble_keys)
    trust = to_proto(pki.signed_trust_list_at(NOW, sequence=1,
                                              next_update_in=dt.timedelta(hours=1)))
    root = load_certificate(pki.docsign_ca.cert)
    backs, checks = [], []
    for _ in range(3):
        start = time.perf_counter()
        add_back_sides(front, keys, NOW)
        backs.append(time.perf_counter() - start)
        start = time.perf_counter()
        verify_pdf(certificates["a"], trust, [root], NOW)
        checks.append(time.perf_counter() - start)
    back_ms, verify_ms = statistics.median(backs) * 1000, statistics.median(checks) * 1000
    print(f"add_back_sides {back_ms:.0f} ms/page, verify_pdf {verify_ms:.0f} ms/page")
    assert back_ms < 5000 and verify_ms < 5000


async def test_verification_service_answers_and_refuses_an_empty_request(
    pki: PkiDir, certificates: dict[str, bytes]
) -> None:
    from centre.verification import VerificationServicer
    from konbini.errors import KonbiniError

    class Trust:
        def current(self):  # type: ignore[no-untyped-def]
            return to_proto(pki.signed_trust_list_at(NOW, sequence=3,
                                                     next_update_in=dt.timedelta(hours=1)))

    service = VerificationServicer(Trust(), [load_certificate(pki.docsign_ca.cert)])
    answer = await service.VerifyDocument(
        verification_pb2.VerifyDocumentRequest(pdf=certificates["a"]), None)  # type: ignore[arg-type]
    assert answer.verdict == verification_pb2.VERDICT_GENUINE
    assert answer.municipality_code.value == "192015" and answer.issue_number
    garbage = await service.VerifyDocument(
        verification_pb2.VerifyDocumentRequest(pdf=b"not a pdf"), None)  # type: ignore[arg-type]
    assert garbage.verdict == verification_pb2.VERDICT_REJECTED
    with pytest.raises(KonbiniError) as refused:
        await service.VerifyDocument(verification_pb2.VerifyDocumentRequest(), None)  # type: ignore[arg-type]
    assert refused.value.reason == "FIELD_INVALID"
