"""The municipality's document-signing key as the composer uses it."""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import ec

from konbini.pki import CertPaths
from konbini.pki.docsign import key_id_of, sign_p1363


@dataclass(frozen=True)
class DocumentSigner:
    """A document-signing key and its trust-list key id (``key_id_of`` its certificate)."""

    key_id: str
    private_key: ec.EllipticCurvePrivateKey

    @classmethod
    def from_paths(cls, cert_paths: CertPaths) -> DocumentSigner:
        """Load the signer from a PKI directory's ``document_signer(code)`` pair."""
        issued = cert_paths.load()
        if not isinstance(issued.key, ec.EllipticCurvePrivateKey) or not isinstance(
            issued.key.curve, ec.SECP256R1
        ):
            raise ValueError("a document-signing key must be ECDSA P-256")
        return cls(key_id_of(issued.certificate), issued.key)

    def sign(self, data: bytes) -> bytes:
        """P1363 ECDSA P-256 / SHA-256 signature over ``data``."""
        return sign_p1363(self.private_key, data)

    def __repr__(self) -> str:  # never show key material
        return f"DocumentSigner(key_id={self.key_id!r})"
