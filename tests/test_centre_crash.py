"""The centre process SIGKILLed between prepare and complete (DURABLE-CRASH, ISSUE-OUTBOX,
ISSUE-SWEEPER): a real `konbini centre serve` subprocess on SQLite, a fake municipality here."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from test_centre_harness import (
    KOFU,
    Card,
    CentreProcess,
    FakeMunicipality,
    fixture_stub,
    issuance_request,
    kiosk_stub,
    load_routes,
    open_session,
    pin_clock,
    start_fake_municipality,
)
from test_time_support import pinned_clock, pki_instant

from konbini.common.v1 import types_pb2
from konbini.kiosk.v1 import kiosk_pb2
from konbini.pki import PkiDir, pki_init
from konbini.testing.v1 import testing_pb2


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PkiDir:
    path = tmp_path_factory.mktemp("pki")
    pki_init(path, now=pki_instant())  # valid at the pinned time and at real time
    return PkiDir(path)


@pytest.fixture
async def crash_env(pki: PkiDir, tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    clock = pinned_clock()  # the fake's time, and the centre's after every (re)start
    fake = FakeMunicipality(pki, (KOFU,), clock=clock)
    muni, muni_port = await start_fake_municipality(pki, fake, "kofu")
    config = tmp_path / "centre.toml"
    config.write_text(
        f'pki_dir = "{pki.root}"\nbind = "127.0.0.1:0"\npublic_bind = ""\n'
        f'store_url = "sqlite://{tmp_path / "centre.db"}"\ntest_mode = true\n'
        "relay_interval_s = 0.2\nsweep_interval_s = 0.3\n")
    process = CentreProcess(config, tmp_path)
    card, serial = Card.issue(pki, tmp_path)
    yield {"fake": fake, "muni_port": muni_port, "process": process, "card": card,
           "serial": serial, "clock": clock}
    process.stop()
    await muni.stop(0)


async def eventually(check: Callable[[], bool], timeout: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not check():
        assert loop.time() < end, "condition not reached in time"
        await asyncio.sleep(0.05)


async def connect(pki: PkiDir, env: dict[str, Any]) -> tuple[Any, Any]:
    port = await env["process"].start()
    fixtures = fixture_stub(pki, port)
    await load_routes(fixtures, {KOFU: ("", [env["muni_port"]])}, {env["serial"]: KOFU})
    if env.get("pinned") is None:  # once: the offset is stored and survives restarts
        env["pinned"] = await pin_clock(fixtures, env["clock"])
    return kiosk_stub(pki, port), fixtures


async def test_killed_during_prepare_completes_exactly_once(pki: PkiDir,
                                                            crash_env: dict[str, Any]) -> None:
    fake, process, card = crash_env["fake"], crash_env["process"], crash_env["card"]
    kiosk, _ = await connect(pki, crash_env)
    session_id, challenge = await open_session(kiosk, card)
    request = issuance_request(card, session_id, challenge, KOFU)
    reserved, release = asyncio.Event(), asyncio.Event()

    async def hold() -> None:
        reserved.set()
        await release.wait()

    fake.after_reserve = hold
    call = asyncio.ensure_future(kiosk.RequestIssuance(request))
    await asyncio.wait_for(reserved.wait(), 30)
    process.kill()  # the municipality reserved; the centre dies before storing the answer
    with pytest.raises(grpc.aio.AioRpcError):
        await call
    fake.after_reserve = None
    release.set()
    kiosk, _ = await connect(pki, crash_env)
    # The terminal retries the same request_id: the same reservation is delivered.
    delivered = await kiosk.RequestIssuance(request)
    assert len(fake.reservations) == 1
    again = await kiosk.RequestIssuance(request)
    assert again.SerializeToString() == delivered.SerializeToString()
    process.kill()  # and dies again between delivery and completion
    kiosk, _ = await connect(pki, crash_env)
    assert (await kiosk.RequestIssuance(request)).SerializeToString() == \
        delivered.SerializeToString()
    complete = kiosk_pb2.CompleteIssuanceRequest(
        request_id=uuid.uuid4().hex, issuance_id=delivered.issuance_id,
        outcome=kiosk_pb2.PRINT_OUTCOME_PRINTED)
    answer = await kiosk.CompleteIssuance(complete)
    assert answer.state == types_pb2.ISSUANCE_STATE_COMMITTED
    reservation = next(iter(fake.reservations.values()))
    await eventually(lambda: reservation.commits == 1)
    assert await kiosk.CompleteIssuance(complete) == answer
    assert reservation.commits == 1 and reservation.cancels == 0


async def test_killed_after_delivery_expires_and_cancels(pki: PkiDir,
                                                         crash_env: dict[str, Any]) -> None:
    fake, process, card = crash_env["fake"], crash_env["process"], crash_env["card"]
    kiosk, _ = await connect(pki, crash_env)
    session_id, challenge = await open_session(kiosk, card)
    delivered = await kiosk.RequestIssuance(issuance_request(card, session_id, challenge, KOFU))
    process.kill()
    kiosk, fixtures = await connect(pki, crash_env)
    later = testing_pb2.SetClockRequest(request_id=uuid.uuid4().hex)
    later.now.FromDatetime(delivered.expires_at.ToDatetime(tzinfo=dt.UTC)
                           + dt.timedelta(seconds=2))
    await fixtures.SetClock(later)
    reservation = next(iter(fake.reservations.values()))
    # Nobody completes: the restarted centre's sweeper expires it and cancels at the municipality.
    await eventually(lambda: reservation.state == types_pb2.ISSUANCE_STATE_CANCELLED)
    got = await kiosk.GetIssuance(kiosk_pb2.GetIssuanceRequest(issuance_id=delivered.issuance_id))
    assert got.state == types_pb2.ISSUANCE_STATE_EXPIRED
    late = await kiosk.CompleteIssuance(kiosk_pb2.CompleteIssuanceRequest(
        request_id=uuid.uuid4().hex, issuance_id=delivered.issuance_id,
        outcome=kiosk_pb2.PRINT_OUTCOME_PRINTED))
    assert late.state == types_pb2.ISSUANCE_STATE_EXPIRED and late.charged.yen == 0
    assert reservation.commits == 0
