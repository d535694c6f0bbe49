"""Terminal-role checks: importing this package registers them (in this order). The suite
plays the centre (conformance.fakes.centre) and drives the kiosk through the terminal's
TerminalDriverService."""

from conformance.checks.terminal import (  # noqa: F401 - imported to register the checks
    fees,
    once,
    ops,
    pin,
    robustness,
    sessions,
)
from conformance.checks.terminal.context import TerminalContext

__all__ = ["TerminalContext"]
