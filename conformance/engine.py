"""The runner: runs checks one after another, turns what happened into results, emits events.

It never prints; reporters subscribe to the events. A crash, timeout or garbage answer from
the implementation under test becomes that check's result (ERROR, or FAIL when the check
judged it) and the run goes on.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import grpc
import hypothesis.errors

from conformance.events import (
    CheckFinished,
    CheckResult,
    CheckStarted,
    Counterexample,
    Outcome,
    RunFinished,
    RunStarted,
    Subscriber,
)
from conformance.failures import CheckFailed, CheckSkipped, TargetMisbehaved
from conformance.registry import Check
from conformance.target import describe_error


class RunContext(Protocol):
    """What every role's context offers the engine."""

    role: str
    target: str
    seed: int
    examples: int

    def before_check(self) -> None: ...
    def take_calls(self) -> tuple[Any, ...]: ...


@dataclass(frozen=True)
class RunSettings:
    """How a run goes."""

    seed: int
    examples: int


def _judge(  # noqa: PLR0911 - one return per outcome
    check: Check, ctx: RunContext
) -> tuple[Outcome, str, Counterexample | None]:
    try:
        ctx.before_check()
        check.func(ctx)
    except CheckFailed as failure:
        return (
            Outcome.FAIL,
            failure.detail,
            Counterexample(
                failure.requirement,
                str(failure.sent),
                str(failure.received),
                failure.detail,
                failure.expected,
            ),
        )
    except CheckSkipped as skipped:
        return Outcome.SKIP, skipped.reason, None
    except TargetMisbehaved as bad:
        return Outcome.ERROR, f"the target misbehaved: {bad}", None
    except grpc.RpcError as error:
        return (
            Outcome.ERROR,
            f"unexpected error status from the target: {describe_error(error)}",
            None,
        )
    except hypothesis.errors.FlakyFailure as flaky:
        return Outcome.ERROR, f"the target answered the same input differently: {flaky}", None
    except Exception as error:
        return Outcome.ERROR, f"{type(error).__name__}: {error}", None
    return Outcome.PASS, "", None


def run_checks(
    checks: Sequence[Check],
    ctx: RunContext,
    subscribers: Sequence[Subscriber],
    *,
    monotonic: Callable[[], float] = time.monotonic,
    now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
) -> tuple[CheckResult, ...]:
    """Run ``checks`` in order against ``ctx``; every event goes to every subscriber."""

    def emit(event: object) -> None:
        for subscriber in subscribers:
            subscriber(event)  # type: ignore[arg-type]

    started = monotonic()
    total = len(checks)
    emit(
        RunStarted(
            ctx.role, ctx.target, ctx.seed, ctx.examples, tuple(c.name for c in checks), now()
        )
    )
    results: list[CheckResult] = []
    for index, check in enumerate(checks, start=1):
        emit(CheckStarted(check.name, index, total))
        t0 = monotonic()
        outcome, message, counterexample = _judge(check, ctx)
        result = CheckResult(
            name=check.name,
            requirements=check.requirements,
            level=check.level,
            outcome=outcome,
            seconds=monotonic() - t0,
            message=message,
            counterexample=counterexample,
            calls=ctx.take_calls() if outcome in (Outcome.FAIL, Outcome.ERROR) else (),
        )
        results.append(result)
        emit(CheckFinished(result, index, total))
    emit(RunFinished(tuple(results), monotonic() - started))
    return tuple(results)
