"""The contracts themselves: lint, breaking changes, generated stubs, catalogues, docs."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from konbini import contracts, requirements
from konbini.devtools import genproto
from konbini.municode import validate_municipality_code

ROOT = Path(__file__).resolve().parents[1]
BUF = Path(sys.executable).parent / "buf"


def run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300, check=False)


def test_buf_lint_is_clean() -> None:
    result = run([str(BUF), "lint"], ROOT / "proto")
    assert result.returncode == 0, result.stdout + result.stderr


def test_buf_breaking_against_the_released_baseline() -> None:
    result = run([str(BUF), "breaking", "--against", "../buf/baseline.binpb"], ROOT / "proto")
    assert result.returncode == 0, result.stdout + result.stderr


def test_buf_breaking_detects_a_breaking_change(tmp_path: Path) -> None:
    # The check must be able to fail: renumber a field in a copy of the module.
    copy = tmp_path / "proto"
    shutil.copytree(ROOT / "proto", copy)
    kiosk = copy / "konbini/kiosk/v1/kiosk.proto"
    before = "bytes challenge = 2;\n  // After"
    text = kiosk.read_text().replace(before, before.replace("2;", "9;"))
    assert text != kiosk.read_text()
    kiosk.write_text(text)
    result = run([str(BUF), "breaking", "--against", str(ROOT / "buf/baseline.binpb")], copy)
    assert result.returncode != 0
    assert "challenge" in result.stdout + result.stderr


def test_python_stubs_do_not_drift_from_the_protos() -> None:
    problems = genproto.drift()
    assert problems == [], "stale stubs, run ./dev gen:\n" + "\n".join(problems)


def test_python_stubs_include_type_stubs() -> None:
    for pb2 in (ROOT / "konbini").rglob("*_pb2.py"):
        assert pb2.with_suffix(".pyi").exists(), pb2
        assert (pb2.parent / (pb2.stem + "_grpc.pyi")).exists(), pb2


@pytest.mark.skipif(
    shutil.which("npm") is None and not os.environ.get("CI"),
    reason="npm is not installed (./dev setup installs the TypeScript toolchain when it is)",
)
def test_typescript_stubs_generate_and_type_check() -> None:
    ts = ROOT / "clients" / "typescript"
    assert (ts / "node_modules" / ".bin" / "protoc-gen-es").exists(), "run ./dev setup"
    shutil.rmtree(ts / "gen", ignore_errors=True)
    gen = run([str(BUF), "generate", "--template", "buf.gen.ts.yaml"], ROOT / "proto")
    assert gen.returncode == 0, gen.stdout + gen.stderr
    assert (ts / "gen/konbini/kiosk/v1/kiosk_pb.ts").exists()
    tsc = run([str(ts / "node_modules/.bin/tsc"), "-p", "."], ts)
    assert tsc.returncode == 0, tsc.stdout + tsc.stderr


def test_every_requirement_is_complete_and_unique() -> None:
    reqs = contracts.requirements()
    ids = [r.id for r in reqs]
    assert len(ids) == len(set(ids))
    for r in reqs:
        assert re.fullmatch(r"[A-Z0-9]+(-[A-Z0-9]+)+", r.id), r.id
        assert r.level in {"MUST", "SHOULD"}, r
        assert r.text.endswith("."), r
        assert set(r.roles) <= {"terminal", "centre", "municipality"} and r.roles, r


def test_requirements_cover_the_invariants_and_the_domain() -> None:
    ids = contracts.requirement_ids()
    # The nine invariants of ARCHITECTURE.md and the rule families of DOMAIN.md.
    for prefix in ["XTALK-", "ONCE-", "REFUSE-", "FRESH-", "GLYPH-", "VERIFY-", "INPUT-",
                   "AUTHZ-", "DURABLE-", "ELIG-", "HOURS-", "FEE-", "ISSUE-", "KIND-", "OPT-",
                   "ERR-", "CARD-", "PIN-", "USEREG-", "SETTLE-"]:
        assert any(i.startswith(prefix) for i in ids), prefix


def test_methods_name_only_known_requirements() -> None:
    known = contracts.requirement_ids()
    for method in contracts.methods():
        unknown = set(method.requirements) - known
        assert not unknown, f"{method.path} names unknown requirements {unknown}"


def test_every_mutating_method_takes_a_required_request_id() -> None:
    for method in contracts.methods():
        if not method.mutating:
            continue
        fields = {f.name for f in contracts.required_fields(method.descriptor.input_type)}
        assert "request_id" in fields, method.path


def test_every_service_names_its_callers() -> None:
    roles = contracts.service_roles()
    assert roles, "no services found"
    for service, allowed in roles.items():
        assert allowed, service


def test_error_catalogue_names_every_refusal_of_the_domain() -> None:
    catalogue = contracts.reasons()
    needed = [
        "UNDER_15", "ADULT_WARD", "SEAL_NOT_REGISTERED", "SEAL_ABOLISHED", "SUPPORT_MEASURE",
        "MOVED_OUT", "MOVING_OUT", "DECEASED", "MOVED_IN_TODAY", "CHARACTERS_NOT_SUPPORTED",
        "CHARACTERS_BEING_REGISTERED", "REGISTER_CHANGE_PENDING", "OUTSIDE_SERVICE_HOURS",
        "SERVICE_CLOSED_DAY", "KIND_NOT_OFFERED", "CARD_REVOKED", "CARD_EXPIRED",
        "CARD_UNKNOWN_ISSUER", "CRL_STALE", "PIN_LOCKED", "CHALLENGE_EXPIRED",
        "CHALLENGE_REPLAYED", "RESERVATION_EXPIRED", "CARD_WITHOUT_PIN", "FIELD_INVALID",
    ]
    assert not [n for n in needed if n not in catalogue]
    valid_codes = set(range(1, 17))
    for reason in catalogue.values():
        assert re.fullmatch(r"[A-Z][A-Z0-9_]*", reason.name)
        assert reason.grpc_code in valid_codes, reason
        assert reason.message_ja and reason.message_en, reason


def test_docs_requirement_table_is_current() -> None:
    text = requirements.DOCS_FILE.read_text(encoding="utf-8")
    assert requirements.render_docs(text) == text, "run: konbini requirements --write-docs"
    for r in contracts.requirements():
        assert f"| {r.id} |" in text


def test_docs_show_every_flow() -> None:
    text = requirements.DOCS_FILE.read_text(encoding="utf-8")
    for service, _roles in contracts.service_roles().items():
        assert service.rsplit(".", 1)[-1] in text, service
    assert text.count("sequenceDiagram") >= 5


@pytest.mark.parametrize(
    ("code", "valid"),
    [("131016", True), ("011002", True), ("131041", True), ("131130", True),
     ("271403", True), ("192015", True), ("131017", False), ("13101", False),
     ("13101a", False), ("１３１０１６", False)],
)
def test_municipality_code_check_digit(code: str, valid: bool) -> None:
    assert validate_municipality_code(code) is valid


def test_cli_lists_the_subcommands() -> None:
    result = run([sys.executable, "-m", "konbini.cli", "--help"], ROOT)
    assert result.returncode == 0, result.stderr
    for sub in ["pki", "jpki", "proto", "requirements"]:
        assert sub in result.stdout
