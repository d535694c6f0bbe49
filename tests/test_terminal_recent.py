"""The driver's memory of answers by request_id is bounded: by count (least recently used
first) and by a time window since last use."""

from __future__ import annotations

import datetime as dt

import pytest

from konbini.clock import FixedClock
from terminal.recent import RecentAnswers

T0 = dt.datetime(2026, 4, 1, 9, 0, tzinfo=dt.UTC)


def test_count_is_bounded_and_the_least_recently_used_goes_first() -> None:
    memory = RecentAnswers(max_entries=3, clock=FixedClock(T0))
    for n in range(3):
        memory.put(f"r{n}", b"f", f"a{n}".encode())
    assert memory.get("r0") is not None  # r0 used: r1 is now the least recently used
    memory.put("r3", b"f", b"a3")
    assert len(memory) == 3
    assert memory.get("r1") is None
    assert [memory.get(r).response for r in ("r0", "r2", "r3")] == [b"a0", b"a2", b"a3"]


def test_many_requests_never_grow_the_memory_past_its_bound() -> None:
    memory = RecentAnswers(max_entries=100, clock=FixedClock(T0))
    for n in range(10_000):
        memory.put(f"r{n}", b"f", b"a")
    assert len(memory) == 100 and memory.get("r9999") is not None and memory.get("r0") is None


def test_answers_unused_for_the_window_are_forgotten() -> None:
    clock = FixedClock(T0)
    memory = RecentAnswers(window=dt.timedelta(minutes=10), clock=clock)
    memory.put("old", b"f1", b"a1")
    clock.advance(dt.timedelta(minutes=6))
    memory.put("young", b"f2", b"a2")
    clock.advance(dt.timedelta(minutes=5))  # old: 11 min, young: 5 min
    assert memory.get("old") is None
    found = memory.get("young")
    assert found is not None and (found.fingerprint, found.response) == (b"f2", b"a2")
    clock.advance(dt.timedelta(minutes=9))  # the hit above started young's window again
    assert memory.get("young") is not None
    clock.advance(dt.timedelta(minutes=10))
    memory.put("new", b"f3", b"a3")  # a put also drops what has aged out
    assert len(memory) == 1


def test_clear_forgets_everything() -> None:
    memory = RecentAnswers(clock=FixedClock(T0))
    memory.put("r1", b"f", b"a")
    memory.clear()
    assert len(memory) == 0 and memory.get("r1") is None


@pytest.mark.parametrize(("entries", "window"), [(0, dt.timedelta(minutes=1)),
                                                 (5, dt.timedelta(0))])
def test_bounds_must_be_positive(entries: int, window: dt.timedelta) -> None:
    with pytest.raises(ValueError):
        RecentAnswers(max_entries=entries, window=window)
