"""Centre issuance against a fake municipality over mTLS: idempotency end to end, commit and
cancel through the outbox, refusals without state, unavailability, expiry, use registration,
hours and reconciliation (ISSUE-*, ONCE-*, REFUSE-*, ROUTE-*, USEREG-*, HOURS-*)."""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from test_centre_harness import (
    BACK_MARK,
    CHIYODA,
    KOFU,
    Card,
    FakeMunicipality,
    centre_config,
    fixture_stub,
    issuance_request,
    kiosk_stub,
    load_routes,
    open_session,
    start_centre,
    start_fake_municipality,
)
from test_time_support import pki_instant

from centre import ledger
from centre.outbox import Relay, pending, sweep_once
from konbini.common.v1 import types_pb2
from konbini.errors import parse_rpc_error
from konbini.issuing.v1 import issuing_pb2
from konbini.kiosk.v1 import kiosk_pb2
from konbini.pki import PkiDir, pki_init
from konbini.testing.v1 import testing_pb2

RESIDENCE = types_pb2.CERTIFICATE_KIND_RESIDENCE_RECORD
FAMILY = types_pb2.CERTIFICATE_KIND_FAMILY_REGISTER_FULL


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PkiDir:
    path = tmp_path_factory.mktemp("pki")
    pki_init(path, now=pki_instant())  # valid at the centre's pinned time and at real time
    return PkiDir(path)


def dead_port() -> int:
    """A loopback port nobody listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def env(pki: PkiDir, store_url: str, tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    kofu = FakeMunicipality(pki, (KOFU,))
    tokyo = FakeMunicipality(pki, (CHIYODA,))
    kofu_server, kofu_port = await start_fake_municipality(pki, kofu, "kofu")
    tokyo_server, tokyo_port = await start_fake_municipality(pki, tokyo, "tokyo-cloud")
    centre = await start_centre(centre_config(pki, store_url))
    fixtures = fixture_stub(pki, centre.port)
    card, serial = Card.issue(pki, tmp_path)
    # Kofu has a dead first replica: every call must fail over to the live one.
    await load_routes(fixtures, {KOFU: ("", [dead_port(), kofu_port]),
                                 CHIYODA: ("", [tokyo_port])}, {serial: KOFU})
    kiosk = kiosk_stub(pki, centre.port)
    session_id, challenge = await open_session(kiosk, card)
    yield {"centre": centre, "kiosk": kiosk, "card": card, "serial": serial, "kofu": kofu,
           "tokyo": tokyo, "fixtures": fixtures, "session": (session_id, challenge),
           "kofu_server": kofu_server}
    await centre.stop(0)
    await kofu_server.stop(0)
    await tokyo_server.stop(0)


def request_for(env: dict[str, Any], request_id: str | None = None, **kw: Any) -> Any:
    session_id, challenge = env["session"]
    return issuance_request(env["card"], session_id, challenge, kw.pop("code", KOFU),
                            request_id, **kw)


async def reason_of(call: Any) -> str | None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return parse_rpc_error(info.value).reason


async def eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait for a condition that background work brings about (polled, bounded)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not check():
        assert loop.time() < end, "condition not reached in time"
        await asyncio.sleep(0.05)


async def ledger_row(env: dict[str, Any], issuance_id: str) -> ledger.LedgerRow | None:
    return await env["centre"].centre.store.run(lambda tx: ledger.by_id(tx, issuance_id),
                                                write=False)


def centre_now(env: dict[str, Any]) -> dt.datetime:
    """The centre's time (pinned inside service hours, moved by set_clock)."""
    return env["centre"].centre.time.clock.now()


async def set_clock(env: dict[str, Any], at: dt.datetime) -> None:
    request = testing_pb2.SetClockRequest(request_id=uuid.uuid4().hex)
    request.now.FromDatetime(at)
    await env["fixtures"].SetClock(request)


async def test_request_is_idempotent_end_to_end(env: dict[str, Any]) -> None:
    kiosk, kofu = env["kiosk"], env["kofu"]
    request = request_for(env, copies=2)
    first, second = await asyncio.gather(kiosk.RequestIssuance(request),
                                         kiosk.RequestIssuance(request))
    third = await kiosk.RequestIssuance(request)
    assert first.SerializeToString() == second.SerializeToString() == third.SerializeToString()
    assert len(kofu.reservations) == 1  # one reservation at the municipality
    assert first.state == types_pb2.ISSUANCE_STATE_DELIVERED
    assert first.fee.yen == 600
    assert len(first.documents) == 2
    for doc in first.documents:
        assert BACK_MARK in doc.pdf  # the back side was added by the centre
    # The terminal must finish before the municipality's expiry, with a margin.
    reservation = next(iter(kofu.reservations.values()))
    assert first.expires_at.ToDatetime(tzinfo=dt.UTC) <= (
        reservation.expires_at - dt.timedelta(seconds=59))
    # The same request_id with another intent is refused and changes nothing.
    other = request_for(env, request.request_id, copies=1)
    assert await reason_of(kiosk.RequestIssuance(other)) == "REQUEST_ID_REUSED"
    assert len(kofu.reservations) == 1


async def test_printed_commits_exactly_once(env: dict[str, Any], pki: PkiDir) -> None:
    kiosk, kofu = env["kiosk"], env["kofu"]
    delivered = await kiosk.RequestIssuance(request_for(env))
    complete = kiosk_pb2.CompleteIssuanceRequest(
        request_id=uuid.uuid4().hex, issuance_id=delivered.issuance_id,
        outcome=kiosk_pb2.PRINT_OUTCOME_PRINTED)
    answer = await kiosk.CompleteIssuance(complete)
    assert answer.state == types_pb2.ISSUANCE_STATE_COMMITTED
    assert answer.charged.yen == 300
    assert await kiosk.CompleteIssuance(complete) == answer
    again = kiosk_pb2.CompleteIssuanceRequest(
        request_id=uuid.uuid4().hex, issuance_id=delivered.issuance_id,
        outcome=kiosk_pb2.PRINT_OUTCOME_PRINTED)
    assert (await kiosk.CompleteIssuance(again)).state == types_pb2.ISSUANCE_STATE_COMMITTED
    reservation = next(iter(kofu.reservations.values()))
    await eventually(lambda: reservation.commits == 1)
    row = await ledger_row(env, delivered.issuance_id)
    assert row is not None and row.state == ledger.COMMITTED and row.committed_at is not None
    assert reservation.commits == 1 and reservation.cancels == 0
    # The audit trail of the flow is chained and verifies; it names ids and codes only.
    audit = env["centre"].centre.audit
    await audit.flush()  # the centre's background job may have chained them already
    report = audit.log.verify()
    assert report.ok and report.entries >= 4
    # A printed issuance cannot be reported failed afterwards.
    failed = kiosk_pb2.CompleteIssuanceRequest(
        request_id=uuid.uuid4().hex, issuance_id=delivered.issuance_id,
        outcome=kiosk_pb2.PRINT_OUTCOME_FAILED)
    assert await reason_of(kiosk.CompleteIssuance(failed)) == "RESERVATION_COMMITTED"
    # Another terminal does not see this issuance at all.
    other = kiosk_stub(pki, env["centre"].port, "lawson", "T0002")
    assert await reason_of(other.GetIssuance(kiosk_pb2.GetIssuanceRequest(
        issuance_id=delivered.issuance_id))) == "RESERVATION_NOT_FOUND"


async def test_failed_print_cancels_and_charges_nothing(env: dict[str, Any]) -> None:
    kiosk, kofu = env["kiosk"], env["kofu"]
    request = request_for(env)
    delivered = await kiosk.RequestIssuance(request)
    answer = await kiosk.CompleteIssuance(kiosk_pb2.CompleteIssuanceRequest(
        request_id=uuid.uuid4().hex, issuance_id=delivered.issuance_id,
        outcome=kiosk_pb2.PRINT_OUTCOME_FAILED, failure_cause=kiosk_pb2.FAILURE_CAUSE_PRINTER))
    assert answer.state == types_pb2.ISSUANCE_STATE_CANCELLED
    assert answer.charged.yen == 0
    reservation = next(iter(kofu.reservations.values()))
    await eventually(lambda: reservation.state == types_pb2.ISSUANCE_STATE_CANCELLED)
    assert reservation.commits == 0
    got = await kiosk.GetIssuance(kiosk_pb2.GetIssuanceRequest(issuance_id=delivered.issuance_id))
    assert got.state == types_pb2.ISSUANCE_STATE_CANCELLED
    # A cancelled issuance never yields its documents again.
    assert await reason_of(kiosk.RequestIssuance(request)) == "RESERVATION_CANCELLED"


async def test_refusal_leaves_no_state(env: dict[str, Any]) -> None:
    kiosk, kofu = env["kiosk"], env["kofu"]
    kofu.refuse[RESIDENCE] = "SUPPORT_MEASURE"
    request = request_for(env)
    assert await reason_of(kiosk.RequestIssuance(request)) == "SUPPORT_MEASURE"
    assert await reason_of(kiosk.GetIssuance(kiosk_pb2.GetIssuanceRequest(
        request_id=request.request_id))) == "RESERVATION_NOT_FOUND"
    assert kofu.reservations == {}
    # The refusal was not remembered: the same request is evaluated afresh.
    del kofu.refuse[RESIDENCE]
    assert (await kiosk.RequestIssuance(request)).state == types_pb2.ISSUANCE_STATE_DELIVERED


async def test_municipality_down_leaves_nothing_half_done(env: dict[str, Any]) -> None:
    kiosk = env["kiosk"]
    await env["kofu_server"].stop(0)
    request = request_for(env)
    assert await reason_of(kiosk.GetCatalogue(kiosk_pb2.GetCatalogueRequest(
        session_id=env["session"][0]))) == "MUNICIPALITY_UNAVAILABLE"
    # The catalogue check runs first; make the prepare itself fail with the route down.
    assert await reason_of(kiosk.RequestIssuance(request)) == "MUNICIPALITY_UNAVAILABLE"
    assert await reason_of(kiosk.GetIssuance(kiosk_pb2.GetIssuanceRequest(
        request_id=request.request_id))) == "RESERVATION_NOT_FOUND"
    centre = env["centre"].centre
    assert await centre.store.run(pending, write=False) == []


async def test_lost_prepare_answer_is_cancelled_by_prepare_id(env: dict[str, Any]) -> None:
    kiosk, kofu = env["kiosk"], env["kofu"]
    kofu.lose_answers = True  # the municipality reserves, the centre never hears of it
    request = request_for(env)
    assert await reason_of(kiosk.RequestIssuance(request)) == "MUNICIPALITY_UNAVAILABLE"
    assert len(kofu.reservations) == 1
    reservation = next(iter(kofu.reservations.values()))
    # The reservation made for nobody is cancelled by prepare_request_id.
    await eventually(lambda: reservation.state == types_pb2.ISSUANCE_STATE_CANCELLED)
    assert reservation.commits == 0
    assert await reason_of(kiosk.GetIssuance(kiosk_pb2.GetIssuanceRequest(
        request_id=request.request_id))) == "RESERVATION_NOT_FOUND"


async def test_abandoned_request_is_swept(env: dict[str, Any]) -> None:
    kiosk, kofu = env["kiosk"], env["kofu"]
    kofu.prepare_delay = 3.0
    request = request_for(env)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await kiosk.RequestIssuance(request, timeout=1.0)
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    # The caller's deadline reached the municipality too (ROUTE-DEADLINE): nothing reserved.
    assert kofu.reservations == {}
    centre = env["centre"].centre
    row = await centre.store.run(lambda tx: ledger.by_request(
        tx, "urn:konbini:terminal:seven:T0001", request.request_id), write=False)
    assert row is not None and row.state == ledger.REQUESTED
    await set_clock(env, centre_now(env) + dt.timedelta(minutes=5))
    await sweep_once(centre)
    swept = await ledger_row(env, row.issuance_id)
    assert swept is not None and swept.state == ledger.EXPIRED
    assert [(e.issuance_id, e.action) for e in await centre.store.run(pending, write=False)] \
        in ([(row.issuance_id, "CANCEL_PREPARE")], [])


async def test_completion_after_expiry_is_expired_and_cancelled(env: dict[str, Any]) -> None:
    kiosk, kofu = env["kiosk"], env["kofu"]
    request = request_for(env)
    delivered = await kiosk.RequestIssuance(request)
    await set_clock(env, delivered.expires_at.ToDatetime(tzinfo=dt.UTC) + dt.timedelta(seconds=1))
    answer = await kiosk.CompleteIssuance(kiosk_pb2.CompleteIssuanceRequest(
        request_id=uuid.uuid4().hex, issuance_id=delivered.issuance_id,
        outcome=kiosk_pb2.PRINT_OUTCOME_PRINTED))
    assert answer.state == types_pb2.ISSUANCE_STATE_EXPIRED
    assert answer.charged.yen == 0
    reservation = next(iter(kofu.reservations.values()))
    await eventually(lambda: reservation.state == types_pb2.ISSUANCE_STATE_CANCELLED)
    assert await reason_of(kiosk.RequestIssuance(request)) == "RESERVATION_EXPIRED"


async def test_sweeper_expires_and_cancels(env: dict[str, Any]) -> None:
    kiosk, kofu = env["kiosk"], env["kofu"]
    delivered = await kiosk.RequestIssuance(request_for(env))
    await set_clock(env, delivered.expires_at.ToDatetime(tzinfo=dt.UTC) + dt.timedelta(seconds=5))
    centre = env["centre"].centre
    await sweep_once(centre)
    await Relay(centre).run_once()
    reservation = next(iter(kofu.reservations.values()))
    await eventually(lambda: reservation.state == types_pb2.ISSUANCE_STATE_CANCELLED)
    row = await ledger_row(env, delivered.issuance_id)
    assert row is not None and row.state == ledger.EXPIRED


async def test_hours_enforced_by_the_centre(env: dict[str, Any]) -> None:
    kiosk, kofu = env["kiosk"], env["kofu"]
    today = centre_now(env).astimezone(dt.timezone(dt.timedelta(hours=9))).isoweekday()
    kofu.hours = types_pb2.ServiceHours(days=[d for d in range(1, 8) if d != today])
    entries = (await kiosk.GetCatalogue(kiosk_pb2.GetCatalogueRequest(
        session_id=env["session"][0]))).entries
    assert entries and all(not e.available_now for e in entries)
    assert await reason_of(kiosk.RequestIssuance(request_for(env))) == "SERVICE_CLOSED_DAY"
    assert kofu.prepare_calls == 0


async def test_use_registration_gates_family_register(env: dict[str, Any]) -> None:
    kiosk, tokyo, card = env["kiosk"], env["tokyo"], env["card"]
    session_id, challenge = env["session"]
    assert await reason_of(kiosk.RequestIssuance(
        request_for(env, code=CHIYODA, kind=FAMILY))) == "USE_REGISTRATION_REQUIRED"
    rid = uuid.uuid4().hex
    intent = kiosk_pb2.UseRegistrationIntent(
        session_id=session_id, challenge=challenge, request_id=rid,
        register_municipality_code=types_pb2.MunicipalityCode(value=CHIYODA),
        registered_domicile="東京都千代田区千代田1", head_of_register="甲府 太郎",
    ).SerializeToString()
    registered = await kiosk.RegisterFamilyRegisterUse(kiosk_pb2.RegisterFamilyRegisterUseRequest(
        request_id=rid, session_id=session_id, intent=intent, signature=card.sign(intent)))
    assert registered.status == kiosk_pb2.USE_REGISTRATION_STATUS_PENDING
    assert await reason_of(kiosk.RequestIssuance(
        request_for(env, code=CHIYODA, kind=FAMILY))) == "USE_REGISTRATION_PENDING"
    tokyo.links[registered.registration_id] = issuing_pb2.LINK_DECISION_LINKED
    status = await kiosk.GetUseRegistration(kiosk_pb2.GetUseRegistrationRequest(
        registration_id=registered.registration_id))
    assert status.status == kiosk_pb2.USE_REGISTRATION_STATUS_APPROVED
    entries = (await kiosk.GetCatalogue(kiosk_pb2.GetCatalogueRequest(
        session_id=session_id))).entries
    assert [(e.municipality_code.value, e.kind) for e in entries] == [
        (KOFU, RESIDENCE), (KOFU, FAMILY), (CHIYODA, FAMILY)]
    delivered = await kiosk.RequestIssuance(request_for(env, code=CHIYODA, kind=FAMILY))
    assert delivered.state == types_pb2.ISSUANCE_STATE_DELIVERED
    # Residence records of another municipality are never requestable.
    assert await reason_of(kiosk.RequestIssuance(
        request_for(env, code=CHIYODA, kind=RESIDENCE))) == "KIND_NOT_OFFERED"


async def test_ledger_reconciles_with_issue_records(env: dict[str, Any]) -> None:
    kiosk, kofu = env["kiosk"], env["kofu"]
    outcomes = [kiosk_pb2.PRINT_OUTCOME_PRINTED, kiosk_pb2.PRINT_OUTCOME_FAILED,
                kiosk_pb2.PRINT_OUTCOME_PRINTED, kiosk_pb2.PRINT_OUTCOME_PRINTED]
    for outcome in outcomes:
        delivered = await kiosk.RequestIssuance(request_for(env))
        await kiosk.CompleteIssuance(kiosk_pb2.CompleteIssuanceRequest(
            request_id=uuid.uuid4().hex, issuance_id=delivered.issuance_id, outcome=outcome))
    centre = env["centre"].centre
    await eventually(lambda: sum(r.commits for r in kofu.reservations.values()) == 3)
    records = (await kofu.ListIssueRecords(issuing_pb2.ListIssueRecordsRequest(
        municipality_code=types_pb2.MunicipalityCode(value=KOFU)), None)).records
    now_us = int(centre_now(env).timestamp() * 1_000_000)

    async def committed() -> list[dict[str, Any]]:
        return await centre.store.run(lambda tx: ledger.committed_rows(
            tx, KOFU, now_us - 3_600_000_000, now_us + 3_600_000_000), write=False)

    loop = asyncio.get_running_loop()
    end = loop.time() + 10
    rows = await committed()
    while len(rows) < 3 and loop.time() < end:
        await asyncio.sleep(0.05)
        rows = await committed()
    assert {(r["issuance_id"], r["fee_yen"], r["kind"]) for r in rows} == {
        (rec.issuance_id, rec.fee.yen, rec.kind) for rec in records}
    assert len(rows) == 3
