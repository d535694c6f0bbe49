"""JUnit XML reporter (testsuites/testsuite/testcase with failure, error and skipped)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from conformance.events import CheckResult, Event, Outcome, RunFinished, RunStarted


def junit_xml(results: tuple[CheckResult, ...], role: str, seconds: float) -> bytes:
    """The JUnit document for a run: one testcase per check, classname = its area."""
    suites = ET.Element("testsuites", name="konbini-conformance")
    suite = ET.SubElement(
        suites,
        "testsuite",
        name=f"konbini.conformance.{role}",
        tests=str(len(results)),
        failures=str(sum(r.outcome is Outcome.FAIL for r in results)),
        errors=str(sum(r.outcome is Outcome.ERROR for r in results)),
        skipped=str(sum(r.outcome is Outcome.SKIP for r in results)),
        time=f"{seconds:.3f}",
    )
    for r in results:
        classname, _, case = r.name.rpartition(".")
        tc = ET.SubElement(
            suite, "testcase", classname=classname, name=case, time=f"{r.seconds:.3f}"
        )
        props = ET.SubElement(tc, "properties")
        for req in r.requirements:
            ET.SubElement(props, "property", name="requirement", value=req)
        ET.SubElement(props, "property", name="level", value=r.level)
        if r.outcome is Outcome.FAIL:
            el = ET.SubElement(
                tc,
                "failure",
                message=r.message[:500],
                type=r.counterexample.requirement if r.counterexample else "FAIL",
            )
            if r.counterexample:
                el.text = (
                    f"requirement: {r.counterexample.requirement}\n"
                    f"sent:\n{r.counterexample.sent}\n"
                    f"received:\n{r.counterexample.received}\n"
                )
        elif r.outcome is Outcome.ERROR:
            ET.SubElement(tc, "error", message=r.message[:500], type="ERROR").text = r.message
        elif r.outcome is Outcome.SKIP:
            ET.SubElement(tc, "skipped", message=r.message[:500])
    ET.indent(suites)
    return ET.tostring(suites, encoding="utf-8", xml_declaration=True)


class JUnitReporter:
    """Writes the JUnit file when the run finishes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.role = ""

    def __call__(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            self.role = event.role
        elif isinstance(event, RunFinished):
            self.path.write_bytes(junit_xml(event.results, self.role, event.seconds))
