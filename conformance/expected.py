"""The expected-failures file of one implementation: known failing checks, each with a reason.

Format: one check name per line, ``#`` starts a comment (give the reason on the same line).
The run fails on an unexpected failure, on an unexpected pass (a listed check that passes) and
on an entry that names no check, so the file never goes stale silently.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from conformance.events import CheckResult, Outcome


class ExpectedFailuresError(ValueError):
    """The file cannot be read as an expected-failures file."""


def parse_expected(text: str) -> dict[str, str]:
    """Check name -> comment."""
    entries: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line, _, comment = raw.partition("#")
        name = line.strip()
        if not name:
            continue
        if " " in name:
            raise ExpectedFailuresError(f"line {number}: one check name per line, got {name!r}")
        entries[name] = comment.strip()
    return entries


def load_expected(path: Path) -> dict[str, str]:
    return parse_expected(path.read_text(encoding="utf-8"))


@dataclass(frozen=True)
class Verdict:
    """How a run ends once the expected failures are taken into account."""

    ok: bool
    unexpected_failures: tuple[str, ...]  # MUST checks failing (or erroring) not listed
    unexpected_passes: tuple[str, ...]  # listed checks that passed
    unknown_entries: tuple[str, ...]  # listed names that are no check
    expected_failures: tuple[str, ...]  # listed and failing (fine)
    should_failures: tuple[str, ...]  # SHOULD checks failing (reported, not fatal)


def judge_run(
    results: Sequence[CheckResult], expected: dict[str, str], all_check_names: Iterable[str]
) -> Verdict:
    known = set(all_check_names)
    ran = {r.name: r for r in results}
    bad = (Outcome.FAIL, Outcome.ERROR)
    unexpected_failures, expected_failures, should_failures, unexpected_passes = [], [], [], []
    for r in results:
        failing = r.outcome in bad
        if r.name in expected:
            if failing:
                expected_failures.append(r.name)
            elif r.outcome is Outcome.PASS:
                unexpected_passes.append(r.name)
        elif failing:
            (unexpected_failures if r.level == "MUST" else should_failures).append(r.name)
    unknown = sorted(n for n in expected if n not in known)
    # A listed check that did not run (filtered out by --only) is neither stale nor failing.
    del ran
    return Verdict(
        ok=not unexpected_failures and not unexpected_passes and not unknown,
        unexpected_failures=tuple(unexpected_failures),
        unexpected_passes=tuple(unexpected_passes),
        unknown_entries=tuple(unknown),
        expected_failures=tuple(expected_failures),
        should_failures=tuple(should_failures),
    )


def updated_file_text(results: Sequence[CheckResult], previous: dict[str, str]) -> str:
    """The expected-failures file that matches these results (comments kept where known)."""
    lines = ["# konbini conformance expected failures: one check name per line, # why"]
    for r in results:
        if r.outcome in (Outcome.FAIL, Outcome.ERROR) and r.level == "MUST":
            why = previous.get(r.name) or f"TODO say why ({', '.join(r.requirements)})"
            lines.append(f"{r.name}  # {why}")
    return "\n".join(lines) + "\n"
