"""The answers a server gave recently, by request_id, bounded in count and in age.

The terminal driver answers a retried mutating call with the answer it gave the first time.
Remembering every request_id for the life of the process would grow without limit, so the
memory is bounded both ways:

- at most ``max_entries`` answers (the least recently used goes first), and
- none unused for longer than ``window`` (a retry comes seconds after the call, not
  hours).

A request_id that was forgotten is treated as new: a caller that retries after the window (or
after ``max_entries`` newer calls) gets the action run again. The defaults keep an hour and
4,096 answers, far beyond any retry of the conformance suite.
"""

from __future__ import annotations

import datetime as dt
from collections import OrderedDict
from dataclasses import dataclass

from konbini.clock import Clock, SystemClock

DEFAULT_MAX_ENTRIES = 4096
DEFAULT_WINDOW = dt.timedelta(hours=1)


@dataclass(frozen=True)
class Answer:
    """One remembered answer: the request's fingerprint and the serialized response."""

    fingerprint: bytes
    response: bytes
    at: dt.datetime


class RecentAnswers:
    """An LRU map request_id → :class:`Answer`, also forgetting what is older than ``window``.
    Not thread-safe: the caller holds its own lock."""

    def __init__(self, max_entries: int = DEFAULT_MAX_ENTRIES,
                 window: dt.timedelta = DEFAULT_WINDOW, clock: Clock | None = None) -> None:
        if max_entries < 1 or window <= dt.timedelta(0):
            raise ValueError("max_entries and window must be positive")
        self.max_entries, self.window = max_entries, window
        self._clock = clock or SystemClock()
        self._answers: OrderedDict[str, Answer] = OrderedDict()

    def __len__(self) -> int:
        return len(self._answers)

    def _expire(self, now: dt.datetime) -> None:
        # Order is last-use order and a use refreshes the time, so the oldest is first and
        # the loop stops at the first entry young enough (amortised O(1)).
        while self._answers:
            key, oldest = next(iter(self._answers.items()))
            if now - oldest.at < self.window:
                break
            del self._answers[key]

    def get(self, request_id: str) -> Answer | None:
        """The answer remembered for ``request_id``, if still within the bounds (a hit counts
        as a use: it moves to the back and its window starts again)."""
        now = self._clock.now()
        self._expire(now)
        found = self._answers.get(request_id)
        if found is None:
            return None
        self._answers[request_id] = found = Answer(found.fingerprint, found.response, now)
        self._answers.move_to_end(request_id)
        return found

    def put(self, request_id: str, fingerprint: bytes, response: bytes) -> None:
        """Remember an answer, forgetting the least recently used beyond the bounds."""
        now = self._clock.now()
        self._expire(now)
        self._answers[request_id] = Answer(fingerprint, response, now)
        self._answers.move_to_end(request_id)
        while len(self._answers) > self.max_entries:
            self._answers.popitem(last=False)

    def clear(self) -> None:
        """Forget every answer (FixtureService.Reset)."""
        self._answers.clear()
