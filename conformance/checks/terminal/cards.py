"""The suite's software cards: its own JPKI test CA (in memory, for this run only), card
certificates bound at the fake centre, and the SoftCardSpec a terminal under test is given.

The suite knows each card's PIN and tries, so it can tell from what the terminal shows and
what reaches the fake centre whether the terminal sent the card anything it should not have.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from konbini.pki.jpki import create_jpki_ca, issue_auth_certificate
from konbini.pki.x509util import Issued, new_rsa_key
from konbini.testing.v1 import testing_pb2

CA_LIFETIME = dt.timedelta(days=30)
CARD_LIFETIME = dt.timedelta(days=365)
KEY_POOL = 2  # card keys are reused across certificates: key generation is the slow part


@dataclass(frozen=True)
class SuiteCard:
    """A card the suite made: its spec for InsertCard, its serial and its PIN."""

    spec: testing_pb2.SoftCardSpec
    serial: int | None  # None: a PIN-less face-only card
    pin: str

    def wrong_pin(self, offset: int = 1) -> str:
        """A well-formed PIN that is not this card's."""
        return f"{(int(self.pin) + offset) % 10000:04d}"


class CardFactory:
    """Issues cards under the suite's JPKI CA."""

    def __init__(self, now: dt.datetime, seed: int) -> None:
        self._now = now
        self._random = random.Random(seed)  # noqa: S311 - reproducible from the run seed
        self.ca: Issued = create_jpki_ca(now - dt.timedelta(hours=1), CA_LIFETIME)
        self._keys: list[rsa.RSAPrivateKey] = [new_rsa_key() for _ in range(KEY_POOL)]
        self._issued = 0
        self.crl = self._empty_crl()

    @property
    def ca_der(self) -> bytes:
        return self.ca.certificate.public_bytes(serialization.Encoding.DER)

    def _empty_crl(self) -> x509.CertificateRevocationList:
        return (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.ca.certificate.subject)
            .last_update(self._now - dt.timedelta(hours=1))
            .next_update(self._now + CA_LIFETIME)
            .add_extension(x509.CRLNumber(1), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.ca.key.public_key()),
                critical=False,
            )
            .sign(self.ca.key, hashes.SHA256())
        )

    def new_pin(self) -> str:
        # Avoid PINs whose digits could pass for another field's value (e.g. "0000").
        while True:
            pin = f"{self._random.randrange(1000, 10000):04d}"
            if len(set(pin)) >= 3:
                return pin

    def card(self, *, tries: int = 3, pin: str | None = None) -> SuiteCard:
        """A card with a PIN and ``tries`` tries left."""
        key = self._keys[self._issued % len(self._keys)]
        self._issued += 1
        cert = issue_auth_certificate(
            self.ca, key.public_key(), self._now - dt.timedelta(hours=1),
            self._now + CARD_LIFETIME)
        pin = pin or self.new_pin()
        spec = testing_pb2.SoftCardSpec(
            auth_certificate_der=cert.public_bytes(serialization.Encoding.DER),
            auth_ca_certificate_der=self.ca_der,
            private_key_pkcs8_der=key.private_bytes(
                serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption()),
            pin=pin,
            pin_tries_left=tries,
        )
        return SuiteCard(spec, cert.serial_number, pin)

    def pin_less_card(self) -> SuiteCard:
        """A face-only card: no authentication certificate, no PIN."""
        return SuiteCard(testing_pb2.SoftCardSpec(auth_ca_certificate_der=self.ca_der), None, "")
