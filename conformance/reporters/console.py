"""Console reporter: a progress line per check and a summary per requirement."""

from __future__ import annotations

from collections import defaultdict
from typing import TextIO

from conformance.events import (
    CheckFinished,
    CheckResult,
    CheckStarted,
    Event,
    Outcome,
    RunFinished,
    RunStarted,
)

_MARK = {Outcome.PASS: "ok  ", Outcome.FAIL: "FAIL", Outcome.ERROR: "ERR ", Outcome.SKIP: "skip"}


class ConsoleReporter:
    """Writes progress and the summary to ``out`` (a CLI's stdout)."""

    def __init__(self, out: TextIO, *, verbose: bool = False) -> None:
        self.out = out
        self.verbose = verbose

    def __call__(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            self.out.write(
                f"konbini conformance: role {event.role}, target {event.target}, "
                f"{len(event.check_names)} checks, seed {event.seed}, examples {event.examples}\n"
            )
        elif isinstance(event, CheckStarted) and self.verbose:
            self.out.write(f"  [{event.index}/{event.total}] {event.name} …\n")
        elif isinstance(event, CheckFinished):
            r = event.result
            self.out.write(
                f"  [{event.index:>3}/{event.total}] {_MARK[r.outcome]} {r.name} "
                f"({r.seconds:.1f}s)\n"
            )
        elif isinstance(event, RunFinished):
            self.out.write(summary(event.results, event.seconds))
        self.out.flush()


def _indent(text: str, prefix: str = "        ") -> str:
    return "\n".join(prefix + line for line in text.splitlines())


def attributed(results: tuple[CheckResult, ...]) -> dict[str, list[CheckResult]]:
    """Requirement -> the results that speak for it. A FAIL speaks for the requirement its
    counterexample names (the check stopped there, so it says nothing of the others it
    covers); PASS, ERROR and SKIP speak for every requirement the check covers."""
    by_req: dict[str, list[CheckResult]] = defaultdict(list)
    for r in results:
        if r.outcome is Outcome.FAIL and r.counterexample is not None:
            by_req[r.counterexample.requirement].append(r)
            for req in r.requirements:
                by_req.setdefault(req, [])
        else:
            for req in r.requirements:
                by_req[req].append(r)
    return by_req


def requirement_state(results: list[CheckResult]) -> str:
    if any(r.outcome in (Outcome.FAIL, Outcome.ERROR) for r in results):
        return "FAIL"
    if any(r.outcome is Outcome.PASS for r in results):
        return "pass"
    if results:
        return "skip"
    return "unjudged"  # only covered by a check that failed on another requirement


def summary(results: tuple[CheckResult, ...], seconds: float) -> str:
    """Per requirement: pass / fail / skip and, for failures, the (shrunk) counterexample."""
    by_req = attributed(results)
    lines = ["", "Requirements:"]
    for req in sorted(by_req):
        rs = by_req[req]
        lines.append(f"  {requirement_state(rs):<8} {req}")
        for r in rs:
            if r.outcome is Outcome.PASS:
                continue
            lines.append(f"      {_MARK[r.outcome].strip()} {r.name}: {r.message}")
            if r.counterexample is not None:
                lines.append("        sent:")
                lines.append(_indent(r.counterexample.sent, "          "))
                lines.append("        received:")
                lines.append(_indent(r.counterexample.received, "          "))
    counts = {o: sum(1 for r in results if r.outcome is o) for o in Outcome}
    lines.append("")
    lines.append(
        f"{counts[Outcome.PASS]} passed, {counts[Outcome.FAIL]} failed, "
        f"{counts[Outcome.ERROR]} errors, {counts[Outcome.SKIP]} skipped in {seconds:.1f}s"
    )
    return "\n".join(lines) + "\n"
