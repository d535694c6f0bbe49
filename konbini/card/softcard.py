"""A software My Number Card (JPKI application) that answers APDUs as the real card does.

The card lives in a JSON file (mode 0600, written atomically): the readable files (auth
certificate 000A, auth CA certificate 000B, token info 0006), the auth private key (no APDU can
read it), a salted hash of the 4-digit auth PIN and its try counter. The counter is written
before a VERIFY answers, so a lock survives closing and reopening the card.

Behaviour modelled (short APDUs only, as the JPKI application uses):

- ``00 A4 04 0C 0A <AID>`` SELECT the application; ``00 A4 02 0C 02 <EF>`` SELECT an EF of it.
  Selecting the application resets the PIN verification of the session.
- ``00 B0 <off hi> <off lo> <Le>`` READ BINARY of the selected transparent EF (Le 00 = 256).
- ``00 20 00 80 [04 <ASCII PIN>]`` VERIFY against the selected PIN EF 0018; without data it
  answers ``63 Cx`` (x tries left; ``90 00`` once verified in this session).
- ``80 2A 00 80 Lc <DigestInfo> [00]`` COMPUTE DIGITAL SIGNATURE with the selected key EF 0017
  after a successful VERIFY: PKCS#1 v1.5 type 1 padding over the DigestInfo, RSA-2048.

A PIN-less (face-only) card has no auth certificate, key or PIN: those EFs answer ``6A 82``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass, replace
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from konbini.card import constants as c
from konbini.pki.files import SECRET_MODE, write_atomic

FORMAT = "konbini-softcard/1"
_PIN_HASH_ITERATIONS = 20_000
_PKCS1_MIN_PADDING = 11


class SoftCardFormatError(ValueError):
    """The card file is not a software card of this format."""


def _hash_pin(pin: bytes, salt: bytes) -> bytes:
    return hashlib.pbkdf2_hmac("sha256", pin, salt, _PIN_HASH_ITERATIONS)


def _sw(sw: int, data: bytes = b"") -> bytes:
    return data + sw.to_bytes(2, "big")


class _Refused(Exception):
    """A command ends with an error status word (raised inside the command handlers)."""

    def __init__(self, sw: int) -> None:
        super().__init__(f"{sw:04X}")
        self.sw = sw


@dataclass(frozen=True)
class _CardData:
    """What the card file holds."""

    files: dict[int, bytes]
    key_pem: bytes | None
    pin_salt: bytes
    pin_hash: bytes | None
    pin_tries_left: int

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "format": FORMAT,
                "files": {
                    f"{ef:04X}": base64.b64encode(v).decode() for ef, v in self.files.items()
                },
                "auth_key_pem": self.key_pem.decode() if self.key_pem else None,
                "auth_pin_salt": self.pin_salt.hex(),
                "auth_pin_hash": self.pin_hash.hex() if self.pin_hash else None,
                "auth_pin_tries_left": self.pin_tries_left,
            },
            indent=2,
        ).encode()

    @classmethod
    def from_json(cls, data: bytes) -> _CardData:
        try:
            raw = json.loads(data)
            if raw.get("format") != FORMAT:
                raise SoftCardFormatError(f"not a {FORMAT} file")
            return cls(
                files={int(k, 16): base64.b64decode(v) for k, v in raw["files"].items()},
                key_pem=raw["auth_key_pem"].encode() if raw["auth_key_pem"] else None,
                pin_salt=bytes.fromhex(raw["auth_pin_salt"]),
                pin_hash=bytes.fromhex(raw["auth_pin_hash"]) if raw["auth_pin_hash"] else None,
                pin_tries_left=int(raw["auth_pin_tries_left"]),
            )
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            raise SoftCardFormatError(f"malformed software card: {exc}") from None


@dataclass
class _Session:
    """Volatile state of one card session (power-on to removal)."""

    app_selected: bool = False
    current_ef: int | None = None
    pin_verified: bool = False


class SoftCard:
    """A software JPKI card backed by a file. Use :meth:`create` once, then :meth:`open`."""

    def __init__(self, path: Path, data: _CardData) -> None:
        self._path = path
        self._data = data
        self._session = _Session()
        self._key: rsa.RSAPrivateKey | None = None
        if data.key_pem is not None:
            key = serialization.load_pem_private_key(data.key_pem, password=None)
            if not isinstance(key, rsa.RSAPrivateKey):
                raise SoftCardFormatError("the auth key must be RSA")
            self._key = key

    @classmethod
    def create(
        cls,
        path: Path,
        *,
        auth_certificate_der: bytes | None,
        auth_ca_certificate_der: bytes,
        auth_key: rsa.RSAPrivateKey | None,
        pin: str | None,
    ) -> SoftCard:
        """Write a new card file. Pass ``None`` for certificate, key and PIN to make a PIN-less
        (face-only) card."""
        pin_less = auth_certificate_der is None
        if pin_less != (auth_key is None) or pin_less != (pin is None):
            raise ValueError("certificate, key and PIN are all given or all absent (PIN-less)")
        if pin is not None and not (len(pin) == c.AUTH_PIN_LENGTH and pin.isascii()
                                    and pin.isdigit()):
            raise ValueError("the auth PIN is exactly 4 ASCII digits")
        files = {c.EF_TOKEN_INFO: c.TOKEN_INFO, c.EF_AUTH_CA_CERT: auth_ca_certificate_der}
        key_pem = None
        if auth_certificate_der is not None and auth_key is not None:
            files[c.EF_AUTH_CERT] = auth_certificate_der
            key_pem = auth_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        salt = secrets.token_bytes(16)
        data = _CardData(
            files=files,
            key_pem=key_pem,
            pin_salt=salt,
            pin_hash=_hash_pin(pin.encode(), salt) if pin is not None else None,
            pin_tries_left=c.AUTH_PIN_TRIES,
        )
        write_atomic(path, data.to_json(), SECRET_MODE)
        return cls(path, data)

    @classmethod
    def open(cls, path: Path | str) -> SoftCard:
        """Open a card file: a new session (nothing selected, PIN not verified)."""
        path = Path(path)
        return cls(path, _CardData.from_json(path.read_bytes()))

    @property
    def pin_less(self) -> bool:
        """True for a face-only card without an auth certificate."""
        return c.EF_AUTH_CERT not in self._data.files

    def close(self) -> None:
        """End the session (the card is removed)."""
        self._session = _Session()

    def transmit(self, apdu: bytes) -> bytes:
        """Process one command APDU; return response data followed by SW1 SW2."""
        try:
            cla, ins, p1, p2, data, le = _parse(apdu)
            if cla not in (c.CLA_ISO, c.CLA_PROPRIETARY):
                raise _Refused(c.SW_CLA_NOT_SUPPORTED)
            handler = {
                (c.CLA_ISO, c.INS_SELECT): self._select,
                (c.CLA_ISO, c.INS_READ_BINARY): self._read_binary,
                (c.CLA_ISO, c.INS_VERIFY): self._verify,
                (c.CLA_PROPRIETARY, c.INS_COMPUTE_SIGNATURE): self._sign,
            }.get((cla, ins))
            if handler is None:
                raise _Refused(c.SW_INS_NOT_SUPPORTED)
            return handler(p1, p2, data, le)
        except _Refused as refused:
            return _sw(refused.sw)

    # -- commands -------------------------------------------------------------------------

    def _exists(self, ef: int) -> bool:
        if ef in self._data.files:
            return True
        if ef == c.EF_AUTH_KEY:
            return self._key is not None
        if ef == c.EF_AUTH_PIN:
            return self._data.pin_hash is not None
        return False

    def _select(self, p1: int, p2: int, data: bytes | None, le: int | None) -> bytes:
        if le is not None:
            # P2 0C means "no response data"; asking for some is inconsistent.
            raise _Refused(c.SW_WRONG_P1P2)
        if (p1, p2) == (0x04, 0x0C):
            if data != c.JPKI_AID:
                raise _Refused(c.SW_FILE_NOT_FOUND)
            # Selecting the application starts over: nothing selected, PIN to be verified.
            self._session = _Session(app_selected=True)
            return _sw(c.SW_OK)
        if (p1, p2) == (0x02, 0x0C):
            if data is None or len(data) != 2:
                raise _Refused(c.SW_WRONG_LENGTH)
            ef = int.from_bytes(data, "big")
            if not self._session.app_selected or not self._exists(ef):
                raise _Refused(c.SW_FILE_NOT_FOUND)
            self._session.current_ef = ef
            return _sw(c.SW_OK)
        raise _Refused(c.SW_WRONG_P1P2)

    def _read_binary(self, p1: int, p2: int, data: bytes | None, le: int | None) -> bytes:
        if data is not None or le is None:
            raise _Refused(c.SW_WRONG_LENGTH)
        if p1 & 0x80:
            # Short-EF addressing (b8 of P1) is not used by the JPKI application.
            raise _Refused(c.SW_WRONG_P1P2)
        ef = self._session.current_ef
        if ef is None:
            raise _Refused(c.SW_NO_CURRENT_EF)
        content = self._data.files.get(ef)
        if content is None:
            raise _Refused(c.SW_INCOMPATIBLE_FILE)  # key or PIN EF: never readable
        offset = (p1 << 8) | p2
        if offset >= len(content):
            raise _Refused(c.SW_WRONG_OFFSET)
        chunk = content[offset:offset + le]
        return _sw(c.SW_OK if len(chunk) == le else c.SW_EOF_BEFORE_LE, chunk)

    def _persist(self, data: _CardData) -> None:
        write_atomic(self._path, data.to_json(), SECRET_MODE)
        self._data = data

    def _verify(self, p1: int, p2: int, data: bytes | None, le: int | None) -> bytes:
        if (p1, p2) != (0x00, 0x80):
            raise _Refused(c.SW_WRONG_P1P2)
        if le is not None:
            raise _Refused(c.SW_WRONG_LENGTH)
        if self._data.pin_hash is None:
            raise _Refused(c.SW_REF_DATA_NOT_FOUND)
        if self._session.current_ef != c.EF_AUTH_PIN:
            raise _Refused(c.SW_NO_CURRENT_EF)
        tries = self._data.pin_tries_left
        if data is None:
            if self._session.pin_verified:
                return _sw(c.SW_OK)
            return _sw(c.SW_PIN_TRIES_BASE | tries)
        if tries == 0:
            raise _Refused(c.SW_AUTH_BLOCKED)
        if len(data) != c.AUTH_PIN_LENGTH:
            raise _Refused(c.SW_WRONG_LENGTH)
        if hmac.compare_digest(_hash_pin(data, self._data.pin_salt), self._data.pin_hash):
            if tries != c.AUTH_PIN_TRIES:
                self._persist(replace(self._data, pin_tries_left=c.AUTH_PIN_TRIES))
            self._session.pin_verified = True
            return _sw(c.SW_OK)
        # Count the failure durably before answering: pulling the card must not reset it.
        self._persist(replace(self._data, pin_tries_left=tries - 1))
        self._session.pin_verified = False
        return _sw(c.SW_PIN_TRIES_BASE | (tries - 1))

    def _sign(self, p1: int, p2: int, data: bytes | None, le: int | None) -> bytes:
        if (p1, p2) != (0x00, 0x80):
            raise _Refused(c.SW_WRONG_P1P2)
        if data is None or (le is not None and le != 256):
            raise _Refused(c.SW_WRONG_LENGTH)
        if self._session.current_ef != c.EF_AUTH_KEY or self._key is None:
            raise _Refused(c.SW_CONDITIONS_NOT_SATISFIED)
        if not self._session.pin_verified:
            raise _Refused(c.SW_SECURITY_NOT_SATISFIED)
        size = self._key.key_size // 8
        if len(data) > size - _PKCS1_MIN_PADDING:
            raise _Refused(c.SW_WRONG_DATA)
        # PKCS#1 v1.5 type 1 (EMSA-PKCS1-v1_5) over whatever DigestInfo the terminal sent.
        block = b"\x00\x01" + b"\xff" * (size - len(data) - 3) + b"\x00" + data
        numbers = self._key.private_numbers()
        m = int.from_bytes(block, "big")
        # CRT: two half-size exponentiations instead of one full-size one.
        s1 = pow(m, numbers.dmp1, numbers.p)
        s2 = pow(m, numbers.dmq1, numbers.q)
        h = (numbers.iqmp * (s1 - s2)) % numbers.p
        signature = (s2 + h * numbers.q).to_bytes(size, "big")
        return _sw(c.SW_OK, signature)


def _parse(apdu: bytes) -> tuple[int, int, int, int, bytes | None, int | None]:
    """Split a short command APDU into (CLA, INS, P1, P2, data, Le); 67 00 if malformed."""
    if len(apdu) < 4:
        raise _Refused(c.SW_WRONG_LENGTH)
    cla, ins, p1, p2 = apdu[:4]
    body = apdu[4:]
    if not body:
        return cla, ins, p1, p2, None, None
    if len(body) == 1:
        return cla, ins, p1, p2, None, body[0] or 256
    lc = body[0]
    if lc == 0:
        raise _Refused(c.SW_WRONG_LENGTH)  # extended length: not supported by this card
    if len(body) == 1 + lc:
        return cla, ins, p1, p2, body[1:], None
    if len(body) == 2 + lc:
        return cla, ins, p1, p2, body[1:1 + lc], body[-1] or 256
    raise _Refused(c.SW_WRONG_LENGTH)
