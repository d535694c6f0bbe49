"""The visible digital seal (QR on every front page) and the signed document metadata.

Shared by the municipality (which signs), the centre and every verifier (which check), so it
lives in the common package. Definitions: docs/protocol.md "The visible seal and the subject
digest" and ``konbini.common.v1.SealClaims`` / ``DocumentMetadata``.

High level: :func:`encode_seal` / :func:`verify_seal` for the QR text, :func:`sign_metadata` /
:func:`verify_document` for a ``Document``. :func:`decode_seal` only parses (no trust).

Page order of a delivered document. The municipality's ``Document.pdf`` holds the front pages
only (``metadata.page_count`` of them). The centre interleaves each front page with its back:
``[front 1, back 1, front 2, back 2, ...]``, so the fronts are at even 0-based positions
(:func:`front_page_positions`). Adding pages changes the PDF bytes, so
``metadata.front_pdf_sha256`` can only be checked on the municipality's PDF
(:func:`front_pdf_sha256_matches`); a verifier of the centre's PDF checks each front page through
its visible seal (signature, subject digest, front fingerprint) instead.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence

from cryptography.hazmat.primitives.asymmetric import ec
from google.protobuf.message import DecodeError

from konbini.common.v1 import types_pb2
from konbini.docimage.base45 import b45decode, b45encode
from konbini.errors import KonbiniError
from konbini.municode import validate_municipality_code
from konbini.pki.docsign import P1363_LENGTH, sign_p1363
from konbini.pki.trustlist import verify_document_signature
from konbini.pki.trustmodel import TrustList

__all__ = [
    "SEAL_PREFIX",
    "DocumentMalformed",
    "SealMalformed",
    "SealRejected",
    "decode_seal",
    "encode_seal",
    "front_page_positions",
    "front_pdf_sha256_matches",
    "parse_metadata",
    "sign_metadata",
    "subject_digest",
    "verify_document",
    "verify_seal",
]

SEAL_PREFIX = "KK1:"
SUBJECT_DOMAIN = b"konbini.subject.v1"
_UNIT_SEPARATOR = b"\x1f"  # starts each subject
_RECORD_SEPARATOR = b"\x1e"  # between a subject's fields
# A seal dated this far after the verification time is not accepted (clock skew allowance).
FUTURE_SKEW = dt.timedelta(minutes=10)


class SealRejected(KonbiniError):
    """A seal or document failed a check (catalogue reason DOCUMENT_INVALID); ``cause`` names
    the check and is also in the ErrorInfo metadata. Signature failures against the trust list
    raise :class:`konbini.pki.DocumentSignatureRejected` (same reason) instead."""

    def __init__(self, cause: str, message: str = "") -> None:
        super().__init__("DOCUMENT_INVALID", message, metadata={"cause": cause})
        self.cause = cause


class SealMalformed(SealRejected):
    """The QR text is not ``KK1:`` + base45 of a well-formed VisibleSeal (cause SEAL_MALFORMED),
    or its claims are dated after the verification time (cause SEAL_FROM_THE_FUTURE)."""


class DocumentMalformed(SealRejected):
    """A Document's metadata does not parse or does not match its PDF (cause
    DOCUMENT_MALFORMED, DOCUMENT_PAGES_MISMATCH)."""


# -- subject digest --------------------------------------------------------------------------
def subject_digest(municipality_code: str, subjects: Sequence[tuple[str, str]]) -> bytes:
    """SHA-256 over ``"konbini.subject.v1"``, then for each ``(subject_id, name)`` in printed
    order ``0x1F``, the municipality code, ``0x1E``, the id, ``0x1E``, the name as registered
    (UTF-8, variation selectors included).

    A separator byte inside a field would make two subject lists digest alike, so it is refused.
    """
    h = hashlib.sha256(SUBJECT_DOMAIN)
    code = municipality_code.encode()
    for subject_id, name in subjects:
        fields = (code, subject_id.encode(), name.encode())
        if any(_UNIT_SEPARATOR in f or _RECORD_SEPARATOR in f for f in fields):
            raise ValueError("a subject field contains a 0x1E/0x1F separator")
        h.update(_UNIT_SEPARATOR + fields[0] + _RECORD_SEPARATOR + fields[1])
        h.update(_RECORD_SEPARATOR + fields[2])
    return h.digest()


# -- visible seal ----------------------------------------------------------------------------
def encode_seal(claims: types_pb2.SealClaims, key: ec.EllipticCurvePrivateKey) -> str:
    """The QR text of ``claims`` signed with the municipality's document-signing ``key``."""
    claims_bytes = claims.SerializeToString(deterministic=True)
    seal = types_pb2.VisibleSeal(claims=claims_bytes, signature=sign_p1363(key, claims_bytes))
    return SEAL_PREFIX + b45encode(seal.SerializeToString(deterministic=True))


def _check_claims(claims: types_pb2.SealClaims) -> None:
    if not validate_municipality_code(claims.municipality_code):
        raise SealMalformed("SEAL_MALFORMED", "the seal's municipality code is not valid")
    if not claims.signing_key_id:
        raise SealMalformed("SEAL_MALFORMED", "the seal names no signing key")
    if not 1 <= claims.page_index <= claims.page_count:
        raise SealMalformed("SEAL_MALFORMED", "the seal's page number is out of range")
    if len(claims.subject_digest) != hashlib.sha256().digest_size:
        raise SealMalformed("SEAL_MALFORMED", "the seal's subject digest is not SHA-256 sized")


def decode_seal(text: str) -> tuple[types_pb2.SealClaims, bytes, bytes]:
    """Parse QR text into (claims, the exact signed claim bytes, the signature). No trust is
    established here; raises :class:`SealMalformed` for anything malformed."""
    if not text.startswith(SEAL_PREFIX):
        raise SealMalformed("SEAL_MALFORMED", f"the QR text does not start with {SEAL_PREFIX}")
    try:
        raw = b45decode(text[len(SEAL_PREFIX) :])
    except ValueError:
        raise SealMalformed("SEAL_MALFORMED", "the QR text is not base45") from None
    seal = types_pb2.VisibleSeal()
    claims = types_pb2.SealClaims()
    try:
        seal.ParseFromString(raw)
        claims.ParseFromString(seal.claims)
    except DecodeError:
        raise SealMalformed("SEAL_MALFORMED", "the seal is not a VisibleSeal") from None
    if len(seal.signature) != P1363_LENGTH:
        raise SealMalformed("SEAL_MALFORMED", "the seal's signature is not 64 bytes")
    _check_claims(claims)
    return claims, seal.claims, seal.signature


def signed_at(claims: types_pb2.SealClaims) -> dt.datetime:
    """The issue time printed in the seal, aware UTC."""
    return dt.datetime.fromtimestamp(claims.issued_at_unix, dt.UTC)


def verify_seal(text: str, trust_list: TrustList, at: dt.datetime) -> types_pb2.SealClaims:
    """The claims of a seal whose signature verifies with the key the trust list names for its
    municipality, valid at the seal's issue time (so documents outlive a key rotation).
    ``at`` is the verification time: a seal dated later than ``at`` (+ a small skew) is refused.
    ``trust_list`` must come from :func:`konbini.pki.verify_signed_trust_list_at`."""
    claims, claims_bytes, signature = decode_seal(text)
    when = signed_at(claims)
    if when > at + FUTURE_SKEW:
        raise SealMalformed("SEAL_FROM_THE_FUTURE", "the seal is dated after the check time")
    verify_document_signature(
        trust_list, claims.municipality_code, claims.signing_key_id, claims_bytes, signature, when
    )
    return claims


# -- document metadata -----------------------------------------------------------------------
def sign_metadata(
    metadata: types_pb2.DocumentMetadata, key: ec.EllipticCurvePrivateKey
) -> tuple[bytes, bytes]:
    """(the serialized metadata, its P1363 signature): ``Document.signed_metadata`` and
    ``Document.signature``. Serialize once; verifiers check these exact bytes."""
    data = metadata.SerializeToString(deterministic=True)
    return data, sign_p1363(key, data)


def parse_metadata(document: types_pb2.Document) -> types_pb2.DocumentMetadata:
    """The document's metadata, parsed but not verified."""
    metadata = types_pb2.DocumentMetadata()
    try:
        metadata.ParseFromString(document.signed_metadata)
    except DecodeError:
        raise DocumentMalformed("DOCUMENT_MALFORMED", "the metadata does not parse") from None
    if not validate_municipality_code(metadata.municipality_code.value):
        raise DocumentMalformed("DOCUMENT_MALFORMED", "the metadata's municipality is not valid")
    if metadata.page_count < 1 or not metadata.signing_key_id:
        raise DocumentMalformed("DOCUMENT_MALFORMED", "the metadata lacks pages or a key id")
    return metadata


def front_page_positions(metadata: types_pb2.DocumentMetadata, pdf_pages: int) -> list[int]:
    """0-based positions of the front pages in a PDF of ``pdf_pages`` pages: all of them in the
    municipality's PDF, the even ones in the centre's interleaved front/back PDF."""
    count = metadata.page_count
    if pdf_pages == count:
        return list(range(count))
    if pdf_pages == 2 * count:
        return list(range(0, 2 * count, 2))
    raise DocumentMalformed(
        "DOCUMENT_PAGES_MISMATCH",
        f"the PDF has {pdf_pages} pages; the metadata says {count} front pages",
    )


def verify_document(
    document: types_pb2.Document, trust_list: TrustList, at: dt.datetime
) -> types_pb2.DocumentMetadata:
    """The metadata of a Document whose signature verifies against the trust list at the
    metadata's issue time (``at`` is the verification time; a document dated later is refused).
    Does not check ``front_pdf_sha256``: see :func:`front_pdf_sha256_matches`."""
    metadata = parse_metadata(document)
    when = metadata.issued_at.ToDatetime(tzinfo=dt.UTC)
    if when > at + FUTURE_SKEW:
        raise DocumentMalformed("DOCUMENT_MALFORMED", "the document is dated after the check time")
    verify_document_signature(
        trust_list,
        metadata.municipality_code.value,
        metadata.signing_key_id,
        document.signed_metadata,
        document.signature,
        when,
    )
    return metadata


def front_pdf_sha256_matches(document: types_pb2.Document) -> bool:
    """True when ``document.pdf`` is exactly the front PDF the metadata names. Only meaningful
    for the municipality's Document: the centre's PDF (fronts with backs) never matches."""
    metadata = parse_metadata(document)
    return hashlib.sha256(document.pdf).digest() == metadata.front_pdf_sha256
