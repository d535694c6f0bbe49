"""The centre's time. In test mode FixtureService.SetClock moves it; the offset lives in the
store so that every worker process and replica sees the same time."""

from __future__ import annotations

import datetime as dt

from konbini.clock import Clock
from konbini.storage import AsyncStore, Tx


def read_offset(tx: Tx) -> int:
    """The stored clock offset in microseconds (0 when none is set)."""
    row = tx.execute("SELECT offset_micros FROM clock_offset WHERE id = 1").fetchone()
    return 0 if row is None else int(row["offset_micros"])


def write_offset(tx: Tx, offset_micros: int) -> None:
    """Store the clock offset (0 returns to real time)."""
    tx.execute(
        "INSERT INTO clock_offset (id, offset_micros) VALUES (1, ?)"
        " ON CONFLICT (id) DO UPDATE SET offset_micros = excluded.offset_micros",
        (offset_micros,),
    )


class TimeSource:
    """``await now()``: the base clock, shifted by the stored offset when ``shared_offset``.

    :attr:`clock` is a plain :class:`Clock` view for code that cannot await (it uses the offset
    read last, refreshed by every ``await now()`` and by :meth:`set_offset`).
    """

    def __init__(self, base: Clock, store: AsyncStore, *, shared_offset: bool) -> None:
        self._base = base
        self._store = store
        self._shared = shared_offset
        self._offset = dt.timedelta(0)
        self.clock: Clock = _View(self)

    def base_now(self) -> dt.datetime:
        """The base clock's time, without any offset."""
        return self._base.now()

    def cached_now(self) -> dt.datetime:
        """The time with the last known offset (no store access)."""
        return self._base.now() + self._offset

    def set_offset(self, offset_micros: int) -> None:
        """Remember an offset this process just stored."""
        self._offset = dt.timedelta(microseconds=offset_micros)

    async def now(self) -> dt.datetime:
        """The current time as every replica sees it."""
        if self._shared:
            self.set_offset(await self._store.run(read_offset, write=False))
        return self.cached_now()


class _View:
    def __init__(self, source: TimeSource) -> None:
        self._source = source

    def now(self) -> dt.datetime:
        return self._source.cached_now()
