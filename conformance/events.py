"""Typed events the runner emits; reporters subscribe to them (the runner never prints)."""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


class Outcome(enum.Enum):
    """What one check came to."""

    PASS = "pass"  # noqa: S105 - an outcome, not a password
    FAIL = "fail"  # the implementation broke a requirement (CheckFailed)
    ERROR = "error"  # a crash, timeout or garbage answer that the check could not judge
    SKIP = "skip"  # not decidable here (a clear reason is given)


@dataclass(frozen=True)
class Counterexample:
    """What was sent and what came back when a check failed (shrunk when Hypothesis found it)."""

    requirement: str
    sent: str  # a readable rendering of the request(s)
    received: str  # a readable rendering of the answer
    detail: str
    expected: dict[str, str] = field(default_factory=dict)  # machine-readable, for replays


@dataclass(frozen=True)
class CheckResult:
    """The result of one check."""

    name: str
    requirements: tuple[str, ...]
    level: str  # "MUST" or "SHOULD"
    outcome: Outcome
    seconds: float
    message: str = ""
    counterexample: Counterexample | None = None
    # Every gRPC call the check made, in order (for replay scripts); see conformance.target.
    calls: tuple[Any, ...] = ()


@dataclass(frozen=True)
class RunStarted:
    role: str
    target: str
    seed: int
    examples: int
    check_names: tuple[str, ...]
    started_at: dt.datetime


@dataclass(frozen=True)
class CheckStarted:
    name: str
    index: int  # 1-based
    total: int


@dataclass(frozen=True)
class CheckFinished:
    result: CheckResult
    index: int
    total: int


@dataclass(frozen=True)
class RunFinished:
    results: tuple[CheckResult, ...]
    seconds: float


Event = RunStarted | CheckStarted | CheckFinished | RunFinished
Subscriber = Callable[[Event], None]
