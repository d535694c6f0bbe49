"""Scans that are turned (±0.5°, ±1°), scaled (±1 %) and shifted (a few mm), with blur and noise:
each side is registered to the page by its QR code before the checks (konbini.docimage.register).

The back is read and matched on every such scan; an edited front and a back from another
certificate are rejected. The front fingerprint (version 1) does NOT yet match on a turned scan,
even with the exact geometry: see test_turned_genuine_scan_verifies (strict xfail)."""

from __future__ import annotations

import datetime as dt
import io
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from centre.backside import add_back_sides
from konbini.common.v1 import trust_pb2
from konbini.common.v1 import types_pb2 as K
from konbini.docimage.fingerprint import fingerprint_distance, front_fingerprint, seal_square
from konbini.docimage.qr import find_qr_codes, qr_matrix
from konbini.docimage.raster import rasterize_page
from konbini.docimage.register import (
    SEAL_SQUARE_MM,
    Affine,
    RegistrationFailed,
    locate_qr,
    register_scan,
    seal_placement,
)
from konbini.pki import PkiDir, ScrambleKeySet, pki_init
from konbini.pki.trustlist import to_proto
from konbini.pki.x509util import load_certificate
from konbini.seal import SEAL_PREFIX, decode_seal
from konbini.verification.v1 import verification_pb2
from konbini.verify import front_at_page_dpi, register_front, verify_scans
from municipality.documents import DocumentSigner, compose
from municipality.documents.samples import sample_request

FONT = Path("/usr/share/fonts/truetype/ipamj/ipamjm.ttf")
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
PX = 300 / 25.4  # scan pixels per mm
# (degrees, scale, shift x mm, shift y mm): what a flatbed does to a sheet laid by hand.
SKEWS = [(0.5, 1.0, 3.0, -2.0), (-0.5, 1.01, -3.0, 4.0), (1.0, 0.99, 4.0, 3.0),
         (-1.0, 1.01, -4.0, -2.0), (1.0, 1.01, 2.0, 5.0), (-1.0, 0.99, -5.0, 2.0)]
Skew = tuple[float, float, float, float]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PkiDir:
    path = tmp_path_factory.mktemp("pki")
    pki_init(path, now=NOW - dt.timedelta(days=2))
    return PkiDir(path)


@pytest.fixture(scope="module")
def sheets(pki: PkiDir) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Front and back (300 dpi, as printed) of two certificates of the same municipality."""
    signer = DocumentSigner.from_paths(pki.document_signer("192015"))
    keys = ScrambleKeySet.load(pki.scramble_keys)
    out = {}
    for name, kind in (("a", K.CERTIFICATE_KIND_RESIDENCE_RECORD),
                       ("b", K.CERTIFICATE_KIND_INCOME_TAX)):
        request = sample_request(kind, signer, font_path=FONT,
                                 issued_at=NOW - dt.timedelta(hours=1))
        pdf = add_back_sides(compose(request)[0].pdf, keys, NOW)
        out[name] = (rasterize_page(pdf, 0, 300), rasterize_page(pdf, 1, 300))
    return out


@pytest.fixture(scope="module")
def trust(pki: PkiDir) -> tuple[trust_pb2.SignedTrustList, list]:
    signed = to_proto(pki.signed_trust_list_at(NOW, sequence=3,
                                               next_update_in=dt.timedelta(hours=2)))
    return signed, [load_certificate(pki.docsign_ca.cert)]


def _true_map(page: np.ndarray, skew: Skew) -> tuple[np.ndarray, np.ndarray]:
    """The page (300 dpi pixels) → scan map of ``skew``: turned and scaled about the page's
    centre, then shifted."""
    degrees, scale, dx, dy = skew
    a = math.radians(degrees)
    matrix = scale * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    centre = np.array([page.shape[1] / 2, page.shape[0] / 2])
    return matrix, centre + np.array([dx * PX, dy * PX]) - matrix @ centre


_SCANS: dict[tuple[int, Skew, int], tuple[np.ndarray, np.ndarray]] = {}


def _scan(page: np.ndarray, skew: Skew, seed: int) -> np.ndarray:
    """:func:`_make_scan`, made once per page, skew and seed (tests share the sheets)."""
    key = (id(page), skew, seed)
    if key not in _SCANS:  # the page is kept with its scan, so its id is not reused meanwhile
        _SCANS[key] = (page, _make_scan(page, skew, seed))
    return _SCANS[key][1]


def _make_scan(page: np.ndarray, skew: Skew, seed: int) -> np.ndarray:
    """A 300 dpi flatbed scan of the printed ``page``: the bed is 10 mm larger than the sheet on
    every side, the sheet lies at ``skew``; optics blur, grey paper and sensor noise."""
    matrix, offset = _true_map(page, skew)
    margin = round(10 * PX)
    offset = offset + margin
    inverse = np.linalg.inv(matrix)
    back = -inverse @ offset
    size = (page.shape[1] + 2 * margin, page.shape[0] + 2 * margin)
    turned = Image.fromarray(page).transform(
        size, Image.Transform.AFFINE,
        (inverse[0, 0], inverse[0, 1], back[0], inverse[1, 0], inverse[1, 1], back[1]),
        Image.Resampling.BICUBIC, fillcolor=255,
    ).filter(ImageFilter.GaussianBlur(0.6))
    rng = np.random.default_rng(seed)
    noisy = np.asarray(turned, np.float32) * 0.93 + 10 + rng.normal(0, 4, turned.size[::-1])
    return np.clip(noisy, 0, 255).astype(np.uint8)


def _png(image: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(image).save(out, format="PNG", compress_level=1, dpi=(300, 300))
    return out.getvalue()


def _verify(front: np.ndarray, back: np.ndarray, trust: tuple) -> tuple[int, set[str]]:
    response = verify_scans([(_png(front), _png(back))], trust[0], trust[1], NOW)
    return response.verdict, {f.check for f in response.findings if not f.passed}


def _distance(front_150: np.ndarray) -> int:
    """The front's fingerprint distance to its signed value, as verify_scans computes it."""
    seal = next(q for q in find_qr_codes(front_150) if q.text.startswith(SEAL_PREFIX))
    square = seal_square(seal.box, len(qr_matrix(seal.text)))
    claims, _signed, _signature = decode_seal(seal.text)  # the signature is checked elsewhere
    return fingerprint_distance(front_fingerprint(front_150, exclude=[square]),
                                claims.front_fingerprint)


def test_seal_square_is_where_the_municipality_draws_it(
    sheets: dict[str, tuple[np.ndarray, np.ndarray]],
) -> None:
    # The protocol constant and the renderer agree: the code's corners lie 4 modules inside it.
    front = sheets["a"][0]
    seal = next(q for q in find_qr_codes(front) if q.text.startswith(SEAL_PREFIX))
    modules = len(qr_matrix(seal.text))
    left, top, side = SEAL_SQUARE_MM
    inset = 4 * side / (modules + 8)
    xs = [x for x, _ in seal.corners]
    ys = [y for _, y in seal.corners]
    assert min(xs) / PX == pytest.approx(left + inset, abs=0.15)
    assert min(ys) / PX == pytest.approx(top + inset, abs=0.15)
    assert max(xs) / PX == pytest.approx(left + side - inset, abs=0.15)


@pytest.mark.parametrize("skew", SKEWS)
def test_registration_recovers_the_page_geometry(
    sheets: dict[str, tuple[np.ndarray, np.ndarray]], skew: Skew,
) -> None:
    page = sheets["a"][0]
    scan = _scan(page, skew, seed=1)
    seal = next(q for q in find_qr_codes(scan) if q.text.startswith(SEAL_PREFIX))
    modules = len(qr_matrix(seal.text))
    found = locate_qr(scan, seal, modules, seal_placement(modules))
    matrix, offset = _true_map(page, skew)
    margin = round(10 * PX)
    errors = []
    for corner_mm in [(10.0, 10.0), (200.0, 10.0), (10.0, 287.0), (200.0, 287.0)]:
        expected = matrix @ (np.array(corner_mm) * PX) + offset + margin
        errors.append(float(np.hypot(*(np.array(found.apply(*corner_mm)) - expected))))
    # Measured 0.2–1.3 px: the 300 dpi render snaps the QR's modules by up to half a pixel,
    # and the QR's corner of the sheet is 250 mm from the opposite one. Unregistered: ~60 px.
    assert max(errors) < 2.0, errors


def test_register_scan_refuses_a_page_without_its_code() -> None:
    blank = np.full((600, 400), 250, dtype=np.uint8)
    with pytest.raises(RegistrationFailed):
        register_scan(blank, lambda _text: seal_placement(41))


def test_affine_maps_points() -> None:
    affine = Affine(np.array([[2.0, 0.0], [0.0, 3.0]]), np.array([1.0, -1.0]))
    assert affine.apply(1.0, 1.0) == (3.0, 2.0)


@pytest.mark.parametrize("skew", SKEWS)
def test_back_of_a_turned_scan_matches_its_front(
    sheets: dict[str, tuple[np.ndarray, np.ndarray]], trust: tuple, skew: Skew,
) -> None:
    front, back = sheets["a"]
    _verdict, failed = _verify(_scan(front, skew, 1), _scan(back, skew, 2), trust)
    assert not failed & {"seal.present", "seal.signature", "seal.consistent", "back.key",
                         "back.matches_front"}, failed


def test_registration_brings_the_front_near_its_fingerprint(
    sheets: dict[str, tuple[np.ndarray, np.ndarray]],
) -> None:
    front = sheets["a"][0]
    for skew in ((1.0, 0.99, 4.0, 3.0), (-0.5, 1.01, -3.0, 4.0)):
        scan = _scan(front, skew, seed=3)
        registered = _distance(register_front(scan))
        unregistered = _distance(front_at_page_dpi(scan[118:-118, 118:-118]))
        # Measured: about 25–30 registered; far above 100 as scanned.
        assert registered <= 35 < 2 * registered < unregistered, (registered, unregistered)


def test_straight_scan_still_verifies(
    sheets: dict[str, tuple[np.ndarray, np.ndarray]], trust: tuple,
) -> None:
    front, back = sheets["a"]
    skew = (0.0, 1.0, 0.0, 0.0)
    verdict, failed = _verify(_scan(front, skew, 1), _scan(back, skew, 2), trust)
    assert verdict == verification_pb2.VERDICT_GENUINE, failed


@pytest.mark.xfail(strict=True, reason="fingerprint v1 moves past its threshold (20) under the"
                   " resampling a turned scan needs, even with the exact geometry (21–26)")
@pytest.mark.parametrize("skew", SKEWS[:2])
def test_turned_genuine_scan_verifies(
    sheets: dict[str, tuple[np.ndarray, np.ndarray]], trust: tuple, skew: Skew,
) -> None:
    front, back = sheets["a"]
    verdict, failed = _verify(_scan(front, skew, 1), _scan(back, skew, 2), trust)
    assert verdict == verification_pb2.VERDICT_GENUINE, failed


@pytest.mark.parametrize("skew", [SKEWS[2], SKEWS[3]])
def test_edited_name_on_a_turned_scan_is_rejected(
    sheets: dict[str, tuple[np.ndarray, np.ndarray]], trust: tuple, skew: Skew,
) -> None:
    front, back = sheets["a"]
    region = (slice(560, 700), slice(700, 1700))  # the household's names
    assert (front[region] < 128).sum() > 500, "the edit must cover printed text"
    edited = front.copy()
    edited[region] = 255
    verdict, failed = _verify(_scan(edited, skew, 1), _scan(back, skew, 2), trust)
    assert verdict == verification_pb2.VERDICT_REJECTED
    assert "back.matches_front" in failed
    assert "seal.signature" not in failed


@pytest.mark.parametrize("skew", [SKEWS[4]])
def test_back_of_another_certificate_on_a_turned_scan_is_rejected(
    sheets: dict[str, tuple[np.ndarray, np.ndarray]], trust: tuple, skew: Skew,
) -> None:
    front, back_b = sheets["a"][0], sheets["b"][1]
    verdict, failed = _verify(_scan(front, skew, 1), _scan(back_b, skew, 2), trust)
    assert verdict == verification_pb2.VERDICT_REJECTED
    assert "back.matches_front" in failed and "back.key" not in failed
