"""JSON reporter: the run, every result and the coverage matrix, machine-readable."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from conformance.events import CheckResult, Event, RunFinished, RunStarted
from conformance.reporters.coverage import coverage_rows


def result_dict(r: CheckResult) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": r.name,
        "requirements": list(r.requirements),
        "level": r.level,
        "outcome": r.outcome.value,
        "seconds": round(r.seconds, 3),
        "message": r.message,
    }
    if r.counterexample is not None:
        ce = r.counterexample
        out["counterexample"] = {
            "requirement": ce.requirement,
            "sent": ce.sent,
            "received": ce.received,
            "detail": ce.detail,
            "expected": ce.expected,
        }
    return out


class JsonReporter:
    """Writes the JSON report when the run finishes."""

    def __init__(self, path: Path, check_names_by_requirement: dict[str, list[str]]) -> None:
        self.path = path
        self.started: RunStarted | None = None
        self.coverage = check_names_by_requirement

    def __call__(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            self.started = event
        elif isinstance(event, RunFinished) and self.started is not None:
            doc = {
                "role": self.started.role,
                "target": self.started.target,
                "seed": self.started.seed,
                "examples": self.started.examples,
                "started_at": self.started.started_at.isoformat(),
                "seconds": round(event.seconds, 3),
                "results": [result_dict(r) for r in event.results],
                "coverage": coverage_rows(self.started.role, self.coverage),
            }
            self.path.write_text(json.dumps(doc, ensure_ascii=False, indent=2), encoding="utf-8")
