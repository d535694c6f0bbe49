"""Centre-role checks: importing this package registers them (in this order)."""

from conformance.checks.centre import (  # noqa: F401 - imported to register the checks
    authz,
    cards,
    catalogue,
    crosstalk,
    documents,
    hours,
    input,
    issuance,
    lifecycle,
    ops,
    sessions,
    useregs,
)
from conformance.checks.centre.context import CentreContext

__all__ = ["CentreContext"]
