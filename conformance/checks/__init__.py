"""The checks of each role. Adding a role: write conformance/checks/<role>/ (a context class
and check modules registering with @check("MUST.<role>.<area>.<rule>", covers=(...))) and add
it to :data:`ROLE_PACKAGES`."""

from __future__ import annotations

import importlib

from conformance.registry import Check, registered

# role -> the package whose import registers that role's checks.
ROLE_PACKAGES: dict[str, str] = {
    "municipality": "conformance.checks.municipality",
    "terminal": "conformance.checks.terminal",
    "centre": "conformance.checks.centre",
}


def load_checks(role: str) -> list[Check]:
    """Every check of ``role`` (empty for a role without checks yet)."""
    package = ROLE_PACKAGES.get(role)
    if package is not None:
        importlib.import_module(package)
    return registered(role)
