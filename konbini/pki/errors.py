"""Typed refusals of the trust layer (reasons are catalogue names, see konbini.errors)."""

from __future__ import annotations

from konbini.errors import KonbiniError


class CardRejected(KonbiniError):
    """The centre refuses a card: CARD_REVOKED, CARD_EXPIRED, CARD_NOT_YET_VALID,
    CARD_UNKNOWN_ISSUER, CRL_STALE, CARD_SIGNATURE_INVALID or CARD_PROFILE_INVALID."""


class _VerificationFailed(KonbiniError):
    """Reason DOCUMENT_INVALID (the catalogue's one verifier reason); ``cause`` says which
    check failed and is also in the ErrorInfo metadata."""

    def __init__(self, cause: str, message: str = "", **metadata: str) -> None:
        super().__init__("DOCUMENT_INVALID", message, metadata={"cause": cause, **metadata})
        self.cause = cause


class TrustListRejected(_VerificationFailed):
    """A signed trust list does not verify (cause TRUST_LIST_INVALID) or is out of date
    (TRUST_LIST_STALE)."""


class DocumentSignatureRejected(_VerificationFailed):
    """A document signature does not verify against the trust list: cause
    DOCUMENT_SIGNER_UNKNOWN (no such municipality/key id valid at that time),
    DOCUMENT_SIGNATURE_INVALID or SCRAMBLE_KEY_UNKNOWN."""
