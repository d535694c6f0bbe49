"""The development PKI: network mTLS identities, document signing and the trust list, the
scramble-key set, the JPKI test CA with CRLs, and the centre's card checks.

High-level entry points: :func:`pki_init` / :class:`PkiDir`, :class:`CardVerifier`,
:func:`sign_p1363` / :func:`verify_p1363`, :func:`verify_signed_trust_list_at` /
:func:`verify_document_signature`, and (in :mod:`konbini.pki.mtls`, which imports grpc)
the mTLS credentials and :class:`~konbini.pki.mtls.AuthorizationInterceptor`.
"""

from konbini.pki.cardcheck import CardIdentity, CardVerifier, CrlFile, CrlProvider, StaticCrls
from konbini.pki.docsign import key_id_of, sign_p1363, verify_p1363
from konbini.pki.errors import CardRejected, DocumentSignatureRejected, TrustListRejected
from konbini.pki.identity import InvalidIdentity, PeerIdentity, Role, identity_of
from konbini.pki.pkidir import CertPaths, PkiDir, PkiInitError, pki_init
from konbini.pki.scramble import ScrambleKey, ScrambleKeySet
from konbini.pki.trustlist import (
    SignedTrustList,
    TrustList,
    verify_document_signature,
    verify_signed_trust_list_at,
)

__all__ = [
    "CardIdentity",
    "CardRejected",
    "CardVerifier",
    "CertPaths",
    "CrlFile",
    "CrlProvider",
    "DocumentSignatureRejected",
    "InvalidIdentity",
    "PeerIdentity",
    "PkiDir",
    "PkiInitError",
    "Role",
    "ScrambleKey",
    "ScrambleKeySet",
    "SignedTrustList",
    "StaticCrls",
    "TrustList",
    "TrustListRejected",
    "identity_of",
    "key_id_of",
    "pki_init",
    "sign_p1363",
    "verify_document_signature",
    "verify_p1363",
    "verify_signed_trust_list_at",
]
