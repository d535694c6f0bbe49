"""The coverage matrix: each requirement of a role and the checks that cover it."""

from __future__ import annotations

from typing import Any

from conformance.registry import Check
from konbini.contracts import requirements


def checks_by_requirement(checks: list[Check]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for c in checks:
        for req in c.requirements:
            out.setdefault(req, []).append(c.name)
    return out


def coverage_rows(role: str, by_req: dict[str, list[str]]) -> list[dict[str, Any]]:
    """One row per requirement of ``role``: id, level, text, checks (empty = uncovered)."""
    return [
        {"id": r.id, "level": r.level, "text": r.text, "checks": by_req.get(r.id, [])}
        for r in requirements()
        if role in r.roles
    ]


def coverage_text(role: str, by_req: dict[str, list[str]]) -> str:
    rows = coverage_rows(role, by_req)
    lines = [f"Coverage for role {role}:"]
    for row in rows:
        mark = f"{len(row['checks'])} check(s)" if row["checks"] else "NO CHECK"
        lines.append(f"  {row['id']:<28} {row['level']:<6} {mark}")
        lines.extend(f"      {name}" for name in row["checks"])
    missing = [row["id"] for row in rows if not row["checks"]]
    lines.append(
        f"{len(rows) - len(missing)} of {len(rows)} requirements covered; "
        f"without a check: {', '.join(missing) or 'none'}"
    )
    return "\n".join(lines) + "\n"
