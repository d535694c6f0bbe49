"""APDUs of the JPKI application and :class:`JpkiCard`, a client over any card transport.

The client never retries a PIN by itself: each :meth:`JpkiCard.verify_pin` sends exactly one
VERIFY, so the terminal, which asked the user, is the only one spending tries.
"""

from __future__ import annotations

import hashlib
from typing import Protocol

from konbini.card import constants as c
from konbini.errors import KonbiniError

_MAX_LE = 256


class CardTransport(Protocol):
    """Anything that carries one command APDU to a card and returns data + SW1 SW2."""

    def transmit(self, apdu: bytes) -> bytes:
        """Send a command APDU; return the response APDU (data followed by SW1 SW2)."""
        ...


# -- exceptions ---------------------------------------------------------------------------


class CardError(KonbiniError):
    """A card-side failure seen by the terminal."""


class PinWrong(CardError):
    """The PIN was wrong; ``tries_left`` more attempts remain (at least 1)."""

    def __init__(self, tries_left: int) -> None:
        super().__init__("PIN_WRONG", "wrong PIN", metadata={"tries_left": str(tries_left)})
        self.tries_left = tries_left


class PinLocked(CardError):
    """The auth PIN is blocked (no tries left); only the municipality can reset it."""

    def __init__(self) -> None:
        super().__init__("PIN_LOCKED", "the PIN is locked")


class PinFormatInvalid(CardError):
    """The PIN is not exactly 4 ASCII digits (nothing was sent to the card)."""

    def __init__(self) -> None:
        super().__init__("PIN_FORMAT_INVALID", "the PIN must be exactly 4 digits")


class CardPinLess(CardError):
    """A face-only (PIN-less) card: no user-authentication certificate."""

    def __init__(self) -> None:
        super().__init__("CARD_WITHOUT_PIN", "the card has no user-authentication certificate")


class CardStatusError(CardError):
    """The card answered an unexpected status word."""

    def __init__(self, command: str, sw: int) -> None:
        super().__init__(
            "INTERNAL", f"{command} failed with status {sw:04X}",
            metadata={"command": command, "sw": f"{sw:04X}"},
        )
        self.command = command
        self.sw = sw


# -- builders -----------------------------------------------------------------------------


def select_aid(aid: bytes = c.JPKI_AID) -> bytes:
    """``00 A4 04 0C Lc <AID>``."""
    return bytes([c.CLA_ISO, c.INS_SELECT, 0x04, 0x0C, len(aid)]) + aid


def select_ef(ef: int) -> bytes:
    """``00 A4 02 0C 02 <EF>``."""
    return bytes([c.CLA_ISO, c.INS_SELECT, 0x02, 0x0C, 0x02]) + ef.to_bytes(2, "big")


def read_binary(offset: int, length: int) -> bytes:
    """``00 B0 <off hi> <off lo> <Le>`` (length 256 is encoded as Le 00)."""
    if not 0 <= offset <= 0x7FFF:
        raise ValueError("READ BINARY offset must fit in 15 bits")
    if not 1 <= length <= _MAX_LE:
        raise ValueError("READ BINARY length must be 1..256")
    return bytes([c.CLA_ISO, c.INS_READ_BINARY, offset >> 8, offset & 0xFF, length & 0xFF])


def verify(pin: bytes | None) -> bytes:
    """``00 20 00 80 [Lc <PIN>]``; without a PIN it asks for the tries left."""
    header = bytes([c.CLA_ISO, c.INS_VERIFY, 0x00, 0x80])
    return header if pin is None else header + bytes([len(pin)]) + pin


def compute_digital_signature(digest_info: bytes) -> bytes:
    """``80 2A 00 80 Lc <DigestInfo> 00``."""
    if not 1 <= len(digest_info) <= 255:
        raise ValueError("DigestInfo must be 1..255 bytes")
    return (
        bytes([c.CLA_PROPRIETARY, c.INS_COMPUTE_SIGNATURE, 0x00, 0x80, len(digest_info)])
        + digest_info
        + b"\x00"
    )


def sha256_digest_info(data: bytes) -> bytes:
    """The DER DigestInfo of SHA-256(data)."""
    return c.SHA256_DIGEST_INFO_PREFIX + hashlib.sha256(data).digest()


def split_response(response: bytes) -> tuple[bytes, int]:
    """(data, SW) of a response APDU."""
    if len(response) < 2:
        raise CardStatusError("response", 0)
    return response[:-2], int.from_bytes(response[-2:], "big")


def der_total_length(head: bytes) -> int:
    """The total length of a DER element from its first bytes (tag + length octets)."""
    if len(head) < 2 or head[0] != 0x30:
        raise ValueError("not a DER SEQUENCE")
    first = head[1]
    if first < 0x80:
        return 2 + first
    count = first & 0x7F
    if count == 0 or count > 3 or len(head) < 2 + count:
        raise ValueError("unsupported DER length")
    return 2 + count + int.from_bytes(head[2:2 + count], "big")


def valid_pin_format(pin: str) -> bool:
    """True for exactly 4 ASCII digits."""
    return len(pin) == c.AUTH_PIN_LENGTH and pin.isascii() and pin.isdigit()


# -- client -------------------------------------------------------------------------------


class JpkiCard:
    """The JPKI application of a card, spoken to over ``transport``."""

    def __init__(self, transport: CardTransport) -> None:
        self._t = transport

    def _call(self, apdu: bytes) -> tuple[bytes, int]:
        return split_response(self._t.transmit(apdu))

    def _ok(self, command: str, apdu: bytes) -> bytes:
        data, sw = self._call(apdu)
        if sw != c.SW_OK:
            raise CardStatusError(command, sw)
        return data

    def select_jpki(self) -> None:
        """Select the JPKI application (this also resets PIN verification)."""
        self._ok("SELECT AID", select_aid())

    def _select_ef(self, ef: int, *, auth: bool = False) -> None:
        _, sw = self._call(select_ef(ef))
        if sw == c.SW_FILE_NOT_FOUND and auth:
            raise CardPinLess()
        if sw != c.SW_OK:
            raise CardStatusError("SELECT EF", sw)

    def _read_der(self, ef: int, *, auth: bool) -> bytes:
        self._select_ef(ef, auth=auth)
        head = self._ok("READ BINARY", read_binary(0, 4))
        try:
            total = der_total_length(head)
        except ValueError as exc:
            raise CardStatusError("READ BINARY (not DER)", 0) from exc
        out = bytearray(head)
        while len(out) < total:
            chunk = self._ok("READ BINARY", read_binary(len(out), min(_MAX_LE, total - len(out))))
            if not chunk:
                raise CardStatusError("READ BINARY (empty)", c.SW_OK)
            out += chunk
        return bytes(out[:total])

    def read_auth_certificate(self) -> bytes:
        """The DER user-authentication certificate (no PIN needed); CardPinLess if absent."""
        return self._read_der(c.EF_AUTH_CERT, auth=True)

    def read_auth_ca_certificate(self) -> bytes:
        """The DER certificate of the auth CA stored on the card."""
        return self._read_der(c.EF_AUTH_CA_CERT, auth=False)

    def read_token_info(self) -> bytes:
        """The token info EF (``JPKIAPICCTOKEN2`` padded)."""
        self._select_ef(c.EF_TOKEN_INFO)
        return self._ok("READ BINARY", read_binary(0, len(c.TOKEN_INFO)))

    def pin_tries_left(self) -> int:
        """Tries left on the auth PIN (does not spend one)."""
        self._select_ef(c.EF_AUTH_PIN, auth=True)
        _, sw = self._call(verify(None))
        if sw & 0xFFF0 == c.SW_PIN_TRIES_BASE:
            return sw & 0x0F
        if sw == c.SW_AUTH_BLOCKED:
            return 0
        if sw == c.SW_OK:  # already verified in this session: the counter is full
            return c.AUTH_PIN_TRIES
        raise CardStatusError("VERIFY", sw)

    def verify_pin(self, pin: str) -> None:
        """Verify the auth PIN once. Raises PinFormatInvalid (nothing sent), PinWrong,
        PinLocked or CardPinLess."""
        if not valid_pin_format(pin):
            raise PinFormatInvalid()
        self._select_ef(c.EF_AUTH_PIN, auth=True)
        _, sw = self._call(verify(pin.encode("ascii")))
        if sw == c.SW_OK:
            return
        if sw in (c.SW_AUTH_BLOCKED, c.SW_PIN_TRIES_BASE):
            raise PinLocked()
        if sw & 0xFFF0 == c.SW_PIN_TRIES_BASE:
            raise PinWrong(sw & 0x0F)
        raise CardStatusError("VERIFY", sw)

    def sign_digest_info(self, digest_info: bytes) -> bytes:
        """Low level: have the auth key sign a DER DigestInfo (after :meth:`verify_pin`)."""
        self._select_ef(c.EF_AUTH_KEY, auth=True)
        return self._ok("COMPUTE DIGITAL SIGNATURE", compute_digital_signature(digest_info))

    def sign_sha256(self, data: bytes) -> bytes:
        """RSA PKCS#1 v1.5 SHA-256 signature over ``data`` by the auth key."""
        return self.sign_digest_info(sha256_digest_info(data))
