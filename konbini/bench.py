"""`konbini bench`: speed measured, never asserted. Each target lives with the code it measures.

A target module exposes ``measure(runs: int) -> list[Measurement]``; every number a report
prints, medians and ratios alike, comes from that one run on this machine.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
from dataclasses import dataclass

# target -> (module, what it measures)
TARGETS: dict[str, tuple[str, str]] = {
    "render": ("municipality.bench_cli", "rendering and composing certificates (issue 4)"),
}


@dataclass(frozen=True)
class Measurement:
    """One line of a report: a median in milliseconds, and what it is per."""

    name: str
    median_ms: float
    per: str  # "page", "copy", ...
    runs: int
    note: str = ""


def report(title: str, rows: list[Measurement], ratios: list[tuple[str, str, str]]) -> str:
    """A table of medians, then ratios (label, numerator name, denominator name)."""
    by_name = {r.name: r for r in rows}
    width = max(len(r.name) for r in rows)
    lines = [title, f"machine: {platform.machine()}, {os.cpu_count()} cores, "
             f"Python {platform.python_version()}", ""]
    lines += [f"{r.name:<{width}}  {r.median_ms:8.1f} ms per {r.per:<5} (median of {r.runs})"
              f"{'  ' + r.note if r.note else ''}" for r in rows]
    if ratios:
        lines.append("")
    for label, num, den in ratios:
        lines.append(f"{label}: {by_name[num].median_ms / by_name[den].median_ms:.2f}x")
    return "\n".join(lines)


def register(subparsers: argparse._SubParsersAction, name: str, help_text: str) -> None:
    parser = subparsers.add_parser(name, help=help_text, description=__doc__)
    parser.add_argument("target", choices=sorted(TARGETS), help="what to measure")
    parser.add_argument("--runs", type=int, default=9, help="runs per measurement (median)")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    if args.runs < 1:
        raise SystemExit("--runs must be at least 1")
    module = importlib.import_module(TARGETS[args.target][0])
    print(module.measure_and_report(args.runs))
    return 0
