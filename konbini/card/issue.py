"""Issue a software My Number Card from the JPKI test CA."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from cryptography.hazmat.primitives.serialization import Encoding

from konbini.card.softcard import SoftCard
from konbini.pki.jpki import DEFAULT_CARD_VALIDITY, JpkiCa
from konbini.pki.x509util import new_rsa_key


def issue_soft_card(
    ca: JpkiCa,
    out: Path,
    pin: str | None,
    *,
    now: dt.datetime,
    expired: bool = False,
    valid_for: dt.timedelta = DEFAULT_CARD_VALIDITY,
) -> int | None:
    """Write a new card file at ``out`` and return its certificate serial. ``pin=None`` makes
    a PIN-less (face-only) card, which has no certificate (returns None)."""
    if out.exists():
        raise FileExistsError(f"{out} exists; a card file is never overwritten")
    ca_der = ca.certificate.public_bytes(Encoding.DER)
    if pin is None:
        SoftCard.create(out, auth_certificate_der=None, auth_ca_certificate_der=ca_der,
                        auth_key=None, pin=None)
        return None
    if not (len(pin) == 4 and pin.isascii() and pin.isdigit()):
        raise ValueError("the auth PIN is exactly 4 digits")
    key = new_rsa_key()
    cert = ca.issue_at(now, key.public_key(), valid_for=valid_for, expired=expired)
    SoftCard.create(out, auth_certificate_der=cert.public_bytes(Encoding.DER),
                    auth_ca_certificate_der=ca_der, auth_key=key, pin=pin)
    return cert.serial_number
