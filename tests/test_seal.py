"""The visible seal (KK1 QR text), the subject digest and the signed document metadata."""

from __future__ import annotations

import datetime as dt
import hashlib
import io

import pikepdf
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from konbini.common.v1 import types_pb2
from konbini.docimage.base45 import b45decode, b45encode
from konbini.pki import (
    DocumentSignatureRejected,
    PkiDir,
    TrustList,
    key_id_of,
    pki_init,
    verify_signed_trust_list_at,
)
from konbini.pki.x509util import load_certificate
from konbini.seal import (
    DocumentMalformed,
    SealMalformed,
    decode_seal,
    encode_seal,
    front_page_positions,
    front_pdf_sha256_matches,
    sign_metadata,
    subject_digest,
    verify_document,
    verify_seal,
)

NOW = dt.datetime(2025, 4, 1, 1, 30, tzinfo=dt.UTC)
KOFU = "192015"
CHIYODA = "131016"


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
def kofu_key(pki: PkiDir) -> tuple[str, ec.EllipticCurvePrivateKey]:
    issued = pki.document_signer(KOFU).load()
    assert isinstance(issued.key, ec.EllipticCurvePrivateKey)
    return key_id_of(issued.certificate), issued.key


def claims(key_id: str, **overrides: object) -> types_pb2.SealClaims:
    fields: dict[str, object] = {
        "municipality_code": KOFU,
        "kind": types_pb2.CERTIFICATE_KIND_RESIDENCE_RECORD,
        "issue_number": "19201-20250401-000001",
        "issued_at_unix": int(NOW.timestamp()),
        "subject_digest": subject_digest(KOFU, [("R-0001", "葛\U000e0102西 辻子")]),
        "front_fingerprint": bytes(range(64)),
        "signing_key_id": key_id,
        "page_index": 1,
        "page_count": 2,
    }
    fields.update(overrides)
    return types_pb2.SealClaims(**fields)  # type: ignore[arg-type]


# -- subject digest --------------------------------------------------------------------------
def test_subject_digest_follows_the_spec_text() -> None:
    # Written out from docs/protocol.md, byte by byte, independently of the implementation.
    name = "葛\U000e0102西 辻子"
    expected = hashlib.sha256(
        b"konbini.subject.v1"
        + b"\x1f" + b"192015" + b"\x1e" + b"R-0001" + b"\x1e" + name.encode("utf-8")
        + b"\x1f" + b"192015" + b"\x1e" + b"R-0002" + b"\x1e" + "葛西 一郎".encode()
    ).digest()
    got = subject_digest(KOFU, [("R-0001", name), ("R-0002", "葛西 一郎")])
    assert got == expected
    # the variation selector is part of the name
    assert subject_digest(KOFU, [("R-0001", "葛西 辻子")]) != subject_digest(
        KOFU, [("R-0001", name)]
    )


def test_subject_digest_depends_on_order_municipality_and_every_field() -> None:
    a, b = ("R-1", "山田 太郎"), ("R-2", "山田 花子")
    base = subject_digest(KOFU, [a, b])
    assert base != subject_digest(KOFU, [b, a])
    assert base != subject_digest(CHIYODA, [a, b])
    assert base != subject_digest(KOFU, [a, ("R-3", "山田 花子")])
    assert subject_digest(KOFU, []) == hashlib.sha256(b"konbini.subject.v1").digest()


def test_subject_digest_refuses_separator_bytes() -> None:
    # ("a\x1eb", "c") and ("a", "b\x1ec") would otherwise digest alike.
    with pytest.raises(ValueError, match="separator"):
        subject_digest(KOFU, [("a\x1eb", "c")])
    with pytest.raises(ValueError, match="separator"):
        subject_digest(KOFU, [("a", "b\x1fc")])


# -- visible seal ----------------------------------------------------------------------------
def test_seal_round_trip_and_verification(trust_list: TrustList, kofu_key: tuple) -> None:
    key_id, key = kofu_key
    original = claims(key_id)
    text = encode_seal(original, key)
    assert text.startswith("KK1:")
    # the QR alphanumeric alphabet only (the densest QR mode for base45)
    assert set(text) <= set("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:")
    decoded, claims_bytes, signature = decode_seal(text)
    assert decoded == original
    assert len(signature) == 64
    assert claims_bytes == original.SerializeToString(deterministic=True)
    assert verify_seal(text, trust_list, NOW) == original


def _reseal(text: str, *, claims_bytes: bytes | None = None, signature: bytes | None = None) -> str:
    seal = types_pb2.VisibleSeal.FromString(b45decode(text[4:]))
    if claims_bytes is not None:
        seal.claims = claims_bytes
    if signature is not None:
        seal.signature = signature
    return "KK1:" + b45encode(seal.SerializeToString())


def test_tampered_claims_are_rejected(trust_list: TrustList, kofu_key: tuple) -> None:
    key_id, key = kofu_key
    text = encode_seal(claims(key_id), key)
    forged = claims(key_id, issue_number="19201-20250401-000002").SerializeToString()
    with pytest.raises(DocumentSignatureRejected) as caught:
        verify_seal(_reseal(text, claims_bytes=forged), trust_list, NOW)
    assert caught.value.cause == "DOCUMENT_SIGNATURE_INVALID"
    assert caught.value.reason == "DOCUMENT_INVALID"


def test_tampered_signature_is_rejected(trust_list: TrustList, kofu_key: tuple) -> None:
    key_id, key = kofu_key
    text = encode_seal(claims(key_id), key)
    _, _, signature = decode_seal(text)
    flipped = bytes([signature[0] ^ 1]) + signature[1:]
    with pytest.raises(DocumentSignatureRejected) as caught:
        verify_seal(_reseal(text, signature=flipped), trust_list, NOW)
    assert caught.value.cause == "DOCUMENT_SIGNATURE_INVALID"


def test_unknown_key_is_rejected(trust_list: TrustList, kofu_key: tuple) -> None:
    stranger = ec.generate_private_key(ec.SECP256R1())
    text = encode_seal(claims(key_id_of(stranger.public_key())), stranger)
    with pytest.raises(DocumentSignatureRejected) as caught:
        verify_seal(text, trust_list, NOW)
    assert caught.value.cause == "DOCUMENT_SIGNER_UNKNOWN"
    # a stranger claiming Kofu's key id does not verify either
    key_id, _ = kofu_key
    with pytest.raises(DocumentSignatureRejected) as caught:
        verify_seal(encode_seal(claims(key_id), stranger), trust_list, NOW)
    assert caught.value.cause == "DOCUMENT_SIGNATURE_INVALID"


def test_key_of_another_municipality_is_rejected(
    pki: PkiDir, trust_list: TrustList, kofu_key: tuple
) -> None:
    # Chiyoda's real key signing a seal that says Kofu: the key id is not Kofu's.
    chiyoda = pki.document_signer(CHIYODA).load()
    assert isinstance(chiyoda.key, ec.EllipticCurvePrivateKey)
    text = encode_seal(claims(key_id_of(chiyoda.certificate)), chiyoda.key)
    with pytest.raises(DocumentSignatureRejected) as caught:
        verify_seal(text, trust_list, NOW)
    assert caught.value.cause == "DOCUMENT_SIGNER_UNKNOWN"


def test_seal_dated_after_the_check_is_rejected(trust_list: TrustList, kofu_key: tuple) -> None:
    key_id, key = kofu_key
    later = int((NOW + dt.timedelta(hours=1)).timestamp())
    text = encode_seal(claims(key_id, issued_at_unix=later), key)
    with pytest.raises(SealMalformed) as caught:
        verify_seal(text, trust_list, NOW)
    assert caught.value.cause == "SEAL_FROM_THE_FUTURE"
    assert verify_seal(text, trust_list, NOW + dt.timedelta(hours=2)).issued_at_unix == later


@pytest.mark.parametrize(
    "text",
    [
        "",
        "KK2:ABC",
        "kk1:" + b45encode(b"x"),
        "KK1:abc",  # lower case is outside the base45 alphabet
        "KK1:A",  # dangling character
        "KK1:" + b45encode(b"\xff\xff\xff"),  # not a protobuf message
        "KK1:" + b45encode(types_pb2.VisibleSeal(signature=bytes(63)).SerializeToString()),
    ],
)
def test_malformed_seal_text_is_a_typed_error(text: str) -> None:
    with pytest.raises(SealMalformed) as caught:
        decode_seal(text)
    assert caught.value.cause == "SEAL_MALFORMED"
    assert caught.value.reason == "DOCUMENT_INVALID"


@pytest.mark.parametrize(
    "override",
    [
        {"municipality_code": "192016"},  # wrong check digit
        {"signing_key_id": ""},
        {"page_index": 3},  # of 2
        {"page_index": 0},
        {"subject_digest": b"short"},
    ],
)
def test_claims_that_cannot_be_right_are_malformed(kofu_key: tuple, override: dict) -> None:
    key_id, key = kofu_key
    with pytest.raises(SealMalformed):
        decode_seal(encode_seal(claims(key_id, **override), key))


# -- document metadata -----------------------------------------------------------------------
def _pdf(pages: int) -> bytes:
    pdf = pikepdf.new()
    for _ in range(pages):
        pdf.add_blank_page(page_size=(595.28, 841.89))
    buffer = io.BytesIO()
    pdf.save(buffer)
    return buffer.getvalue()


def _document(key_id: str, key: ec.EllipticCurvePrivateKey, pdf: bytes) -> types_pb2.Document:
    stamp = types_pb2.DocumentMetadata().issued_at
    stamp.FromDatetime(NOW)
    metadata = types_pb2.DocumentMetadata(
        municipality_code=types_pb2.MunicipalityCode(value=KOFU),
        kind=types_pb2.CERTIFICATE_KIND_SEAL_REGISTRATION,
        issue_number="19201-20250401-000001",
        issued_at=stamp,
        subject_digest=subject_digest(KOFU, [("R-0001", "葛西 辻子")]),
        front_pdf_sha256=hashlib.sha256(pdf).digest(),
        page_count=2,
        copy_index=1,
        copy_count=1,
        signing_key_id=key_id,
        reservation_id="rsv-1",
    )
    signed, signature = sign_metadata(metadata, key)
    assert signed == metadata.SerializeToString(deterministic=True)
    return types_pb2.Document(pdf=pdf, signed_metadata=signed, signature=signature)


def test_document_metadata_verifies_and_names_its_pdf(
    trust_list: TrustList, kofu_key: tuple
) -> None:
    key_id, key = kofu_key
    document = _document(key_id, key, _pdf(2))
    metadata = verify_document(document, trust_list, NOW)
    assert metadata.reservation_id == "rsv-1"
    assert front_pdf_sha256_matches(document)
    assert front_page_positions(metadata, 2) == [0, 1]
    # the centre's interleaved PDF: fronts at even positions, and no longer the hashed bytes
    with_backs = types_pb2.Document()
    with_backs.CopyFrom(document)
    with_backs.pdf = _pdf(4)
    assert verify_document(with_backs, trust_list, NOW) == metadata
    assert not front_pdf_sha256_matches(with_backs)
    assert front_page_positions(metadata, 4) == [0, 2]
    with pytest.raises(DocumentMalformed) as caught:
        front_page_positions(metadata, 3)
    assert caught.value.cause == "DOCUMENT_PAGES_MISMATCH"


def test_tampered_document_metadata_is_rejected(trust_list: TrustList, kofu_key: tuple) -> None:
    key_id, key = kofu_key
    document = _document(key_id, key, _pdf(2))
    metadata = types_pb2.DocumentMetadata.FromString(document.signed_metadata)
    metadata.reservation_id = "rsv-2"
    forged = types_pb2.Document(
        pdf=document.pdf,
        signed_metadata=metadata.SerializeToString(),
        signature=document.signature,
    )
    with pytest.raises(DocumentSignatureRejected) as caught:
        verify_document(forged, trust_list, NOW)
    assert caught.value.cause == "DOCUMENT_SIGNATURE_INVALID"
    with pytest.raises(DocumentMalformed):
        verify_document(
            types_pb2.Document(pdf=document.pdf, signed_metadata=b"\xff\xff", signature=b""),
            trust_list,
            NOW,
        )


def test_document_signed_by_an_unlisted_key_is_rejected(trust_list: TrustList) -> None:
    stranger = ec.generate_private_key(ec.SECP256R1())
    document = _document(key_id_of(stranger.public_key()), stranger, _pdf(2))
    with pytest.raises(DocumentSignatureRejected) as caught:
        verify_document(document, trust_list, NOW)
    assert caught.value.cause == "DOCUMENT_SIGNER_UNKNOWN"
