"""The centre role of the conformance suite against the reference centre in test mode (it
passes) and against broken variants built here (it fails, naming the right requirement):
a card verifier that accepts revoked cards, a KioskService that treats every retry as a new
request, one that keeps answers in a shared slot under concurrency, one whose imaging
step shares a buffer (another resident's front page under the right metadata), one that
ignores the municipality's own hours, one whose sweeper never runs, and one that does not
pass the terminal's deadline on."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from centre.config import CentreConfig
from centre.context import Centre
from centre.fixture import CentreFixtureServicer
from centre.kiosk import KioskServicer
from centre.ratelimit import RateLimiter
from centre.server import FIXTURE, KIOSK, build_centre
from conformance.checks import load_checks
from conformance.cli import main as cli_main
from conformance.engine import run_checks
from conformance.events import CheckResult, Outcome
from conformance.expected import judge_run
from conformance.harness import background_server
from conformance.registry import select
from conformance.session import RunOptions, build_context
from konbini.kiosk.v1 import kiosk_pb2_grpc
from konbini.pki import CardIdentity, CardVerifier, PkiDir, pki_init
from konbini.pki.errors import CardRejected
from konbini.pki.mtls import server_credentials
from konbini.server import (
    ServerOptions,
    ServiceBinding,
    contract_authorization,
    create_server,
    drain,
    start,
)
from konbini.testing.v1 import testing_pb2_grpc

Variant = Callable[[Centre], Any]  # builds the KioskService servicer of a broken centre


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PkiDir:
    path = tmp_path_factory.mktemp("cf-centre-pki")
    pki_init(path, now=dt.datetime.now(dt.UTC))
    return PkiDir(path)


def _config(pki: PkiDir, db: Path, **overrides: Any) -> CentreConfig:
    # The suite runs many calls per second from two terminals: the rate limit is raised.
    settings: dict[str, Any] = dict(
        pki_dir=pki.root, bind="127.0.0.1:0", public_bind="", store_url=f"sqlite://{db}",
        test_mode=True, relay_interval_s=0.2, sweep_interval_s=0.5, rate_per_s=1000.0,
        rate_burst=1000)
    return CentreConfig(**{**settings, **overrides})


@contextlib.asynccontextmanager
async def _reference(pki: PkiDir, db: Path, kiosk: Variant | None,
                     tweak: Callable[[Centre], None] | None,
                     config: dict[str, Any]) -> AsyncIterator[int]:
    """The reference centre (``config`` overriding settings); with ``kiosk``, its KioskService
    (and FixtureService) served by that servicer on a port of its own, over the same
    collaborators."""
    built = build_centre(_config(pki, db, **config))
    if tweak is not None:
        tweak(built.centre)
    await built.start()
    try:
        if kiosk is None:
            yield built.port
            return
        cert, key = pki.centre_server.read()
        server, port, health = create_server(
            [ServiceBinding(kiosk_pb2_grpc.add_KioskServiceServicer_to_server,
                            kiosk(built.centre), KIOSK),
             ServiceBinding(testing_pb2_grpc.add_FixtureServiceServicer_to_server,
                            CentreFixtureServicer(built.centre), FIXTURE)],
            ServerOptions(credentials=server_credentials(cert, key,
                                                         pki.network_ca_cert.read_bytes()),
                          test_mode=True, interceptors=(contract_authorization(),)))
        await start(server, health, [KIOSK, FIXTURE])
        try:
            yield port
        finally:
            await drain(server, health, grace=0.5)
    finally:
        await built.stop(grace=0.5)


@contextlib.contextmanager
def centre(pki: PkiDir, tmp_path: Path, kiosk: Variant | None = None,
           tweak: Callable[[Centre], None] | None = None, **config: Any) -> Iterator[int]:
    db = tmp_path / f"centre-{time.monotonic_ns()}.db"
    with background_server(lambda: _reference(pki, db, kiosk, tweak, config)) as port:
        yield port


def run_suite(pki: PkiDir, port: int, only: tuple[str, ...] = (),
              relay_wait: float = 15.0) -> dict[str, CheckResult]:
    opts = RunOptions(role="centre", target=f"127.0.0.1:{port}", pki=pki.root, seed=11,
                      only=only, extra={"relay_wait": relay_wait, "quiet_wait": 1.0})
    ctx, wire = build_context(opts)
    try:
        results = run_checks(select(load_checks("centre"), only), ctx, [])
    finally:
        wire.close()
        ctx.close()
    return {r.name: r for r in results}


def failed(results: dict[str, CheckResult]) -> dict[str, str]:
    return {n: r.counterexample.requirement for n, r in results.items()
            if r.outcome is Outcome.FAIL and r.counterexample is not None}


def details(results: dict[str, CheckResult]) -> dict[str, str]:
    return {n: f"{r.outcome.value}: {r.message}" for n, r in results.items()
            if r.outcome in (Outcome.FAIL, Outcome.ERROR)}


# Known defects of the reference centre, reported to the lead (none so far).
REFERENCE_EXPECTED: dict[str, str] = {}


def test_reference_centre_passes(pki: PkiDir, tmp_path: Path) -> None:
    started = time.monotonic()
    with centre(pki, tmp_path) as port:
        results = run_suite(pki, port)
    names = [c.name for c in load_checks("centre")]
    verdict = judge_run(tuple(results.values()), REFERENCE_EXPECTED, names)
    assert verdict.ok, details(results)
    assert len(results) == len(names)
    assert all(r.outcome is not Outcome.SKIP for r in results.values())
    assert time.monotonic() - started < 120  # the default run stays within two minutes


def test_cli_runs_the_centre_role(pki: PkiDir, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    with centre(pki, tmp_path) as port:
        code = cli_main(["run", "--role", "centre", "--target", f"127.0.0.1:{port}",
                         "--pki", str(pki.root), "--seed", "3", "--only", "CARD-REVOCATION",
                         "SESSION-CHALLENGE-FRESH"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "MUST.centre.cards.revoked" in out and "RESULT: PASS" in out


# -- broken variants --------------------------------------------------------------------------
class _AcceptsRevoked(CardVerifier):
    """Checks everything but revocation."""

    def _check_revocation(self, *args: Any) -> None:
        return None


class LaxCards:
    """The centre's card trust, wrapped: a revoked card passes."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    async def verifier(self) -> CardVerifier:
        return await self._inner.verifier()

    async def verify_at(self, now: dt.datetime, cert: bytes, signed: bytes,
                        signature: bytes) -> CardIdentity:
        verifier = await self._inner.verifier()
        try:
            return verifier.verify_at(now, cert, signed, signature)
        except CardRejected as error:
            if error.reason != "CARD_REVOKED":
                raise
            lax = _AcceptsRevoked(verifier._cas, verifier._crls, verifier._grace)
            return lax.verify_at(now, cert, signed, signature)


def accept_revoked(centre: Centre) -> None:
    centre.cards = LaxCards(centre.cards)  # type: ignore[assignment]


class NonIdempotent(KioskServicer):
    """Forgets a delivered request before handling its retry: every retry is a new issuance."""

    async def RequestIssuance(self, request: Any, context: Any) -> Any:
        rid = request.request_id

        def forget(tx: Any) -> None:
            tx.execute("UPDATE ledger SET request_id = request_id || '-x' || issuance_id"
                       " WHERE request_id = ? AND state = 'DELIVERED'", (rid,))

        await self._centre.store.run(forget)
        return await super().RequestIssuance(request, context)


class SharedSlot(KioskServicer):
    """Keeps the answer in one slot while "printing": a later request overwrites an earlier
    one's answer (the shared-buffer failure)."""

    slot: Any = None

    async def RequestIssuance(self, request: Any, context: Any) -> Any:
        response = await super().RequestIssuance(request, context)
        SharedSlot.slot = response
        await asyncio.sleep(0.3)
        return SharedSlot.slot


class SlotBackSides:
    """The imaging step with one shared buffer: concurrent requests may print another
    resident's front (the signed metadata stays right, so only the pages tell)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self._slot = b""

    def __call__(self, front: bytes, keys: Any, at: dt.datetime) -> bytes:
        self._slot = front
        time.sleep(0.2)  # the imaging work during which another request overwrites the slot
        return self._inner(self._slot, keys, at)


def shared_back_side_buffer(centre: Centre) -> None:
    centre.back_sides = SlotBackSides(centre.back_sides)


def _limiter() -> RateLimiter:
    return RateLimiter(1000.0, 1000)


def test_accepting_a_revoked_card_fails_card_revocation(pki: PkiDir, tmp_path: Path) -> None:
    with centre(pki, tmp_path, tweak=accept_revoked) as port:
        results = run_suite(pki, port, ("CARD-REVOCATION", "CARD-CHAIN"))
    assert failed(results) == {"MUST.centre.cards.revoked": "CARD-REVOCATION"}, details(results)


def test_non_idempotent_requests_fail_once_request_id(pki: PkiDir, tmp_path: Path) -> None:
    with centre(pki, tmp_path, kiosk=lambda c: NonIdempotent(c, _limiter())) as port:
        results = run_suite(pki, port, ("ONCE-REQUEST-ID",))
    assert failed(results) == {"MUST.centre.idempotency.request_retry": "ONCE-REQUEST-ID"}, \
        details(results)


def test_shared_slot_fails_crosstalk(pki: PkiDir, tmp_path: Path) -> None:
    with centre(pki, tmp_path, kiosk=lambda c: SharedSlot(c, _limiter())) as port:
        results = run_suite(pki, port, ("XTALK-SUBJECT",))
    assert set(failed(results).values()) <= {"XTALK-SUBJECT", "XTALK-TERMINAL"}
    assert "MUST.centre.crosstalk.concurrent" in failed(results), details(results)


def test_shared_imaging_buffer_fails_crosstalk(pki: PkiDir, tmp_path: Path) -> None:
    with centre(pki, tmp_path, tweak=shared_back_side_buffer) as port:
        results = run_suite(pki, port, ("XTALK-SUBJECT",))
    assert failed(results) == {"MUST.centre.crosstalk.concurrent": "XTALK-SUBJECT"}, \
        details(results)


class HoursBlindRouter:
    """The centre's router, wrapped: catalogue entries lose the municipality's own hours, so
    the centre applies only the standard hours (the "skips its own hours check" failure)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def call(self, code: str, method: str, request: Any, **kwargs: Any) -> Any:
        response = await self._inner.call(code, method, request, **kwargs)
        if method == "GetCatalogue":
            for entry in response.entries:
                entry.ClearField("hours")
        return response


class DeadlineDroppingRouter(HoursBlindRouter):
    """The centre's router, wrapped: every call goes out with the default timeout, whatever
    deadline the terminal gave."""

    async def call(self, code: str, method: str, request: Any, **kwargs: Any) -> Any:
        kwargs.pop("time_remaining", None)
        return await self._inner.call(code, method, request, **kwargs)


def hours_blind(centre: Centre) -> None:
    centre.router = HoursBlindRouter(centre.router)  # type: ignore[assignment]


def deadline_dropping(centre: Centre) -> None:
    centre.router = DeadlineDroppingRouter(centre.router)  # type: ignore[assignment]


def test_ignoring_catalogue_hours_fails_per_kind_and_closed_dates(pki: PkiDir,
                                                                  tmp_path: Path) -> None:
    with centre(pki, tmp_path, tweak=hours_blind) as port:
        results = run_suite(pki, port, ("HOURS-PER-KIND", "HOURS-CLOSED-DATES", "KIND-OFFERED"))
    assert failed(results) == {"MUST.centre.hours.per_kind": "HOURS-PER-KIND",
                               "MUST.centre.hours.closed_dates": "HOURS-CLOSED-DATES"}, \
        details(results)
    assert results["MUST.centre.catalogue.kind_offered"].outcome is Outcome.PASS


def test_a_sweeper_that_never_runs_fails_issue_sweeper(pki: PkiDir, tmp_path: Path) -> None:
    with centre(pki, tmp_path, sweep_interval_s=3600.0) as port:
        results = run_suite(pki, port, ("ISSUE-SWEEPER",), relay_wait=3.0)
    assert failed(results) == {"MUST.centre.completion.sweeper": "ISSUE-SWEEPER"}, \
        details(results)


def test_dropping_the_deadline_fails_route_deadline(pki: PkiDir, tmp_path: Path) -> None:
    with centre(pki, tmp_path, tweak=deadline_dropping) as port:
        results = run_suite(pki, port, ("ROUTE-DEADLINE", "ROUTE-FAILOVER"))
    assert failed(results) == {"SHOULD.centre.routing.deadline": "ROUTE-DEADLINE"}, \
        details(results)


def test_copy_void_criterion_tells_a_screen_from_blank_and_solid_margins() -> None:
    from conformance.checks.centre.documents import copy_void_findings
    from konbini.docimage.backside import PRINT_DPI, back_image

    back = back_image(np.full((1754, 1240), 255, np.uint8), "k1", bytes(32), dpi=PRINT_DPI)
    assert copy_void_findings(back) == ""
    margin = int(back.shape[1] * 0.06)
    for fill in (255, 0):  # no background at all; a solid fill instead of a screen
        plain = back.copy()
        plain[:, :margin] = fill
        assert "margin ink" in copy_void_findings(plain)
