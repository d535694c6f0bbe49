"""The My Number Card's JPKI application at the APDU level: software card, client, readers."""

from konbini.card.apdu import (
    CardError,
    CardPinLess,
    CardStatusError,
    CardTransport,
    JpkiCard,
    PinFormatInvalid,
    PinLocked,
    PinWrong,
)
from konbini.card.reader import CardReader, CardReaderError, PcscReader, SoftCardReader
from konbini.card.softcard import SoftCard

__all__ = [
    "CardError",
    "CardPinLess",
    "CardReader",
    "CardReaderError",
    "CardStatusError",
    "CardTransport",
    "JpkiCard",
    "PcscReader",
    "PinFormatInvalid",
    "PinLocked",
    "PinWrong",
    "SoftCard",
    "SoftCardReader",
]
