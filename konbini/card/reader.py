"""Card readers used by terminals: a software card file, or a PC/SC reader (pyscard).

Both hand out a :class:`~konbini.card.apdu.CardTransport` speaking the same APDUs, so a real
reader with a real My Number Card can replace the software card.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from konbini.card.apdu import CardTransport
from konbini.card.constants import CLA_ISO, INS_GET_RESPONSE
from konbini.card.softcard import SoftCard


class CardReaderError(RuntimeError):
    """The reader is unavailable, has no card, or the PC/SC support is not installed."""


class CardReader(Protocol):
    """A card reader: ``connect`` powers the card and starts a session."""

    def connect(self) -> CardTransport:
        """Start a card session and return its transport."""
        ...

    def disconnect(self) -> None:
        """End the card session (the card's volatile state, such as a verified PIN, is lost)."""
        ...


class SoftCardReader:
    """A reader holding a software card file; each connect opens a new session."""

    def __init__(self, path: Path | str) -> None:
        self._path = Path(path)
        self._card: SoftCard | None = None

    def connect(self) -> CardTransport:
        """Open the card file (fails with CardReaderError if there is none: no card inserted)."""
        try:
            self._card = SoftCard.open(self._path)
        except FileNotFoundError:
            raise CardReaderError(f"no card in reader ({self._path})") from None
        return self._card

    def disconnect(self) -> None:
        """Close the session."""
        if self._card is not None:
            self._card.close()
            self._card = None


class PyscardConnection(Protocol):
    """The part of ``smartcard.CardConnection`` this reader uses."""

    def connect(self) -> None:
        """Power the card."""
        ...

    def disconnect(self) -> None:
        """Release the card."""
        ...

    def transmit(self, command: list[int]) -> tuple[list[int], int, int]:
        """Send an APDU as a list of ints; return (data, SW1, SW2)."""
        ...


# Bound the T=0 GET RESPONSE / re-send loop so a misbehaving card cannot hang a terminal.
_MAX_CHAINED = 32


class PcscTransport:
    """A transport over a pyscard-like connection, handling T=0 ``61 xx`` and ``6C xx``."""

    def __init__(self, connection: PyscardConnection) -> None:
        self._conn = connection

    def _send(self, apdu: bytes) -> tuple[bytes, int, int]:
        data, sw1, sw2 = self._conn.transmit(list(apdu))
        return bytes(data), sw1, sw2

    def transmit(self, apdu: bytes) -> bytes:
        """Send one command APDU and return data + SW1 SW2, collecting chained responses."""
        data, sw1, sw2 = self._send(apdu)
        collected = bytearray()
        for _ in range(_MAX_CHAINED):
            if sw1 == 0x6C:  # wrong Le: the card tells the right one; send again with it
                data, sw1, sw2 = self._send(apdu[:-1] + bytes([sw2]))
                continue
            collected += data
            if sw1 != 0x61:  # 61 xx: xx more bytes waiting for GET RESPONSE
                return bytes(collected) + bytes([sw1, sw2])
            data, sw1, sw2 = self._send(bytes([CLA_ISO, INS_GET_RESPONSE, 0, 0, sw2]))
        raise CardReaderError("the card kept chaining responses")


ConnectionFactory = Callable[[str], PyscardConnection]


def _pyscard_connection(reader_name: str) -> PyscardConnection:
    try:
        system = importlib.import_module("smartcard.System")
    except ImportError:
        raise CardReaderError(
            "PC/SC support needs pyscard: pip install 'konbini-kofu[pcsc]' (and pcscd running)"
        ) from None
    readers: Sequence[Any] = system.readers()
    for reader in readers:
        if str(reader) == reader_name:
            connection: PyscardConnection = reader.createConnection()
            return connection
    names = ", ".join(str(r) for r in readers) or "none"
    raise CardReaderError(f"no PC/SC reader named {reader_name!r} (readers: {names})")


class PcscReader:
    """A PC/SC reader by name. ``connection_factory`` replaces pyscard (tests use a fake)."""

    def __init__(
        self, reader_name: str, connection_factory: ConnectionFactory | None = None
    ) -> None:
        self._name = reader_name
        self._factory = connection_factory or _pyscard_connection
        self._conn: PyscardConnection | None = None

    def connect(self) -> CardTransport:
        """Connect to the card in the reader."""
        conn = self._factory(self._name)
        try:
            conn.connect()
        except Exception as exc:  # pyscard raises its own exception types; keep the message
            raise CardReaderError(f"cannot connect to the card in {self._name!r}: {exc}") from exc
        self._conn = conn
        return PcscTransport(conn)

    def disconnect(self) -> None:
        """Release the card."""
        if self._conn is not None:
            self._conn.disconnect()
            self._conn = None
