"""The suite's framework without a server: check definitions, the engine's outcomes and
events, the expected-failures rules, the reporters, the model, fixtures and PDF inspection."""

from __future__ import annotations

import datetime as dt
import io
import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pikepdf
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conformance import fixtures as fx
from conformance.cli import main as cli_main
from conformance.documents import low_resolution, pdf_structure_findings
from conformance.engine import run_checks
from conformance.events import (
    CheckFinished,
    CheckResult,
    CheckStarted,
    Outcome,
    RunFinished,
    RunStarted,
)
from conformance.expected import judge_run, parse_expected, updated_file_text
from conformance.failures import CheckFailed, CheckSkipped
from conformance.model import age_on, expect_prepare
from conformance.registry import Check, CheckDefinitionError, check
from conformance.reporters.console import summary
from conformance.reporters.coverage import coverage_rows
from conformance.reporters.jsonreport import JsonReporter
from conformance.reporters.junit import junit_xml
from konbini.common.v1 import types_pb2
from konbini.docimage.pdfimage import images_to_pdf
from konbini.register.v1 import register_pb2
from konbini.validation import violations

TODAY = dt.date(2026, 6, 10)
CODE = "192015"


# -- check definitions ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "covers", "fragment"),
    [
        ("municipality.eligibility.x", ("ELIG-UNDER-15",), "LEVEL.role.area.rule"),
        ("MUST.municipality.x", ("ELIG-UNDER-15",), "LEVEL.role.area.rule"),
        ("MUST.municipality.eligibility.x", ("NO-SUCH-REQ",), "unknown requirement"),
        ("MUST.municipality.eligibility.x", ("PIN-FORMAT",), "applies to"),
        ("MUST.municipality.ops.reflection", ("OPS-REFLECTION",), "rename it SHOULD"),
        ("SHOULD.municipality.ops.health", ("OPS-HEALTH",), "rename it MUST"),
        ("MUST.municipality.eligibility.x", (), "covers no requirement"),
    ],
)
def test_a_wrong_definition_fails_at_once_saying_how_to_fix_it(
    name: str, covers: tuple[str, ...], fragment: str
) -> None:
    with pytest.raises(CheckDefinitionError, match=fragment):
        check(name, covers=covers, into={})(lambda ctx: None)


def test_duplicate_names_are_refused() -> None:
    registry: dict[str, Check] = {}
    check("MUST.municipality.area.rule", covers=("OPS-HEALTH",), into=registry)(lambda ctx: None)
    with pytest.raises(CheckDefinitionError, match="unique"):
        check("MUST.municipality.area.rule", covers=("OPS-HEALTH",), into=registry)(
            lambda ctx: None
        )


def test_check_failed_refuses_an_unknown_requirement() -> None:
    with pytest.raises(ValueError, match="unknown requirement"):
        CheckFailed("NOPE", "sent", "received", "detail")


# -- the engine -------------------------------------------------------------------------------
class FakeContext:
    role = "municipality"
    target = "127.0.0.1:1"
    seed = 3
    examples = 1

    def __init__(self) -> None:
        self.calls: list[str] = []

    def before_check(self) -> None:
        self.calls = []

    def take_calls(self) -> tuple[Any, ...]:
        return tuple(self.calls)


class FakeRpcError(grpc.RpcError, grpc.Call):  # type: ignore[misc]
    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.UNAVAILABLE

    def details(self) -> str:
        return "connection refused"

    def trailing_metadata(self) -> tuple[()]:
        return ()

    def initial_metadata(self) -> tuple[()]:
        return ()

    def is_active(self) -> bool:
        return False

    def time_remaining(self) -> None:
        return None

    def cancel(self) -> bool:
        return False

    def add_callback(self, callback: Any) -> bool:
        return False


def _checks() -> list[Check]:
    registry: dict[str, Check] = {}

    def ok(ctx: FakeContext) -> None:
        ctx.calls.append("ok")

    def fails(ctx: FakeContext) -> None:
        ctx.calls.append("prepare")
        raise CheckFailed(
            "ELIG-UNDER-15",
            "PrepareIssuance(...)",
            "a document",
            "no refusal",
            expected={"outcome": "error", "reason": "UNDER_15"},
        )

    def crashes(ctx: FakeContext) -> None:
        raise ZeroDivisionError("boom")

    def unreachable(ctx: FakeContext) -> None:
        raise FakeRpcError()

    def skipped(ctx: FakeContext) -> None:
        raise CheckSkipped("needs two tenants")

    def should(ctx: FakeContext) -> None:
        raise CheckFailed("OPS-REFLECTION", "list services", "nothing", "no reflection")

    for name, func, covers in [
        ("MUST.municipality.t.ok", ok, ("OPS-HEALTH",)),
        ("MUST.municipality.t.fails", fails, ("ELIG-UNDER-15",)),
        ("MUST.municipality.t.crashes", crashes, ("ERR-MODEL",)),
        ("MUST.municipality.t.unreachable", unreachable, ("ERR-MODEL",)),
        ("MUST.municipality.t.skipped", skipped, ("AUTHZ-TENANT",)),
        ("SHOULD.municipality.t.should", should, ("OPS-REFLECTION",)),
    ]:
        check(name, covers=covers, into=registry)(func)
    return list(registry.values())


def _run() -> tuple[tuple[CheckResult, ...], list[Any]]:
    events: list[Any] = []
    results = run_checks(_checks(), FakeContext(), [events.append])
    return results, events


def test_every_outcome_is_recorded_and_the_run_goes_on() -> None:
    results, events = _run()
    outcomes = {r.name.split(".")[-1]: r.outcome for r in results}
    assert outcomes == {
        "ok": Outcome.PASS,
        "fails": Outcome.FAIL,
        "crashes": Outcome.ERROR,
        "unreachable": Outcome.ERROR,
        "skipped": Outcome.SKIP,
        "should": Outcome.FAIL,
    }
    failed = next(r for r in results if r.name.endswith("fails"))
    assert failed.counterexample is not None
    assert failed.counterexample.requirement == "ELIG-UNDER-15"
    assert failed.calls == ("prepare",)  # kept for the replay script
    assert "UNAVAILABLE" in next(r for r in results if r.name.endswith("unreachable")).message
    kinds = [type(e) for e in events]
    assert kinds[0] is RunStarted and kinds[-1] is RunFinished
    assert kinds.count(CheckStarted) == kinds.count(CheckFinished) == 6


def test_expected_failures_rules() -> None:
    results, _ = _run()
    names = [r.name for r in results]
    plain = judge_run(results, {}, names)
    assert not plain.ok
    assert set(plain.unexpected_failures) == {
        "MUST.municipality.t.fails",
        "MUST.municipality.t.crashes",
        "MUST.municipality.t.unreachable",
    }
    assert plain.should_failures == ("SHOULD.municipality.t.should",)  # reported, not fatal
    listed = parse_expected(
        "# known\nMUST.municipality.t.fails  # refuses late\nMUST.municipality.t.crashes\n"
        "MUST.municipality.t.unreachable # flaky network\n"
    )
    assert judge_run(results, listed, names).ok
    stale = judge_run(results, {**listed, "MUST.municipality.t.ok": "fixed since"}, names)
    assert stale.unexpected_passes == ("MUST.municipality.t.ok",) and not stale.ok
    unknown = judge_run(results, {**listed, "MUST.municipality.t.gone": ""}, names)
    assert unknown.unknown_entries == ("MUST.municipality.t.gone",) and not unknown.ok
    text = updated_file_text(results, listed)
    assert parse_expected(text).keys() == listed.keys()
    assert "refuses late" in text


def test_junit_is_well_formed() -> None:
    results, _ = _run()
    root = ET.fromstring(junit_xml(results, "municipality", 1.5))
    assert root.tag == "testsuites"
    suite = root.find("testsuite")
    assert suite is not None and suite.get("tests") == "6"
    assert suite.get("failures") == "2" and suite.get("errors") == "2"
    assert suite.get("skipped") == "1"
    cases = suite.findall("testcase")
    assert len(cases) == 6 and all(c.get("classname") and c.get("name") for c in cases)
    failing = [c for c in cases if c.find("failure") is not None]
    assert {c.get("name") for c in failing} == {"fails", "should"}
    assert "ELIG-UNDER-15" in (failing[0].find("failure").text or "")  # type: ignore[union-attr]


def test_json_report_and_console_summary(tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    reporter = JsonReporter(path, {"OPS-HEALTH": ["MUST.municipality.t.ok"]})
    run_checks(_checks(), FakeContext(), [reporter])
    doc = json.loads(path.read_text())
    assert doc["role"] == "municipality" and len(doc["results"]) == 6
    fail = next(r for r in doc["results"] if r["outcome"] == "fail")
    assert fail["counterexample"]["expected"] == {"outcome": "error", "reason": "UNDER_15"}
    rows = {r["id"]: r["checks"] for r in doc["coverage"]}
    assert rows["OPS-HEALTH"] == ["MUST.municipality.t.ok"] and rows["ELIG-DECEASED"] == []
    text = summary(*_summary_args())
    assert "FAIL     ELIG-UNDER-15" in text and "a document" in text
    assert "skip     AUTHZ-TENANT" in text


def _summary_args() -> tuple[tuple[CheckResult, ...], float]:
    results, _ = _run()
    return results, 1.0


def test_coverage_lists_requirements_of_the_role_only() -> None:
    rows = coverage_rows("municipality", {})
    ids = {r["id"] for r in rows}
    assert "ELIG-UNDER-15" in ids and "PIN-FORMAT" not in ids


# -- the model --------------------------------------------------------------------------------
def _one(**fields: Any) -> tuple[register_pb2.Dataset, str]:
    data = register_pb2.MunicipalityData(
        tenant=fx.tenant(CODE, "甲府市", fiscal_years=fx.fiscal_years_for(TODAY))
    )
    person = fx.resident(
        "p1", "山田 太郎", fields.pop("birth", dt.date(1980, 1, 1)), "h1", **fields
    )
    data.residents.append(person)
    data.card_bindings.add(certificate_serial="abc", resident_id="p1")
    data.seals.append(fx.seal("p1", "S1"))
    return fx.dataset_of(data), "abc"


def _expect(dataset: register_pb2.Dataset, serial: str, kind: int = 1) -> Any:
    options = fx.request_options(kind, fiscal_year=fx.fiscal_years_for(TODAY)[1])
    return expect_prepare(dataset, CODE, serial, kind, options, 1, TODAY)


def test_age_counts_the_birthday_itself() -> None:
    assert age_on(dt.date(2011, 6, 10), TODAY) == 15
    assert age_on(dt.date(2011, 6, 11), TODAY) == 14


@pytest.mark.parametrize(
    ("fields", "kind", "reasons"),
    [
        ({"birth": dt.date(2011, 6, 10)}, 1, frozenset()),
        ({"birth": dt.date(2011, 6, 11)}, 1, {"UNDER_15"}),
        ({"support_measure": True}, 1, {"SUPPORT_MEASURE"}),
        ({"status": register_pb2.RESIDENT_STATUS_DECEASED}, 1, {"DECEASED"}),
        ({"moved_in_on": TODAY}, 1, {"MOVED_IN_TODAY"}),
        ({"adult_ward": True}, 3, {"ADULT_WARD"}),
        ({"adult_ward": True}, 1, frozenset()),  # an adult ward may get a residence record
    ],
)
def test_model_rules(fields: dict[str, Any], kind: int, reasons: set[str]) -> None:
    expected = _expect(*_one(**fields), kind=kind)
    assert expected.reasons == frozenset(reasons)
    if not reasons:
        assert expected.subjects == (("p1", "山田 太郎"),)


def test_model_knows_unknown_cards_and_tenants() -> None:
    dataset, _ = _one()
    assert "CARD_NOT_BOUND" in _expect(dataset, "ffff").reasons
    assert (
        "TENANT_NOT_SERVED"
        in expect_prepare(dataset, "131016", "abc", 1, fx.request_options(1), 1, TODAY).reasons
    )


# -- fixtures ---------------------------------------------------------------------------------
@settings(max_examples=25, deadline=None)
@given(fx.municipality_data(CODE, "甲府市", TODAY, 0x100))
def test_generated_datasets_are_valid_and_carry_the_hard_cases(
    data: register_pb2.MunicipalityData,
) -> None:
    assert violations(fx.dataset_of(data)) == []
    serials = [b.certificate_serial for b in data.card_bindings]
    assert len(serials) == len(set(serials)) == len(data.residents)
    assert all(s == s.lower() and not s.startswith("0") for s in serials)


def test_names_include_variation_sequences_the_font_draws_differently() -> None:
    assert any("\U000e0102" in name for name in fx.SURNAMES)
    assert fx.KATSU_IVS == "葛\U000e0102" and fx.TSUJI_IVS == "辻\U000e0102"


@given(st.datetimes(min_value=dt.datetime(2020, 1, 1), max_value=dt.datetime(2035, 1, 1)))
def test_suite_clock_is_in_hours_and_never_in_the_year_end_closure(now: dt.datetime) -> None:
    at = fx.suite_clock(now.replace(tzinfo=dt.UTC))
    jst = at.astimezone(dt.timezone(dt.timedelta(hours=9)))
    assert (jst.hour, jst.minute) == (10, 0)
    assert not ((jst.month, jst.day) >= (12, 29) or (jst.month, jst.day) <= (1, 3))


# -- documents --------------------------------------------------------------------------------
def test_image_only_pdf_is_clean_and_a_text_layer_is_found() -> None:
    clean = images_to_pdf([np.full((3508, 2480), 255, dtype=np.uint8)])
    text, sizes, images = pdf_structure_findings(clean)
    assert text == [] and sizes == [] and low_resolution(images) == []
    doc = pikepdf.open(io.BytesIO(clean))
    page = doc.pages[0]
    page.obj.Resources.Font = pikepdf.Dictionary(
        F1=pikepdf.Dictionary(
            Type=pikepdf.Name.Font, Subtype=pikepdf.Name.Type1, BaseFont=pikepdf.Name.Helvetica
        )
    )
    page.contents_add(pikepdf.Stream(doc, b"BT /F1 12 Tf (x) Tj ET"))
    out = io.BytesIO()
    doc.save(out)
    text, _, _ = pdf_structure_findings(out.getvalue())
    assert any("/Font" in t for t in text) and any("Tj" in t for t in text)


def test_low_resolution_and_wrong_size_are_found() -> None:
    small = images_to_pdf([np.full((1169, 827), 255, dtype=np.uint8)])  # A4 at 100 dpi
    _, _, images = pdf_structure_findings(small)
    assert low_resolution(images)
    letter = images_to_pdf([np.full((3300, 2550), 255, dtype=np.uint8)], (612.0, 792.0))
    _, sizes, _ = pdf_structure_findings(letter)
    assert sizes and "not A4" in sizes[0]


# -- CLI --------------------------------------------------------------------------------------
def test_requirements_command_lists_coverage(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["requirements", "--role", "municipality"]) == 0
    out = capsys.readouterr().out
    assert "ELIG-UNDER-15" in out and "MUST.municipality.eligibility.under_15" in out
    assert "without a check:" in out


def test_request_options_match_the_kind() -> None:
    assert fx.request_options(4, fiscal_year=2026).WhichOneof("kind_options") == "income_tax"
    assert fx.request_options(5).WhichOneof("kind_options") == "family_register"
    assert types_pb2.CERTIFICATE_KIND_SEAL_REGISTRATION == 3
