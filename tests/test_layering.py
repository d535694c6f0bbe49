"""A side never imports another side; the suite never imports a reference side; the common
package imports no side (ARCHITECTURE.md "Layout")."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SIDES = {"centre", "municipality", "terminal"}
FORBIDDEN = {
    "centre": SIDES - {"centre"} | {"conformance"},
    "municipality": SIDES - {"municipality"} | {"conformance"},
    "terminal": SIDES - {"terminal"} | {"conformance"},
    "conformance": SIDES,
    "konbini": SIDES | {"conformance"},
    # The demo launcher plays the kiosk with the terminal library and reaches the centre and
    # the municipalities only as processes over the wire.
    "network": {"centre", "municipality", "conformance"},
}


def imported_top_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_forbidden_imports(package: str) -> None:
    offenders = []
    for path in sorted((ROOT / package).rglob("*.py")):
        bad = imported_top_packages(path) & FORBIDDEN[package]
        if bad:
            offenders.append(f"{path.relative_to(ROOT)} imports {sorted(bad)}")
    assert not offenders, "\n".join(offenders)


def test_the_check_sees_a_violation(tmp_path: Path) -> None:
    sample = tmp_path / "x.py"
    sample.write_text("from municipality.render import x\nimport terminal.card\n")
    assert imported_top_packages(sample) == {"municipality", "terminal"}
