"""Judging error answers: the error model, and a field violation naming the bad field."""

from __future__ import annotations

import re

import grpc

from conformance.failures import CheckFailed
from conformance.target import Answer
from konbini.contracts import reasons

DOMAIN = "konbini-kofu.dev"
INTERNALS = re.compile(r"Traceback|File \"|line \d+, in |Exception:|Error\(|0x[0-9a-f]{8,}")


def judge_error_model(sent: str, answer: Answer) -> None:
    """Raise CheckFailed(ERR-MODEL / ERR-NO-INTERNALS) for an error that breaks the model."""
    e = answer.error
    if e is None:
        return
    catalogue = reasons()
    problem = ""
    if e.error_info_count != 1:
        problem = f"{e.error_info_count} ErrorInfo details (exactly one required)"
    elif e.domain != DOMAIN:
        problem = f"ErrorInfo domain {e.domain!r}"
    elif e.reason not in catalogue:
        problem = f"reason {e.reason!r} is not in the catalogue"
    elif e.code.value[0] != catalogue[e.reason].grpc_code:
        problem = (f"reason {e.reason} came with {e.code.name}; the catalogue fixes code "
                   f"{catalogue[e.reason].grpc_code}")
    if problem:
        raise CheckFailed("ERR-MODEL", sent, answer.describe(), problem)
    if INTERNALS.search(e.message):
        raise CheckFailed("ERR-NO-INTERNALS", sent, answer.describe(),
                          "the error message carries internals")


def names_field(answer: Answer, field: str) -> bool:
    """One of the answer's field violations names ``field`` (or a part of it)."""
    if answer.error is None:
        return False
    leaf = field.rsplit(".", maxsplit=1)[-1]
    return any(
        v.field in (field, leaf) or v.field.endswith("." + leaf)
        or v.field.startswith(field + ".") or field.startswith(v.field + ".")
        for v in answer.error.violations
    )


def expect_field_invalid(sent: str, answer: Answer, field: str) -> None:
    """INVALID_ARGUMENT, FIELD_INVALID and a violation naming ``field``."""
    expected = {"outcome": "error", "reason": "FIELD_INVALID"}
    e = answer.error
    if e is None or e.code is not grpc.StatusCode.INVALID_ARGUMENT or e.reason != "FIELD_INVALID":
        raise CheckFailed("INPUT-INVALID-ARGUMENT", sent, answer.describe(),
                          f"{field} bad: expected INVALID_ARGUMENT FIELD_INVALID",
                          expected=expected)
    if not names_field(answer, field):
        raise CheckFailed("INPUT-INVALID-ARGUMENT", sent, answer.describe(),
                          f"{field} bad: no field violation names it "
                          f"(got {[v.field for v in e.violations]})", expected=expected)
