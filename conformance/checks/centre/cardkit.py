"""The suite's My Number cards: software cards issued from a JPKI CA the suite holds (the PKI
directory's, or one it makes), CRLs it signs itself (so revoked, stale and fresh are under its
control), and signatures made through APDUs as a terminal makes them."""

from __future__ import annotations

import datetime as dt
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding

from konbini.card import JpkiCard, SoftCard
from konbini.pki.jpki import create_jpki_ca, issue_auth_certificate
from konbini.pki.x509util import (
    Issued,
    leaf_builder,
    load_issued,
    new_rsa_key,
    signing_key_usage,
)

PIN = "4321"
CA_LIFETIME = dt.timedelta(days=3650)
CARD_BACKDATE = dt.timedelta(days=30)  # cards valid from a month before the suite's clock
CARD_LIFETIME = dt.timedelta(days=5 * 365)
CRL_LIFETIME = dt.timedelta(days=400)  # covers any date a check sets the clock to


@dataclass
class SuiteCard:
    """One software card, driven through APDUs (select, read certificate, verify PIN, sign)."""

    path: Path
    certificate_der: bytes
    serial: str  # lowercase hex, as bindings name it
    serial_int: int

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._card = JpkiCard(SoftCard.open(self.path))
        self._card.select_jpki()
        if self._card.read_auth_certificate() != self.certificate_der:
            raise RuntimeError("the software card returned another certificate")
        self._card.verify_pin(PIN)

    def sign(self, data: bytes) -> bytes:
        """RSA PKCS#1 v1.5 over SHA-256 of ``data``, computed by the card."""
        with self._lock:  # one APDU exchange at a time, as with a real reader
            return self._card.sign_sha256(data)


class CardAuthority:
    """A JPKI CA the suite issues cards and CRLs from (never touching a PKI dir's revocation
    database: CRLs are built here, from the serials a check names)."""

    def __init__(self, issued: Issued, directory: Path) -> None:
        self.issued = issued
        self.directory = directory
        self._count = 0
        self._lock = threading.Lock()

    @classmethod
    def from_files(cls, cert: Path, key: Path, directory: Path) -> CardAuthority:
        return cls(load_issued(cert, key), directory)

    @classmethod
    def generated(cls, now: dt.datetime, directory: Path) -> CardAuthority:
        """A CA of the suite's own (the centre trusts it only through LoadDataset)."""
        return cls(create_jpki_ca(now - CARD_BACKDATE * 2, CA_LIFETIME), directory)

    @property
    def certificate_der(self) -> bytes:
        return self.issued.certificate.public_bytes(Encoding.DER)

    def card(self, now: dt.datetime, *, expired: bool = False,
             not_yet_valid: bool = False, auth_profile: bool = True) -> SuiteCard:
        """A new card valid around ``now`` (or expired yesterday, or valid from tomorrow;
        without ``auth_profile`` its certificate lacks the user-authentication policy)."""
        key = new_rsa_key()
        if expired:
            not_before, not_after = now - CARD_LIFETIME, now - dt.timedelta(days=1)
        elif not_yet_valid:
            not_before, not_after = now + dt.timedelta(days=1), now + CARD_LIFETIME
        else:
            not_before, not_after = now - CARD_BACKDATE, now + CARD_LIFETIME
        if auth_profile:
            cert = issue_auth_certificate(self.issued, key.public_key(), not_before, not_after)
        else:  # digitalSignature, but no JPKI user-authentication policy
            subject = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "NO POLICY")])
            cert = (leaf_builder(subject, key.public_key(), self.issued, not_before, not_after)
                    .add_extension(signing_key_usage(), critical=True)
                    .sign(self.issued.key, hashes.SHA256()))  # type: ignore[arg-type]
        with self._lock:
            self._count += 1
            path = self.directory / f"card-{self._count}-{cert.serial_number:x}.json"
        der = cert.public_bytes(Encoding.DER)
        SoftCard.create(path, auth_certificate_der=der,
                        auth_ca_certificate_der=self.certificate_der, auth_key=key, pin=PIN)
        return SuiteCard(path, der, format(cert.serial_number, "x"), cert.serial_number)

    def crl_der(self, this_update: dt.datetime, next_update: dt.datetime,
                revoked: tuple[int, ...] = ()) -> bytes:
        """A CRL signed by this CA listing ``revoked``."""
        ca = self.issued
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(ca.certificate.subject)
            .last_update(this_update)
            .next_update(next_update)
            .add_extension(x509.CRLNumber(int(this_update.timestamp())), critical=False)
        )
        for serial in revoked:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(serial)
                .revocation_date(this_update).build())
        return builder.sign(ca.key, hashes.SHA256()).public_bytes(Encoding.DER)  # type: ignore[arg-type]


def card_directory() -> Path:
    """Where the suite's card files go (test keys only; removed with the temp dir)."""
    return Path(tempfile.mkdtemp(prefix="konbini-cf-cards-"))
