"""Low-level X.509 building blocks (keys, CA and leaf certificates, PEM files).

The high-level calls (:mod:`konbini.pki.network`, :mod:`konbini.pki.docsign`,
:mod:`konbini.pki.jpki`, :func:`konbini.pki.pkidir.pki_init`) are built from these.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from konbini.pki.files import PUBLIC_MODE, SECRET_MODE, write_atomic

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

# Issued certificates start a little in the past so a peer whose clock is slightly behind
# still accepts them.
BACKDATE = dt.timedelta(minutes=5)


@dataclass(frozen=True)
class Issued:
    """A certificate and its private key."""

    certificate: x509.Certificate
    key: PrivateKey


def new_ec_key() -> ec.EllipticCurvePrivateKey:
    """A fresh ECDSA P-256 key."""
    return ec.generate_private_key(ec.SECP256R1())


def new_rsa_key() -> rsa.RSAPrivateKey:
    """A fresh RSA-2048 key (the JPKI card and CA key size)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def simple_name(common_name: str, organization: str = "konbini-kofu development") -> x509.Name:
    """A name of the form ``O=<organization>, CN=<common_name>``."""
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def make_ca(
    name: x509.Name,
    key: PrivateKey,
    now: dt.datetime,
    valid_for: dt.timedelta,
) -> x509.Certificate:
    """A self-signed CA certificate (pathLen 0: the development CAs issue leaves only)."""
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + valid_for)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
    )
    return builder.sign(key, hashes.SHA256())


def leaf_builder(
    subject: x509.Name,
    public_key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey,
    issuer: Issued,
    not_before: dt.datetime,
    not_after: dt.datetime,
) -> x509.CertificateBuilder:
    """A leaf certificate builder with the usual identifiers; callers add their profile."""
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.certificate.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False,
        )
    )


def signing_key_usage() -> x509.KeyUsage:
    """keyUsage digitalSignature only."""
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def issue_tls_leaf(
    issuer: Issued,
    common_name: str,
    uris: Sequence[str],
    *,
    server: bool,
    now: dt.datetime,
    valid_for: dt.timedelta,
    dns_names: Sequence[str] = (),
    ip_addresses: Sequence[str] = (),
) -> Issued:
    """A TLS server (serverAuth) or client (clientAuth) certificate with identity URIs in SAN."""
    key = new_ec_key()
    names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(u) for u in uris]
    names += [x509.DNSName(d) for d in dns_names]
    names += [x509.IPAddress(ipaddress.ip_address(a)) for a in ip_addresses]
    eku = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    cert = (
        leaf_builder(simple_name(common_name), key.public_key(), issuer, now - BACKDATE,
                     now + valid_for)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(signing_key_usage(), critical=True)
        .add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
        .sign(issuer.key, hashes.SHA256())
    )
    return Issued(cert, key)


def identity_uris(cert: x509.Certificate) -> list[str]:
    """The URIs in a certificate's subjectAltName (empty if it has none)."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return list(san.get_values_for_type(x509.UniformResourceIdentifier))


def cert_pem(cert: x509.Certificate) -> bytes:
    """PEM bytes of a certificate."""
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(key: PrivateKey) -> bytes:
    """Unencrypted PKCS#8 PEM of a private key (protected by file mode 0600)."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def save_issued(issued: Issued, cert_path: Path, key_path: Path) -> None:
    """Write the key (0600) first, then the certificate (0644)."""
    write_atomic(key_path, key_pem(issued.key), SECRET_MODE)
    write_atomic(cert_path, cert_pem(issued.certificate), PUBLIC_MODE)


def load_certificate(path: Path) -> x509.Certificate:
    """A certificate from a PEM or DER file."""
    data = path.read_bytes()
    if data.lstrip().startswith(b"-----BEGIN"):
        return x509.load_pem_x509_certificate(data)
    return x509.load_der_x509_certificate(data)


def load_private_key(path: Path) -> PrivateKey:
    """A private key from an unencrypted PEM file."""
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise TypeError(f"{path}: unsupported key type {type(key).__name__}")
    return key


def load_issued(cert_path: Path, key_path: Path) -> Issued:
    """A certificate and its key from their PEM files."""
    return Issued(load_certificate(cert_path), load_private_key(key_path))
