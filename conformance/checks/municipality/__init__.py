"""Municipality-role checks: importing this package registers them (in this order)."""

from conformance.checks.municipality import (  # noqa: F401 - imported to register the checks
    authz,
    closures,
    crosstalk,
    documents,
    eligibility,
    errors,
    freshness,
    idempotency,
    input,
    limits,
    ops,
    options,
    records,
    sequences,
    twophase,
)
from conformance.checks.municipality.context import MunicipalityContext

__all__ = ["MunicipalityContext"]
