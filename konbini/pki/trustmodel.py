"""The trust list's content as plain values (independent of its wire encoding)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass


@dataclass(frozen=True)
class DocumentSigner:
    """One municipality document-signing certificate and the period it may sign in."""

    municipality_code: str
    key_id: str
    certificate_der: bytes
    not_before: dt.datetime
    not_after: dt.datetime


@dataclass(frozen=True)
class TrustListScrambleKey:
    """One centre scramble key (to unscramble the back of paper printed under it)."""

    key_id: str
    key: bytes
    not_before: dt.datetime
    not_after: dt.datetime


@dataclass(frozen=True)
class TrustList:
    """Everything an offline verifier needs; ``sequence`` increases with each publication."""

    sequence: int
    issued_at: dt.datetime
    next_update: dt.datetime
    document_signers: tuple[DocumentSigner, ...]
    scramble_keys: tuple[TrustListScrambleKey, ...]
