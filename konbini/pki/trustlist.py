"""The signed trust list: municipality document signers and centre scramble keys.

The centre signs the exact serialized bytes of a trust list (P1363, its trust-list key); the
signature and the signer certificate travel beside those bytes. A verifier checks that the
signer chains to the document-signing CA and speaks for a centre, then uses the list to check
document signatures offline.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from konbini.common.v1 import trust_pb2
from konbini.pki.docsign import key_id_of, sign_p1363, verify_p1363
from konbini.pki.errors import DocumentSignatureRejected, TrustListRejected
from konbini.pki.identity import InvalidIdentity, Role, identity_of
from konbini.pki.scramble import ScrambleKey, ScrambleKeySet
from konbini.pki.trustcodec import decode_trust_list, encode_trust_list
from konbini.pki.trustmodel import DocumentSigner, TrustList, TrustListScrambleKey

__all__ = [
    "DocumentSigner",
    "SignedTrustList",
    "TrustList",
    "TrustListScrambleKey",
    "build_trust_list_at",
    "sign_trust_list",
    "verify_document_signature",
    "verify_signed_trust_list_at",
]


@dataclass(frozen=True)
class SignedTrustList:
    """The exact serialized trust list, the centre's P1363 signature and its certificate
    (``konbini.common.v1.SignedTrustList``; see :func:`to_proto` / :func:`from_proto`)."""

    trust_list: bytes
    signature: bytes
    signer_certificate_der: bytes


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(Encoding.DER)


def build_trust_list_at(
    now: dt.datetime,
    *,
    sequence: int,
    next_update_in: dt.timedelta,
    document_signers: Sequence[x509.Certificate],
    scramble_keys: ScrambleKeySet,
) -> TrustList:
    """A trust list listing each document signer (validity = its certificate's) and every
    scramble key of the set."""
    signers = []
    for cert in document_signers:
        identity = identity_of(cert)
        if identity.role is not Role.MUNICIPALITY or len(identity.municipality_codes) != 1:
            raise ValueError("a document signer certificate names exactly one municipality")
        signers.append(
            DocumentSigner(
                municipality_code=identity.municipality_codes[0],
                key_id=key_id_of(cert),
                certificate_der=_der(cert),
                not_before=cert.not_valid_before_utc,
                not_after=cert.not_valid_after_utc,
            )
        )
    keys = tuple(
        TrustListScrambleKey(k.key_id, k.key, k.not_before, k.not_after)
        for k in scramble_keys.keys
    )
    return TrustList(
        sequence=sequence,
        issued_at=now,
        next_update=now + next_update_in,
        document_signers=tuple(signers),
        scramble_keys=keys,
    )


def sign_trust_list(
    trust_list: TrustList, key: ec.EllipticCurvePrivateKey, certificate: x509.Certificate
) -> SignedTrustList:
    """Serialize and sign with the centre's trust-list key."""
    data = encode_trust_list(trust_list)
    return SignedTrustList(data, sign_p1363(key, data), _der(certificate))


def _issued_by_root(
    cert: x509.Certificate, roots: Sequence[x509.Certificate], at: dt.datetime
) -> bool:
    if not cert.not_valid_before_utc <= at <= cert.not_valid_after_utc:
        return False
    for root in roots:
        if root.subject != cert.issuer:
            continue
        try:
            cert.verify_directly_issued_by(root)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return True
    return False


def verify_signed_trust_list_at(
    signed: SignedTrustList,
    roots: Sequence[x509.Certificate],
    at: dt.datetime,
    *,
    grace: dt.timedelta = dt.timedelta(0),
) -> TrustList:
    """The trust list, once its signer chains to ``roots`` (the document-signing CA), speaks
    for a centre, signed these bytes, and the list is not past next_update + ``grace``.
    Every listed document signer must chain to ``roots`` too."""
    try:
        signer = x509.load_der_x509_certificate(signed.signer_certificate_der)
        identity = identity_of(signer)
    except (ValueError, InvalidIdentity):
        raise TrustListRejected("TRUST_LIST_INVALID", "bad signer certificate") from None
    if identity.role is not Role.CENTRE or not _issued_by_root(signer, roots, at):
        raise TrustListRejected("TRUST_LIST_INVALID", "the signer is not a trusted centre")
    if not verify_p1363(signer, signed.trust_list, signed.signature):
        raise TrustListRejected("TRUST_LIST_INVALID", "the trust list signature does not verify")
    try:
        trust_list = decode_trust_list(signed.trust_list)
    except ValueError:
        raise TrustListRejected("TRUST_LIST_INVALID", "malformed trust list") from None
    for entry in trust_list.document_signers:
        if not _signer_entry_valid(entry, roots):
            raise TrustListRejected(
                "TRUST_LIST_INVALID",
                f"document signer {entry.key_id} does not chain to the document-signing CA",
            )
    if at > trust_list.next_update + grace:
        raise TrustListRejected("TRUST_LIST_STALE", "the trust list is past its next update")
    return trust_list


def _signer_entry_valid(entry: DocumentSigner, roots: Sequence[x509.Certificate]) -> bool:
    try:
        cert = x509.load_der_x509_certificate(entry.certificate_der)
        identity = identity_of(cert)
    except (ValueError, InvalidIdentity):
        return False
    return (
        _issued_by_root(cert, roots, cert.not_valid_before_utc)
        and identity.role is Role.MUNICIPALITY
        and entry.municipality_code in identity.municipality_codes
        and key_id_of(cert) == entry.key_id
    )


def verify_document_signature(  # noqa: PLR0917 - mirrors the seal's fields in order
    trust_list: TrustList,
    municipality_code: str,
    key_id: str,
    data: bytes,
    signature: bytes,
    at: dt.datetime,
) -> DocumentSigner:
    """Check a document signature made at ``at`` (the time printed in the seal) by the
    municipality's key ``key_id``; return the signer entry or raise
    :class:`DocumentSignatureRejected`. ``trust_list`` must come from
    :func:`verify_signed_trust_list_at`."""
    for entry in trust_list.document_signers:
        if entry.municipality_code != municipality_code or entry.key_id != key_id:
            continue
        if not entry.not_before <= at < entry.not_after:
            continue
        cert = x509.load_der_x509_certificate(entry.certificate_der)
        if not verify_p1363(cert, data, signature):
            raise DocumentSignatureRejected(
                "DOCUMENT_SIGNATURE_INVALID", "the document signature does not verify"
            )
        return entry
    raise DocumentSignatureRejected(
        "DOCUMENT_SIGNER_UNKNOWN",
        "no signer of that municipality and key id valid at the signing time",
        municipality_code=municipality_code,
        key_id=key_id,
    )


def scramble_key(trust_list: TrustList, key_id: str) -> ScrambleKey:
    """The scramble key ``key_id`` listed in a verified trust list."""
    for k in trust_list.scramble_keys:
        if k.key_id == key_id:
            return ScrambleKey(k.key_id, k.key, k.not_before, k.not_after)
    raise DocumentSignatureRejected("SCRAMBLE_KEY_UNKNOWN", f"unknown scramble key {key_id!r}")


def to_proto(signed: SignedTrustList) -> trust_pb2.SignedTrustList:
    """The wire message."""
    return trust_pb2.SignedTrustList(
        trust_list=signed.trust_list,
        signature=signed.signature,
        signer_certificate_der=signed.signer_certificate_der,
    )


def from_proto(message: trust_pb2.SignedTrustList) -> SignedTrustList:
    """From the wire message (verify with :func:`verify_signed_trust_list_at`)."""
    return SignedTrustList(
        message.trust_list, message.signature, message.signer_certificate_der
    )
