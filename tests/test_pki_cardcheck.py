"""The centre's card checks: each failure has its own reason."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from konbini.card import JpkiCard, SoftCard
from konbini.card.issue import issue_soft_card
from konbini.pki import CardRejected, CardVerifier, CrlFile, StaticCrls
from konbini.pki.jpki import JpkiCa, issue_auth_certificate
from konbini.pki.x509util import BACKDATE, Issued, load_issued, new_rsa_key

NOW = dt.datetime(2026, 4, 1, 9, 0, tzinfo=dt.UTC)
GRACE = dt.timedelta(hours=1)
INTENT = b"\x0a\x10challenge-0001\x12\x06192015"


def make_ca(directory: Path) -> JpkiCa:
    return JpkiCa.create(directory / "ca.pem", directory / "ca.key", directory / "db.json",
                         directory / "crl.pem", now=NOW, valid_for=dt.timedelta(days=3650))


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> JpkiCa:
    return make_ca(tmp_path_factory.mktemp("jpki"))


@pytest.fixture(scope="module")
def card_key() -> rsa.RSAPrivateKey:
    return new_rsa_key()


def der(cert: x509.Certificate) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding

    return cert.public_bytes(Encoding.DER)


def sign(key: rsa.RSAPrivateKey, data: bytes = INTENT) -> bytes:
    return key.sign(data, padding.PKCS1v15(), hashes.SHA256())


def verifier(ca: JpkiCa, crl_next_update: dt.timedelta = dt.timedelta(hours=24)) -> CardVerifier:
    return CardVerifier([ca.certificate], StaticCrls((ca.crl_at(NOW, crl_next_update),)), GRACE)


def test_good_card_through_apdus(ca: JpkiCa, tmp_path: Path) -> None:
    serial = issue_soft_card(ca, tmp_path / "c.card", "2580", now=NOW)
    card = JpkiCard(SoftCard.open(tmp_path / "c.card"))
    card.select_jpki()
    cert_der = card.read_auth_certificate()
    card.verify_pin("2580")
    signature = card.sign_sha256(INTENT)
    identity = verifier(ca).verify_at(NOW, cert_der, INTENT, signature)
    assert identity.serial == serial
    assert identity.certificate_der == cert_der
    assert len(identity.fingerprint) == 64


def test_revoked(ca: JpkiCa, card_key: rsa.RSAPrivateKey) -> None:
    cert = ca.issue_at(NOW, card_key.public_key())
    good = verifier(ca)
    good.verify_at(NOW, der(cert), INTENT, sign(card_key))
    assert ca.revoke_at(NOW, cert.serial_number)
    assert not ca.revoke_at(NOW, cert.serial_number)
    with pytest.raises(CardRejected) as exc:
        verifier(ca).verify_at(NOW, der(cert), INTENT, sign(card_key))
    assert exc.value.reason == "CARD_REVOKED"


def test_expired_and_not_yet_valid(ca: JpkiCa, card_key: rsa.RSAPrivateKey) -> None:
    expired = ca.issue_at(NOW, card_key.public_key(), expired=True)
    with pytest.raises(CardRejected) as exc:
        verifier(ca).verify_at(NOW, der(expired), INTENT, sign(card_key))
    assert exc.value.reason == "CARD_EXPIRED"
    issued = Issued(ca.certificate, load_issued(ca.cert_path, ca.key_path).key)
    future = issue_auth_certificate(issued, card_key.public_key(), NOW + dt.timedelta(days=1),
                                    NOW + dt.timedelta(days=30))
    with pytest.raises(CardRejected) as exc:
        verifier(ca).verify_at(NOW, der(future), INTENT, sign(card_key))
    assert exc.value.reason == "CARD_NOT_YET_VALID"


def test_unknown_issuer(ca: JpkiCa, card_key: rsa.RSAPrivateKey, tmp_path: Path) -> None:
    # Same issuer name, different key: a forged CA must not pass on its name.
    other = make_ca(tmp_path)
    cert = other.issue_at(NOW, card_key.public_key())
    assert cert.issuer == ca.certificate.subject
    with pytest.raises(CardRejected) as exc:
        verifier(ca).verify_at(NOW, der(cert), INTENT, sign(card_key))
    assert exc.value.reason == "CARD_UNKNOWN_ISSUER"


def test_stale_crl_fails_closed(ca: JpkiCa, card_key: rsa.RSAPrivateKey) -> None:
    cert = ca.issue_at(NOW, card_key.public_key())
    v = verifier(ca, crl_next_update=dt.timedelta(hours=2))
    v.verify_at(NOW + dt.timedelta(hours=2, minutes=59), der(cert), INTENT, sign(card_key))
    with pytest.raises(CardRejected) as exc:
        v.verify_at(NOW + dt.timedelta(hours=3, minutes=1), der(cert), INTENT, sign(card_key))
    assert exc.value.reason == "CRL_STALE"
    no_crl = CardVerifier([ca.certificate], StaticCrls(()), GRACE)
    with pytest.raises(CardRejected) as exc:
        no_crl.verify_at(NOW, der(cert), INTENT, sign(card_key))
    assert exc.value.reason == "CRL_STALE"


def test_crl_from_another_ca_is_ignored(
    ca: JpkiCa, card_key: rsa.RSAPrivateKey, tmp_path: Path
) -> None:
    cert = ca.issue_at(NOW, card_key.public_key())
    forged = make_ca(tmp_path).crl_at(NOW, dt.timedelta(days=1))  # same name, other key
    v = CardVerifier([ca.certificate], StaticCrls((forged,)), GRACE)
    with pytest.raises(CardRejected) as exc:
        v.verify_at(NOW, der(cert), INTENT, sign(card_key))
    assert exc.value.reason == "CRL_STALE"


def test_bad_signature(ca: JpkiCa, card_key: rsa.RSAPrivateKey) -> None:
    cert = ca.issue_at(NOW, card_key.public_key())
    v = verifier(ca)
    for data, signature in [
        (INTENT + b"x", sign(card_key)),  # signature over other bytes
        (INTENT, sign(new_rsa_key())),  # someone else's key
        (INTENT, b"\x00" * 256),
        (INTENT, b""),
    ]:
        with pytest.raises(CardRejected) as exc:
            v.verify_at(NOW, der(cert), data, signature)
        assert exc.value.reason == "CARD_SIGNATURE_INVALID"


def test_profile_invalid(ca: JpkiCa, card_key: rsa.RSAPrivateKey) -> None:
    issued = load_issued(ca.cert_path, ca.key_path)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "X")]))
        .issuer_name(ca.certificate.subject)
        .public_key(card_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - BACKDATE)
        .not_valid_after(NOW + dt.timedelta(days=10))
    )
    no_policy = builder.sign(issued.key, hashes.SHA256())
    with pytest.raises(CardRejected) as exc:
        verifier(ca).verify_at(NOW, der(no_policy), INTENT, sign(card_key))
    assert exc.value.reason == "CARD_PROFILE_INVALID"
    with pytest.raises(CardRejected) as exc:
        verifier(ca).verify_at(NOW, b"not a certificate", INTENT, sign(card_key))
    assert exc.value.reason == "CARD_PROFILE_INVALID"


def test_crl_file_provider_picks_up_new_crl(ca: JpkiCa, card_key: rsa.RSAPrivateKey) -> None:
    cert = ca.issue_at(NOW, card_key.public_key())
    ca.publish_crl_at(NOW, dt.timedelta(days=1))
    v = CardVerifier([ca.certificate], CrlFile(ca.crl_path), GRACE)
    v.verify_at(NOW, der(cert), INTENT, sign(card_key))
    ca.revoke_at(NOW, cert.serial_number)
    v.verify_at(NOW, der(cert), INTENT, sign(card_key))  # not yet published
    ca.publish_crl_at(NOW + dt.timedelta(seconds=1), dt.timedelta(days=1))
    with pytest.raises(CardRejected) as exc:
        v.verify_at(NOW + dt.timedelta(seconds=2), der(cert), INTENT, sign(card_key))
    assert exc.value.reason == "CARD_REVOKED"
