"""Check definitions: a check is a small named function tied to requirement IDs.

Names are structured and stable: ``LEVEL.role.area.rule`` (``MUST.municipality.eligibility
.under_15``). The level is the strictest level of the requirements the check covers, so a
check's name says whether its failure fails the run. A mistake in a definition (unknown
requirement, a requirement that does not apply to the role, a duplicate name, a level that
disagrees with the requirements) fails at import time with a message saying how to fix it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from konbini.contracts import requirements

ROLES = ("municipality", "centre", "terminal")
NAME_PATTERN = re.compile(r"^(MUST|SHOULD)\.(municipality|centre|terminal)(\.[a-z0-9_]+){2,}$")


class CheckDefinitionError(Exception):
    """A check is defined wrongly (raised at import, never at run time)."""


@dataclass(frozen=True)
class Check:
    """One registered check."""

    name: str
    role: str
    requirements: tuple[str, ...]
    level: str
    func: Callable[[Any], None]
    doc: str


_REGISTRY: dict[str, Check] = {}


def _requirement_index() -> dict[str, Any]:
    return {r.id: r for r in requirements()}


def check(
    name: str, *, covers: tuple[str, ...], into: dict[str, Check] | None = None
) -> Callable[[Callable[[Any], None]], Callable[[Any], None]]:
    """Register ``func(ctx)`` as the check ``name`` covering the requirement IDs ``covers``
    (``into``: another registry than the suite's, for tests of the framework)."""
    registry = _REGISTRY if into is None else into

    def register(func: Callable[[Any], None]) -> Callable[[Any], None]:
        match = NAME_PATTERN.match(name)
        if not match:
            raise CheckDefinitionError(
                f"check name {name!r} must look like LEVEL.role.area.rule, e.g. "
                "MUST.municipality.eligibility.under_15 (lowercase, digits and _ after the level)"
            )
        level, role = match.group(1), match.group(2)
        if not covers:
            raise CheckDefinitionError(f"check {name} covers no requirement: pass covers=(ID, ...)")
        index = _requirement_index()
        for req in covers:
            if req not in index:
                raise CheckDefinitionError(
                    f"check {name} covers unknown requirement {req!r}; see `konbini requirements`"
                )
            if role not in index[req].roles:
                raise CheckDefinitionError(
                    f"check {name} is a {role} check but {req} applies to {index[req].roles}"
                )
        strictest = "MUST" if any(index[r].level == "MUST" for r in covers) else "SHOULD"
        if level != strictest:
            raise CheckDefinitionError(
                f"check {name} is named {level} but its requirements make it {strictest}: "
                f"rename it {strictest}.{name.split('.', 1)[1]}"
            )
        if name in registry and registry[name].func is not func:
            raise CheckDefinitionError(f"two checks are named {name}; names must be unique")
        registry[name] = Check(name, role, tuple(covers), level, func, (func.__doc__ or "").strip())
        return func

    return register


def registered(role: str | None = None) -> list[Check]:
    """Every registered check (of one role), in registration order."""
    return [c for c in _REGISTRY.values() if role is None or c.role == role]


def select(checks: list[Check], only: tuple[str, ...] = ()) -> list[Check]:
    """The checks that cover any of the requirement IDs in ``only`` (all when empty)."""
    if not only:
        return list(checks)
    unknown = set(only) - {r.id for r in requirements()}
    if unknown:
        raise CheckDefinitionError(f"--only names unknown requirements: {sorted(unknown)}")
    return [c for c in checks if set(c.requirements) & set(only)]


def uncovered(role: str, checks: list[Check]) -> list[str]:
    """Requirement IDs of a role that no check covers (the coverage matrix's gaps)."""
    covered = {r for c in checks for r in c.requirements}
    return [r.id for r in requirements() if role in r.roles and r.id not in covered]
