"""The centre's card checks: chain, validity, revocation (fail closed) and the card signature."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from konbini.pki.errors import CardRejected
from konbini.pki.jpki import AUTH_POLICY_OID, load_crl

MIN_RSA_BITS = 2048


@dataclass(frozen=True)
class CardIdentity:
    """A card that passed every check. ``serial`` with ``issuer`` names the certificate;
    ``fingerprint`` (SHA-256 of the DER, hex) is a stable key for card bindings."""

    serial: int
    issuer: str
    subject_cn: str
    not_before: dt.datetime
    not_after: dt.datetime
    fingerprint: str
    certificate_der: bytes


class CrlProvider(Protocol):
    """Where the verifier gets the current CRLs."""

    def crls(self) -> Sequence[x509.CertificateRevocationList]:
        """The CRLs currently known (any issuer; the verifier picks by issuer and signature)."""
        ...


@dataclass(frozen=True)
class StaticCrls:
    """A fixed list of CRLs."""

    items: tuple[x509.CertificateRevocationList, ...]

    def crls(self) -> Sequence[x509.CertificateRevocationList]:
        """The fixed list."""
        return self.items


class CrlFile:
    """A CRL file re-read whenever it is replaced (``konbini jpki crl``)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._cached: tuple[tuple[int, int], x509.CertificateRevocationList] | None = None

    def crls(self) -> Sequence[x509.CertificateRevocationList]:
        """The file's CRL, or none if the file is missing (the verifier then fails closed)."""
        try:
            st = self._path.stat()
        except FileNotFoundError:
            return ()
        # Publishing replaces the file (new inode), so this also catches same-tick rewrites.
        version = (st.st_ino, st.st_mtime_ns)
        if self._cached is None or self._cached[0] != version:
            self._cached = (version, load_crl(self._path))
        return (self._cached[1],)


def _utc(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


class CardVerifier:
    """Checks a card certificate and a signature made by its key.

    ``crl_grace`` is how long past a CRL's next_update it is still accepted; later, or with no
    valid CRL from the card's issuer at all, every card is refused with CRL_STALE.
    """

    def __init__(
        self,
        jpki_ca_certs: Sequence[x509.Certificate],
        crls: CrlProvider,
        crl_grace: dt.timedelta,
    ) -> None:
        if not jpki_ca_certs:
            raise ValueError("CardVerifier needs at least one JPKI CA certificate")
        self._cas = tuple(jpki_ca_certs)
        self._crls = crls
        self._grace = crl_grace

    def verify_at(
        self, now: dt.datetime, cert_der: bytes, signed_bytes: bytes, signature: bytes
    ) -> CardIdentity:
        """Return the card's identity, or raise :class:`CardRejected` with the first failure."""
        identity = self.check_certificate_at(now, cert_der)
        public_key = x509.load_der_x509_certificate(cert_der).public_key()
        try:
            public_key.verify(  # type: ignore[union-attr]  # RSA, checked by the profile
                signature, signed_bytes, padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            raise CardRejected("CARD_SIGNATURE_INVALID", "the card signature does not verify") \
                from None
        return identity

    def check_certificate_at(self, now: dt.datetime, cert_der: bytes) -> CardIdentity:
        """The certificate checks of :meth:`verify_at` without a card signature (a counter's
        validation, a municipality binding a card): chain, profile, validity, revocation."""
        now = _utc(now)
        try:
            cert = x509.load_der_x509_certificate(cert_der)
        except ValueError:
            raise CardRejected("CARD_PROFILE_INVALID", "not a DER certificate") from None
        ca = self._issuer_of(cert, now)
        self._check_profile(cert)
        if now < cert.not_valid_before_utc:
            raise CardRejected("CARD_NOT_YET_VALID", "the card certificate is not yet valid")
        if now > cert.not_valid_after_utc:
            raise CardRejected("CARD_EXPIRED", "the card certificate has expired")
        self._check_revocation(cert, ca, now)
        cn = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
        return CardIdentity(
            serial=cert.serial_number,
            issuer=cert.issuer.rfc4514_string(),
            subject_cn=str(cn[0].value) if cn else "",
            not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc,
            fingerprint=hashlib.sha256(cert_der).hexdigest(),
            certificate_der=cert_der,
        )

    def _issuer_of(self, cert: x509.Certificate, now: dt.datetime) -> x509.Certificate:
        for ca in self._cas:
            if ca.subject != cert.issuer:
                continue
            try:
                cert.verify_directly_issued_by(ca)
            except (ValueError, TypeError, InvalidSignature):
                continue
            if ca.not_valid_before_utc <= now <= ca.not_valid_after_utc:
                return ca
        raise CardRejected("CARD_UNKNOWN_ISSUER", "the card was not issued by a trusted JPKI CA")

    @staticmethod
    def _check_profile(cert: x509.Certificate) -> rsa.RSAPublicKey:
        public_key = cert.public_key()
        if not isinstance(public_key, rsa.RSAPublicKey) or public_key.key_size < MIN_RSA_BITS:
            raise CardRejected("CARD_PROFILE_INVALID", "the card key is not RSA-2048")
        try:
            usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
            policies = cert.extensions.get_extension_for_class(x509.CertificatePolicies).value
        except x509.ExtensionNotFound:
            raise CardRejected("CARD_PROFILE_INVALID", "key usage or policy missing") from None
        if not usage.digital_signature:
            raise CardRejected("CARD_PROFILE_INVALID", "key usage lacks digitalSignature")
        if not any(p.policy_identifier == AUTH_POLICY_OID for p in policies):
            raise CardRejected("CARD_PROFILE_INVALID", "not a user-authentication certificate")
        return public_key

    def _check_revocation(
        self, cert: x509.Certificate, ca: x509.Certificate, now: dt.datetime
    ) -> None:
        ca_key = ca.public_key()
        candidates = [
            crl
            for crl in self._crls.crls()
            if crl.issuer == ca.subject and _crl_signed_by(crl, ca_key)
        ]
        if not candidates:
            raise CardRejected("CRL_STALE", "no valid CRL from the card's issuer")
        crl = max(candidates, key=lambda c: c.last_update_utc)
        next_update = crl.next_update_utc
        if next_update is None or now > next_update + self._grace:
            raise CardRejected("CRL_STALE", "the newest CRL is past its next update")
        if crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None:
            raise CardRejected("CARD_REVOKED", "the card certificate is revoked")


def _crl_signed_by(crl: x509.CertificateRevocationList, key: object) -> bool:
    try:
        return crl.is_signature_valid(key)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
