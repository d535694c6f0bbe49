"""Time as every side sees it, injectable so that tests and test mode can pin it.

Production servers use :class:`SystemClock`. In test mode a server uses an
:class:`OffsetClock`, whose offset FixtureService.SetClock changes; a side that runs several
processes keeps that offset in its store and calls :meth:`OffsetClock.set_offset` when it
reads it, so every replica sees the same time.
"""

from __future__ import annotations

import datetime as dt
import threading
from typing import Protocol
from zoneinfo import ZoneInfo

JST = ZoneInfo("Asia/Tokyo")


class Clock(Protocol):
    def now(self) -> dt.datetime:
        """The current time, timezone-aware UTC."""
        ...


class SystemClock:
    """The real time."""

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)


class OffsetClock:
    """Real time shifted by an offset; the offset can be set (test mode only)."""

    def __init__(self, offset: dt.timedelta = dt.timedelta(0)) -> None:
        self._lock = threading.Lock()
        self._offset = offset

    def now(self) -> dt.datetime:
        with self._lock:
            return dt.datetime.now(dt.UTC) + self._offset

    @property
    def offset(self) -> dt.timedelta:
        with self._lock:
            return self._offset

    def set_offset(self, offset: dt.timedelta) -> None:
        with self._lock:
            self._offset = offset

    def set_now(self, now: dt.datetime | None) -> dt.timedelta:
        """Make now() return `now` from this moment on (None: real time); return the offset."""
        offset = dt.timedelta(0) if now is None else now - dt.datetime.now(dt.UTC)
        self.set_offset(offset)
        return offset


class FixedClock:
    """A clock that stands still until moved (unit tests)."""

    def __init__(self, now: dt.datetime) -> None:
        if now.tzinfo is None:
            raise ValueError("FixedClock needs an aware datetime")
        self._now = now

    def now(self) -> dt.datetime:
        return self._now

    def advance(self, by: dt.timedelta) -> None:
        self._now += by
