"""Running Hypothesis inside a check: the run's seed and example budget, no example database,
and the falsifying example captured as text (library code never prints)."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import hypothesis
from hypothesis import HealthCheck, Phase, settings
from hypothesis.reporting import with_reporter

from conformance.failures import CheckFailed


def suite_settings(examples: int, *, steps: int | None = None) -> settings:
    """Settings for one property: ``examples`` examples, no deadline (the target is remote)."""
    kwargs: dict[str, Any] = {}
    if steps is not None:
        kwargs["stateful_step_count"] = steps
    return settings(
        max_examples=max(1, examples),
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=(Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink),
        report_multiple_bugs=False,
        print_blob=False,
        **kwargs,
    )


@contextmanager
def captured_report() -> Iterator[list[str]]:
    """Collect what Hypothesis would print (the falsifying example, the shrunk steps)."""
    lines: list[str] = []
    with with_reporter(lambda value: lines.append(str(value))):
        yield lines


SHRINK_BUDGET = 20.0  # seconds of shrinking against a remote target before settling


def _notes(error: BaseException) -> list[str]:
    """Hypothesis's notes, without the repr of the failing value (datasets hold images; the
    replay script carries the exact calls instead)."""
    return [
        str(n)
        for n in getattr(error, "__notes__", [])
        if not str(n).startswith(("Failing test case", "Falsifying example"))
    ]


def _trim(lines: list[str], limit: int = 4000) -> str:
    text = "\n".join(lines)
    return text if len(text) <= limit else text[:limit] + f" …({len(text)} chars)"


def run_property(
    test: Callable[[Any], None],
    strategy: Any,
    *,
    seed: int,
    examples: int,
    shrink_budget: float = SHRINK_BUDGET,
    monotonic: Callable[[], float] = time.monotonic,
) -> None:
    """Run ``test(value)`` over ``strategy``; a CheckFailed comes back with the shrunk example
    and the seed added to what it says was sent.

    Shrinking against a remote server costs a round of calls per attempt, so after
    ``shrink_budget`` seconds every new candidate is passed without calling the target; values
    seen failing are still run, so Hypothesis's final replay of the smallest one fails again.
    """
    failing: set[str] = set()
    first_failure: list[float] = []

    def budgeted(value: Any) -> None:
        key = hashlib.sha256(repr(value).encode()).hexdigest()
        if first_failure and monotonic() - first_failure[0] > shrink_budget and key not in failing:
            return
        try:
            test(value)
        except CheckFailed:
            failing.add(key)
            if not first_failure:
                first_failure.append(monotonic())
            raise

    wrapped = hypothesis.seed(seed)(suite_settings(examples)(hypothesis.given(strategy)(budgeted)))
    with captured_report() as lines:
        try:
            wrapped()
        except CheckFailed as failure:
            failure.sent = f"{failure.sent}\n-- shrunk by Hypothesis (seed {seed}):\n" + _trim(
                lines + _notes(failure)
            )
            raise
