"""Document signing: per-municipality ECDSA P-256 signers under a document-signing CA.

Signatures are raw 64-byte ``r || s`` (IEEE P1363), compact enough for a QR code. A signer's
``key_id`` is derived from its public key, so it is stable and needs no registry.
"""

from __future__ import annotations

import datetime as dt
import hashlib

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from konbini.pki.identity import centre_uri, municipality_uri
from konbini.pki.x509util import (
    BACKDATE,
    Issued,
    leaf_builder,
    make_ca,
    new_ec_key,
    signing_key_usage,
    simple_name,
)

P1363_LENGTH = 64
_COORD = 32


def sign_p1363(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    """ECDSA P-256 / SHA-256 signature over ``data`` as 64 bytes ``r || s``."""
    if not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("document signatures use P-256 keys only")
    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(_COORD, "big") + s.to_bytes(_COORD, "big")


def verify_p1363(
    cert_or_pubkey: x509.Certificate | ec.EllipticCurvePublicKey, data: bytes, signature: bytes
) -> bool:
    """True if ``signature`` (64 bytes ``r || s``) is a valid P-256/SHA-256 signature."""
    public_key = (
        cert_or_pubkey.public_key()
        if isinstance(cert_or_pubkey, x509.Certificate)
        else cert_or_pubkey
    )
    if not isinstance(public_key, ec.EllipticCurvePublicKey) or not isinstance(
        public_key.curve, ec.SECP256R1
    ):
        return False
    if len(signature) != P1363_LENGTH:
        return False
    r = int.from_bytes(signature[:_COORD], "big")
    s = int.from_bytes(signature[_COORD:], "big")
    if r == 0 or s == 0:
        return False
    try:
        public_key.verify(encode_dss_signature(r, s), data, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


def key_id_of(cert_or_pubkey: x509.Certificate | ec.EllipticCurvePublicKey) -> str:
    """16 hex digits: the start of SHA-256 over the SubjectPublicKeyInfo."""
    public_key = (
        cert_or_pubkey.public_key()
        if isinstance(cert_or_pubkey, x509.Certificate)
        else cert_or_pubkey
    )
    spki = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(spki).hexdigest()[:16]


def create_docsign_ca(now: dt.datetime, valid_for: dt.timedelta) -> Issued:
    """The document-signing CA (root of the trust list)."""
    key = new_ec_key()
    cert = make_ca(simple_name("konbini development document-signing CA"), key, now, valid_for)
    return Issued(cert, key)


def _issue_signer(
    ca: Issued, common_name: str, uri: str, now: dt.datetime, valid_for: dt.timedelta
) -> Issued:
    key = new_ec_key()
    cert = (
        leaf_builder(simple_name(common_name), key.public_key(), ca, now - BACKDATE,
                     now + valid_for)
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(uri)]), critical=False
        )
        .add_extension(signing_key_usage(), critical=True)
        .sign(ca.key, hashes.SHA256())
    )
    return Issued(cert, key)


def issue_document_signer(
    ca: Issued, municipality_code: str, now: dt.datetime, valid_for: dt.timedelta
) -> Issued:
    """A municipality's document-signing certificate (its code in a SAN URI)."""
    return _issue_signer(
        ca, f"document signer {municipality_code}", municipality_uri(municipality_code), now,
        valid_for,
    )


def issue_trust_list_signer(
    ca: Issued, centre_id: str, now: dt.datetime, valid_for: dt.timedelta
) -> Issued:
    """The centre's trust-list signing certificate (``urn:konbini:centre:<id>`` in SAN)."""
    return _issue_signer(ca, f"trust list signer {centre_id}", centre_uri(centre_id), now,
                         valid_for)
