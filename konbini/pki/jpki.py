"""The JPKI test CA: RSA-2048 user-authentication certificates, revocation and CRLs.

The certificate profile follows the real card's auth certificate (DOMAIN.md): issuer
``C=JP, O=JPKI, OU=JPKI for user authentication, OU=Japan Agency for Local Authority
Information Systems``, an opaque random CN as the only subject attribute, keyUsage
digitalSignature (critical) and certificate policy 1.2.392.200149.8.5.1.3.30.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from konbini.pki.files import PUBLIC_MODE, SECRET_MODE, write_atomic
from konbini.pki.x509util import (
    BACKDATE,
    Issued,
    leaf_builder,
    load_certificate,
    load_issued,
    make_ca,
    new_rsa_key,
    save_issued,
    signing_key_usage,
)

AUTH_POLICY_OID = x509.ObjectIdentifier("1.2.392.200149.8.5.1.3.30")
JPKI_AUTH_ISSUER = x509.Name(
    [
        x509.NameAttribute(NameOID.COUNTRY_NAME, "JP"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "JPKI"),
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "JPKI for user authentication"),
        x509.NameAttribute(
            NameOID.ORGANIZATIONAL_UNIT_NAME,
            "Japan Agency for Local Authority Information Systems",
        ),
    ]
)
# The real auth certificate is valid until the holder's fifth birthday after issuance.
DEFAULT_CARD_VALIDITY = dt.timedelta(days=5 * 365)


class UnknownSerial(LookupError):
    """The serial was not issued by this CA."""


def create_jpki_ca(now: dt.datetime, valid_for: dt.timedelta) -> Issued:
    """A fresh JPKI test CA (RSA-2048, the real issuer name)."""
    key = new_rsa_key()
    return Issued(make_ca(JPKI_AUTH_ISSUER, key, now, valid_for), key)


def issue_auth_certificate(
    ca: Issued,
    public_key: rsa.RSAPublicKey,
    not_before: dt.datetime,
    not_after: dt.datetime,
) -> x509.Certificate:
    """A user-authentication certificate for a card key (``not_after`` may be in the past)."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, secrets.token_hex(16).upper())])
    policy = x509.CertificatePolicies([x509.PolicyInformation(AUTH_POLICY_OID, None)])
    return (
        leaf_builder(subject, public_key, ca, not_before, not_after)
        .add_extension(signing_key_usage(), critical=True)
        .add_extension(policy, critical=False)
        .sign(ca.key, hashes.SHA256())
    )


@dataclass(frozen=True)
class Revocation:
    """One revoked serial."""

    serial: int
    revoked_at: dt.datetime


class JpkiCa:
    """The JPKI test CA on disk: certificate, key, revocation database and published CRL.

    The revocation database is a JSON file
    ``{"crl_number": n, "issued": [serial, ...], "revoked": [{"serial", "revoked_at"}]}``
    (serials as decimal strings).
    """

    def __init__(self, cert_path: Path, key_path: Path, db_path: Path, crl_path: Path) -> None:
        self.cert_path = cert_path
        self.key_path = key_path
        self.db_path = db_path
        self.crl_path = crl_path

    @classmethod
    def create(
        cls, cert_path: Path, key_path: Path, db_path: Path, crl_path: Path,
        *, now: dt.datetime, valid_for: dt.timedelta,
    ) -> JpkiCa:
        """Make a new CA with an empty revocation database and an empty CRL."""
        save_issued(create_jpki_ca(now, valid_for), cert_path, key_path)
        ca = cls(cert_path, key_path, db_path, crl_path)
        ca._save_db({"crl_number": 0, "issued": [], "revoked": []})
        ca.publish_crl_at(now, dt.timedelta(days=1))
        return ca

    @property
    def certificate(self) -> x509.Certificate:
        """The CA certificate."""
        return load_certificate(self.cert_path)

    def _issued(self) -> Issued:
        return load_issued(self.cert_path, self.key_path)

    def _load_db(self) -> dict:
        return json.loads(self.db_path.read_bytes())

    def _save_db(self, db: dict) -> None:
        write_atomic(self.db_path, json.dumps(db, indent=2).encode(), SECRET_MODE)

    def issue_at(
        self,
        now: dt.datetime,
        public_key: rsa.RSAPublicKey,
        *,
        valid_for: dt.timedelta = DEFAULT_CARD_VALIDITY,
        expired: bool = False,
    ) -> x509.Certificate:
        """Issue an auth certificate; ``expired`` makes one whose validity ended yesterday."""
        if expired:
            not_before, not_after = now - valid_for, now - dt.timedelta(days=1)
        else:
            not_before, not_after = now - BACKDATE, now + valid_for
        cert = issue_auth_certificate(self._issued(), public_key, not_before, not_after)
        db = self._load_db()
        db["issued"].append(str(cert.serial_number))
        self._save_db(db)
        return cert

    def revoke_at(self, now: dt.datetime, serial: int) -> bool:
        """Record ``serial`` as revoked at ``now``; False if it already was."""
        db = self._load_db()
        if str(serial) not in db["issued"]:
            raise UnknownSerial(f"serial {serial} was not issued by this CA")
        if any(r["serial"] == str(serial) for r in db["revoked"]):
            return False
        db["revoked"].append({"serial": str(serial), "revoked_at": now.isoformat()})
        self._save_db(db)
        return True

    def revocations(self) -> list[Revocation]:
        """Every revoked serial."""
        return [
            Revocation(int(r["serial"]), dt.datetime.fromisoformat(r["revoked_at"]))
            for r in self._load_db()["revoked"]
        ]

    def crl_at(
        self, now: dt.datetime, next_update_in: dt.timedelta
    ) -> x509.CertificateRevocationList:
        """A new CRL (next CRL number) listing every revocation, valid until now+next_update_in."""
        db = self._load_db()
        db["crl_number"] += 1
        self._save_db(db)
        ca = self._issued()
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(ca.certificate.subject)
            .last_update(now)
            .next_update(now + next_update_in)
            .add_extension(x509.CRLNumber(db["crl_number"]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
                critical=False,
            )
        )
        for r in self.revocations():
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder()
                .serial_number(r.serial)
                .revocation_date(r.revoked_at)
                .build()
            )
        return builder.sign(ca.key, hashes.SHA256())

    def publish_crl_at(
        self, now: dt.datetime, next_update_in: dt.timedelta
    ) -> x509.CertificateRevocationList:
        """Make a CRL and write it (PEM) where the centre reads it."""
        crl = self.crl_at(now, next_update_in)
        write_atomic(self.crl_path, crl.public_bytes(serialization.Encoding.PEM), PUBLIC_MODE)
        return crl


def load_crl(path: Path) -> x509.CertificateRevocationList:
    """A CRL from a PEM or DER file."""
    data = path.read_bytes()
    if data.lstrip().startswith(b"-----BEGIN"):
        return x509.load_pem_x509_crl(data)
    return x509.load_der_x509_crl(data)
