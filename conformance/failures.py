"""The typed failures a check raises (never a bare assert)."""

from __future__ import annotations

from collections.abc import Mapping

from konbini.contracts import requirement_ids


class CheckFailed(Exception):
    """The implementation under test broke ``requirement``.

    ``sent`` and ``received`` say what went over the wire (readable text); ``expected`` is a
    small machine-readable statement of the right answer to the last call (``{"outcome":
    "error", "reason": "UNDER_15"}`` or ``{"outcome": "ok"}``) that a replay script checks.
    """

    def __init__(
        self,
        requirement: str,
        sent: object,
        received: object,
        detail: str,
        *,
        expected: Mapping[str, str] | None = None,
    ) -> None:
        if requirement not in requirement_ids():
            raise ValueError(f"CheckFailed names unknown requirement {requirement!r}")
        super().__init__(f"{requirement}: {detail}")
        self.requirement = requirement
        self.sent = sent
        self.received = received
        self.detail = detail
        self.expected = dict(expected or {})


class CheckSkipped(Exception):
    """The check cannot be decided against this target; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TargetMisbehaved(Exception):
    """The target answered something the check cannot judge (garbage, a crash, a timeout)."""
