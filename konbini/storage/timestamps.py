"""The storage convention for instants: integer microseconds since the Unix epoch, UTC.

Columns holding instants are ``BIGINT`` and named ``..._at`` (``created_at``, ``expires_at``).
Integers compare and sort the same on both backends and carry no time-zone ambiguity.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime


def to_micros(instant: datetime) -> int:
    """Microseconds since the epoch for an aware datetime (naive ones are refused)."""
    if instant.tzinfo is None:
        raise ValueError("naive datetime: attach a time zone (UTC) before storing it")
    delta = instant - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(micros: int) -> datetime:
    """The aware UTC datetime for a stored microsecond count."""
    return datetime.fromtimestamp(micros // 1_000_000, tz=UTC).replace(
        microsecond=micros % 1_000_000
    )


def now_micros() -> int:
    """The current instant as stored. Only for bookkeeping (such as ``applied_at``); domain
    code takes ``now`` from its injected clock."""
    return time.time_ns() // 1000
