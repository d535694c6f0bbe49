"""Per-caller request rate limits (LIMIT-RATE): a token bucket per key.

``RateLimiter(rate_per_s, burst, clock=time.monotonic)``: each key (a terminal's identity URI)
may make ``burst`` calls at once and then ``rate_per_s`` calls per second on average; beyond
that :meth:`RateLimiter.check` raises ``KonbiniError("RATE_LIMITED")``.

The buckets live in this process's memory, so the limit applies **per worker process**: with
``--workers N`` a terminal whose calls the kernel spreads over all workers can reach about N
times the configured rate. That is acceptable for a limit that protects the centre from a
runaway kiosk; it is not an accounting quota (nothing correctness depends on lives here).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from konbini.errors import KonbiniError

# Idle buckets are refilled to full and carry no information; past this many keys they are
# dropped so the table cannot grow without bound.
MAX_KEYS = 10_000


class RateLimiter:
    """A token bucket per key; thread-safe."""

    def __init__(
        self, rate_per_s: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("rate_per_s must be positive and burst at least 1")
        self._rate = rate_per_s
        self._burst = float(burst)
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)

    def check(self, key: str) -> None:
        """Take one token for ``key`` or raise ``KonbiniError("RATE_LIMITED")``."""
        with self._lock:
            now = self._clock()
            tokens, at = self._buckets.get(key, (self._burst, now))
            tokens = min(self._burst, tokens + (now - at) * self._rate)
            if tokens < 1.0:
                self._buckets[key] = (tokens, now)
                retry_ms = int((1.0 - tokens) / self._rate * 1000) + 1
                raise KonbiniError(
                    "RATE_LIMITED",
                    "too many requests from this caller",
                    metadata={"retry_after_ms": str(retry_ms)},
                )
            self._buckets[key] = (tokens - 1.0, now)
            if len(self._buckets) > MAX_KEYS:
                self._drop_idle(now)

    def _drop_idle(self, now: float) -> None:
        full = [
            k for k, (tokens, at) in self._buckets.items()
            if tokens + (now - at) * self._rate >= self._burst
        ]
        for k in full:
            del self._buckets[k]
