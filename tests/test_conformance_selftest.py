"""The suite against the reference municipality server (it passes) and against deliberately
broken variants of it (it fails, naming the right requirement); a replay script reproduces a
failure over gRPC."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import io
import json
import subprocess
import sys
import uuid
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pikepdf
import pytest

from conformance.checks import load_checks
from conformance.cli import main as cli_main
from conformance.engine import run_checks
from conformance.events import CheckResult, Outcome
from conformance.expected import judge_run
from conformance.harness import background_server
from conformance.registry import select
from conformance.reporters.replay import ReplayWriter
from conformance.session import RunOptions, build_context
from konbini.common.v1 import types_pb2
from konbini.errors import KonbiniError
from konbini.issuing.v1 import issuing_pb2, issuing_pb2_grpc
from konbini.pki import PkiDir, pki_init
from konbini.server import (
    ServerOptions,
    ServiceBinding,
    contract_authorization,
    create_server,
    drain,
    start,
)
from konbini.testing.v1 import testing_pb2, testing_pb2_grpc
from municipality.config import MunicipalityConfig
from municipality.server import (
    FIXTURE,
    ISSUING,
    build_app,
    credentials_for,
    open_municipality_store,
)
from municipality.service import FixtureServicer, IssuingServicer, Municipality

TENANTS = ("131016", "131041")
Factory = Callable[[Municipality], tuple[Any, Any]]


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PkiDir:
    path = tmp_path_factory.mktemp("cf-pki")
    pki_init(path, now=dt.datetime.now(dt.UTC))
    return PkiDir(path)


def reference(app: Municipality) -> tuple[Any, Any]:
    return IssuingServicer(app), FixtureServicer(app)


@contextlib.asynccontextmanager
async def serving(pki: PkiDir, db: Path, make: Factory) -> AsyncIterator[int]:
    """The reference municipality's engines behind the servicers ``make`` builds."""
    config = MunicipalityConfig(
        tenants=TENANTS,
        pki_dir=pki.root,
        server_name="tokyo-cloud",
        store_url=f"sqlite://{db}",
        test_mode=True,
        sweep_interval=dt.timedelta(seconds=1),
    )
    store = open_municipality_store(config)
    try:
        issuing, fixture = make(build_app(config, store))
        server, port, health = create_server(
            [
                ServiceBinding(
                    issuing_pb2_grpc.add_IssuingServiceServicer_to_server, issuing, ISSUING
                ),
                ServiceBinding(
                    testing_pb2_grpc.add_FixtureServiceServicer_to_server, fixture, FIXTURE
                ),
            ],
            ServerOptions(
                credentials=credentials_for(config),
                test_mode=True,
                interceptors=(contract_authorization(),),
            ),
        )
        await start(server, health, [ISSUING, FIXTURE])
        try:
            yield port
        finally:
            await drain(server, health, grace=1)
    finally:
        store.close()


@contextlib.contextmanager
def server(pki: PkiDir, tmp_path: Path, make: Factory = reference) -> Iterator[int]:
    db = tmp_path / f"m-{uuid.uuid4().hex[:8]}.db"
    with background_server(lambda: serving(pki, db, make)) as port:
        yield port


def run_suite(
    pki: PkiDir,
    port: int,
    only: tuple[str, ...],
    *,
    examples: int = 3,
    replay_dir: Path | None = None,
    names: tuple[str, ...] = (),
) -> dict[str, CheckResult]:
    opts = RunOptions(
        role="municipality",
        target=f"127.0.0.1:{port}",
        pki=pki.root,
        municipalities=TENANTS,
        seed=7,
        examples=examples,
        only=only,
        extra={"shrink_budget": 3.0},
    )
    ctx, wire = build_context(opts)
    subscribers = [ReplayWriter(replay_dir, wire.config)] if replay_dir else []
    try:
        checks = [
            c for c in select(load_checks("municipality"), only) if not names or c.name in names
        ]
        results = run_checks(checks, ctx, subscribers)
    finally:
        wire.close()
    return {r.name: r for r in results}


def failed_requirements(results: dict[str, CheckResult]) -> dict[str, str]:
    return {
        name: r.counterexample.requirement
        for name, r in results.items()
        if r.outcome is Outcome.FAIL and r.counterexample is not None
    }


# -- the reference passes ---------------------------------------------------------------------
# Known defects of the reference, reported to the lead; when one is fixed the run reports an
# unexpected pass and this list must shrink (the expected-failures rule).
# The reference municipality passes every check (seal images are resampled to 300 dpi).
REFERENCE_EXPECTED: dict[str, str] = {}


def test_reference_municipality_passes(pki: PkiDir, tmp_path: Path) -> None:
    with server(pki, tmp_path) as port:
        results = run_suite(pki, port, ())
    verdict = judge_run(
        tuple(results.values()), REFERENCE_EXPECTED, [c.name for c in load_checks("municipality")]
    )
    details = {
        n: f"{r.outcome.value}: {r.message}"
        for n, r in results.items()
        if r.outcome in (Outcome.FAIL, Outcome.ERROR)
    }
    assert verdict.ok, details
    assert len(results) == len(load_checks("municipality"))
    assert all(r.outcome is not Outcome.SKIP for r in results.values())


def test_cli_reports_and_expected_failures(
    pki: PkiDir, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    junit, report, expected = tmp_path / "j.xml", tmp_path / "r.json", tmp_path / "xfail.txt"
    expected.write_text("MUST.municipality.ops.health  # pretend it fails\n")
    with server(pki, tmp_path) as port:
        argv = [
            "run",
            "--role",
            "municipality",
            "--target",
            f"127.0.0.1:{port}",
            "--pki",
            str(pki.root),
            "--municipality",
            *TENANTS,
            "--seed",
            "5",
            "--only",
            "OPS-HEALTH",
            "ELIG-UNDER-15",
            "--report-junit",
            str(junit),
            "--report-json",
            str(report),
            "--expected-failures",
            str(expected),
        ]
        assert cli_main(argv) == 1  # a listed check passed: the file is stale
        out = capsys.readouterr().out
        assert "UNEXPECTED PASS" in out and "--update-expected-failures" in out
        assert cli_main([*argv, "--update-expected-failures"]) == 0
        assert "ops.health" not in expected.read_text()
        assert cli_main(argv) == 0
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None and int(suite.get("tests", "0")) >= 2
    doc = json.loads(report.read_text())
    assert {r["outcome"] for r in doc["results"]} == {"pass"}


# -- broken variants --------------------------------------------------------------------------
class CrossTalk(IssuingServicer):
    """Keeps the answer in one shared slot while "printing": a later request overwrites an
    earlier one's answer (the Kawasaki 2023 failure)."""

    slot: Any = None

    async def PrepareIssuance(self, request: Any, context: Any) -> Any:
        response = await super().PrepareIssuance(request, context)
        CrossTalk.slot = response
        await asyncio.sleep(0.2)
        return CrossTalk.slot


class NonIdempotent(IssuingServicer):
    """Treats every retry as a new request."""

    async def PrepareIssuance(self, request: Any, context: Any) -> Any:
        fresh = issuing_pb2.PrepareIssuanceRequest()
        fresh.CopyFrom(request)
        fresh.request_id = f"{request.request_id[:40]}-{uuid.uuid4().hex[:12]}"
        return await super().PrepareIssuance(fresh, context)


class IgnoresExpiry(IssuingServicer):
    """Commits an expired reservation anyway."""

    async def CommitIssuance(self, request: Any, context: Any) -> Any:
        try:
            return await super().CommitIssuance(request, context)
        except KonbiniError as error:
            if error.reason != "RESERVATION_EXPIRED":
                raise
            return issuing_pb2.CommitIssuanceResponse(
                state=types_pb2.ISSUANCE_STATE_COMMITTED, issue_numbers=["1"]
            )


class DropsSupportMeasures(FixtureServicer):
    """A broken data link: support measures never reach the issuing server."""

    async def LoadDataset(self, request: Any, context: Any) -> Any:
        stripped = testing_pb2.LoadDatasetRequest()
        stripped.CopyFrom(request)
        for data in stripped.municipality.municipalities:
            for resident in data.residents:
                resident.support_measure = False
        return await super().LoadDataset(stripped, context)


class LeaksTenants(IssuingServicer):
    """Looks a card up in every tenant it serves when the asked one does not know it."""

    async def PrepareIssuance(self, request: Any, context: Any) -> Any:
        try:
            return await super().PrepareIssuance(request, context)
        except KonbiniError as error:
            if error.reason not in ("CARD_NOT_BOUND", "SUBJECT_NOT_FOUND"):
                raise
            other = issuing_pb2.PrepareIssuanceRequest()
            other.CopyFrom(request)
            other.municipality_code.value = next(
                c for c in TENANTS if c != request.municipality_code.value
            )
            return await super().PrepareIssuance(other, context)


def with_text_layer(pdf: bytes) -> bytes:
    doc = pikepdf.open(io.BytesIO(pdf))
    for page in doc.pages:
        font = pikepdf.Dictionary(
            Type=pikepdf.Name.Font, Subtype=pikepdf.Name.Type1, BaseFont=pikepdf.Name.Helvetica
        )
        page.obj.Resources.Font = pikepdf.Dictionary(F1=font)
        page.contents_add(pikepdf.Stream(doc, b"BT /F1 12 Tf 72 72 Td (Yamada Taro) Tj ET"))
    out = io.BytesIO()
    doc.save(out)
    return out.getvalue()


class TextLayer(IssuingServicer):
    """Adds a text layer (a font and a Tj) to every page."""

    async def PrepareIssuance(self, request: Any, context: Any) -> Any:
        response = await super().PrepareIssuance(request, context)
        for document in response.documents:
            document.pdf = with_text_layer(document.pdf)
        return response


class ReusesIssueNumbers(IssuingServicer):
    """Numbers each document by its copy index only: copy 1 of every issuance gets the same
    issue number (metadata and visible seal alike would repeat)."""

    async def PrepareIssuance(self, request: Any, context: Any) -> Any:
        response = await super().PrepareIssuance(request, context)
        for document in response.documents:
            meta = types_pb2.DocumentMetadata()
            meta.ParseFromString(document.signed_metadata)
            meta.issue_number = f"{meta.municipality_code.value}-{meta.copy_index:06d}"
            document.signed_metadata = meta.SerializeToString()
        return response


class IgnoresSelection(IssuingServicer):
    """Prints the whole household whatever members were selected."""

    async def PrepareIssuance(self, request: Any, context: Any) -> Any:
        options = request.options.residence_record
        if options.scope == types_pb2.HOUSEHOLD_SCOPE_SELECTED_MEMBERS:
            widened = issuing_pb2.PrepareIssuanceRequest()
            widened.CopyFrom(request)
            widened.options.residence_record.scope = types_pb2.HOUSEHOLD_SCOPE_WHOLE_HOUSEHOLD
            del widened.options.residence_record.member_refs[:]
            request = widened
        return await super().PrepareIssuance(request, context)


class DropsMaintenanceDays(FixtureServicer):
    """A broken data link: the tenant's maintenance days never reach the issuing server."""

    async def LoadDataset(self, request: Any, context: Any) -> Any:
        stripped = testing_pb2.LoadDatasetRequest()
        stripped.CopyFrom(request)
        for data in stripped.municipality.municipalities:
            del data.tenant.maintenance_days[:]
        return await super().LoadDataset(stripped, context)


BROKEN: list[tuple[str, Factory, tuple[str, ...], str, str]] = [
    (
        "cross-talk",
        lambda app: (CrossTalk(app), FixtureServicer(app)),
        ("XTALK-SUBJECT",),
        "MUST.municipality.crosstalk.concurrent",
        "XTALK-SUBJECT",
    ),
    (
        "non-idempotent",
        lambda app: (NonIdempotent(app), FixtureServicer(app)),
        ("ONCE-REQUEST-ID",),
        "MUST.municipality.idempotency.prepare_retry",
        "ONCE-REQUEST-ID",
    ),
    (
        "ignores expiry",
        lambda app: (IgnoresExpiry(app), FixtureServicer(app)),
        ("ISSUE-EXPIRY",),
        "MUST.municipality.twophase.commit_after_expiry",
        "ISSUE-EXPIRY",
    ),
    (
        "protected resident",
        lambda app: (IssuingServicer(app), DropsSupportMeasures(app)),
        ("ELIG-SUPPORT-MEASURE",),
        "MUST.municipality.eligibility.support_measure",
        "ELIG-SUPPORT-MEASURE",
    ),
    (
        "tenant leak",
        lambda app: (LeaksTenants(app), FixtureServicer(app)),
        ("AUTHZ-TENANT",),
        "MUST.municipality.authz.tenant_isolation",
        "AUTHZ-TENANT",
    ),
    (
        "text layer",
        lambda app: (TextLayer(app), FixtureServicer(app)),
        ("GLYPH-NO-TEXT",),
        "MUST.municipality.documents.image_only",
        "GLYPH-NO-TEXT",
    ),
    (
        "issue numbers reused",
        lambda app: (ReusesIssueNumbers(app), FixtureServicer(app)),
        ("DOC-ISSUE-NUMBER",),
        "MUST.municipality.documents.issue_number",
        "DOC-ISSUE-NUMBER",
    ),
    (
        "selection ignored",
        lambda app: (IgnoresSelection(app), FixtureServicer(app)),
        ("OPT-APPLIED",),
        "MUST.municipality.options.selected_members",
        "OPT-APPLIED",
    ),
    (
        "maintenance day ignored",
        lambda app: (IssuingServicer(app), DropsMaintenanceDays(app)),
        ("HOURS-CLOSED-DATES",),
        "MUST.municipality.hours.maintenance_day",
        "HOURS-CLOSED-DATES",
    ),
]


@pytest.mark.parametrize(
    ("label", "make", "only", "check", "requirement"), BROKEN, ids=[b[0] for b in BROKEN]
)
def test_broken_variant_fails_on_the_right_requirement(
    pki: PkiDir,
    tmp_path: Path,
    label: str,
    make: Factory,
    only: tuple[str, ...],
    check: str,
    requirement: str,
) -> None:
    with server(pki, tmp_path, make) as port:
        results = run_suite(pki, port, only, names=(check,))
    failures = failed_requirements(results)
    assert failures.get(check) == requirement, (
        label,
        {n: (r.outcome, r.message) for n, r in results.items()},
    )


def test_stateful_machine_catches_ignored_expiry(pki: PkiDir, tmp_path: Path) -> None:
    make: Factory = lambda app: (IgnoresExpiry(app), FixtureServicer(app))  # noqa: E731
    with server(pki, tmp_path, make) as port:
        results = run_suite(
            pki, port, ("ISSUE-EXPIRY",), names=("MUST.municipality.stateful.issuance_sequences",)
        )
    machine = results["MUST.municipality.stateful.issuance_sequences"]
    assert machine.outcome is Outcome.FAIL
    assert machine.counterexample is not None
    assert machine.counterexample.requirement in ("ISSUE-EXPIRY", "ISSUE-TWO-PHASE")
    assert "seed 7" in machine.counterexample.sent  # the shrunk steps come with the seed


def test_replay_script_reproduces_a_failure(pki: PkiDir, tmp_path: Path) -> None:
    make: Factory = lambda app: (IssuingServicer(app), DropsSupportMeasures(app))  # noqa: E731
    replay_dir = tmp_path / "replay"
    with server(pki, tmp_path, make) as port:
        run_suite(pki, port, ("ELIG-SUPPORT-MEASURE",), replay_dir=replay_dir)
        script = replay_dir / "replay_MUST_municipality_eligibility_support_measure.py"
        assert script.exists()
        broken = subprocess.run(
            [sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=False
        )
    assert broken.returncode == 1, broken.stdout + broken.stderr
    assert "REPRODUCED" in broken.stdout
    with server(pki, tmp_path) as port:  # the reference: the same calls do not fail
        fixed = subprocess.run(
            [sys.executable, str(script), "--target", f"127.0.0.1:{port}"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert "NOT REPRODUCED" in fixed.stdout


def test_no_client_certificate_is_refused_at_the_handshake(pki: PkiDir, tmp_path: Path) -> None:
    with server(pki, tmp_path) as port:
        results = run_suite(pki, port, ("AUTHZ-NO-CERT", "AUTHZ-ROLE"))
    assert {r.outcome for r in results.values()} == {Outcome.PASS}
