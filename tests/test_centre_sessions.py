"""Centre sessions and card authentication over real mTLS loopback servers (SESSION-*, CARD-*)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from test_centre_harness import (
    KOFU,
    Card,
    FakeMunicipality,
    centre_config,
    fixture_stub,
    kiosk_stub,
    load_routes,
    start_centre,
    start_fake_municipality,
)
from test_time_support import pki_instant

from konbini.errors import parse_rpc_error
from konbini.kiosk.v1 import kiosk_pb2
from konbini.pki import PkiDir, pki_init
from konbini.testing.v1 import testing_pb2


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PkiDir:
    path = tmp_path_factory.mktemp("pki")
    pki_init(path, now=pki_instant())  # valid at the centre's pinned time and at real time
    return PkiDir(path)


@pytest.fixture
async def env(pki: PkiDir, store_url: str, tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    fake = FakeMunicipality(pki, (KOFU,))
    muni, muni_port = await start_fake_municipality(pki, fake, "kofu")
    centre = await start_centre(centre_config(pki, store_url, challenge_ttl_s=60))
    fixtures = fixture_stub(pki, centre.port)
    card, serial = Card.issue(pki, tmp_path)
    await load_routes(fixtures, {KOFU: ("", [muni_port])}, {serial: KOFU})
    yield {"centre": centre, "kiosk": kiosk_stub(pki, centre.port), "card": card,
           "serial": serial, "fixtures": fixtures, "fake": fake}
    await centre.stop(0)
    await muni.stop(0)


def centre_now(env: dict[str, Any]) -> dt.datetime:
    """The centre's time (pinned inside service hours by start_centre)."""
    return env["centre"].centre.time.clock.now()


async def create(kiosk: Any) -> kiosk_pb2.CreateSessionResponse:
    return await kiosk.CreateSession(kiosk_pb2.CreateSessionRequest(request_id=uuid.uuid4().hex))


def auth_request(created: Any, card: Card, *, challenge: bytes | None = None,
                 request_id: str | None = None) -> kiosk_pb2.AuthenticateRequest:
    intent = kiosk_pb2.AuthIntent(session_id=created.session_id,
                                  challenge=created.challenge if challenge is None else challenge)
    data = intent.SerializeToString()
    return kiosk_pb2.AuthenticateRequest(
        request_id=request_id or uuid.uuid4().hex, session_id=created.session_id,
        auth_certificate_der=card.certificate, intent=data, signature=card.sign(data))


async def reason_of(call: Any) -> str | None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return parse_rpc_error(info.value).reason


async def test_happy_path_authenticates_and_finds_residence(env: dict[str, Any]) -> None:
    kiosk, card = env["kiosk"], env["card"]
    created = await create(kiosk)
    assert len(created.challenge) >= 32
    again = await kiosk.CreateSession(kiosk_pb2.CreateSessionRequest(request_id="same-id"))
    assert (await kiosk.CreateSession(kiosk_pb2.CreateSessionRequest(request_id="same-id"))
            == again)  # idempotent on request_id
    assert again.challenge != created.challenge  # fresh per session
    request = auth_request(created, card)
    answer = await kiosk.Authenticate(request)
    assert answer.residence_municipality_code.value == KOFU
    assert answer.residence_municipality_name == f"m{KOFU}"
    # The same request_id is answered again (idempotent), a new one finds the challenge used.
    assert await kiosk.Authenticate(request) == answer
    assert await reason_of(kiosk.Authenticate(auth_request(created, card))) == \
        "CHALLENGE_REPLAYED"


async def test_other_terminal_cannot_use_session(env: dict[str, Any], pki: PkiDir) -> None:
    created = await create(env["kiosk"])
    other = kiosk_stub(pki, env["centre"].port, "lawson", "T0002")
    assert await reason_of(other.Authenticate(auth_request(created, env["card"]))) == \
        "SESSION_UNKNOWN"
    # The owner still can: the refusal consumed nothing.
    await env["kiosk"].Authenticate(auth_request(created, env["card"]))


async def test_challenge_mismatch_and_bad_signature(env: dict[str, Any]) -> None:
    kiosk, card = env["kiosk"], env["card"]
    created = await create(kiosk)
    assert await reason_of(kiosk.Authenticate(
        auth_request(created, card, challenge=b"\x00" * 32))) == "CHALLENGE_MISMATCH"
    good = auth_request(created, card)
    forged = kiosk_pb2.AuthenticateRequest()
    forged.CopyFrom(good)
    forged.signature = bytes([good.signature[0] ^ 1]) + good.signature[1:]
    assert await reason_of(kiosk.Authenticate(forged)) == "CARD_SIGNATURE_INVALID"
    await kiosk.Authenticate(good)


async def test_challenge_expires(env: dict[str, Any]) -> None:
    kiosk, fixtures = env["kiosk"], env["fixtures"]
    created = await create(kiosk)
    later = testing_pb2.SetClockRequest(request_id=uuid.uuid4().hex)
    later.now.FromDatetime(centre_now(env) + dt.timedelta(seconds=120))
    await fixtures.SetClock(later)
    assert await reason_of(kiosk.Authenticate(auth_request(created, env["card"]))) == \
        "CHALLENGE_EXPIRED"


async def test_revoked_expired_unbound_and_stale_crl(env: dict[str, Any], pki: PkiDir,
                                                     tmp_path: Path) -> None:
    kiosk = env["kiosk"]
    expired, _ = Card.issue(pki, tmp_path, expired=True)
    assert await reason_of(kiosk.Authenticate(auth_request(await create(kiosk), expired))) == \
        "CARD_EXPIRED"
    unbound, _ = Card.issue(pki, tmp_path)
    assert await reason_of(kiosk.Authenticate(auth_request(await create(kiosk), unbound))) == \
        "CARD_NOT_BOUND"
    revoked, serial = Card.issue(pki, tmp_path)
    now = centre_now(env)
    ca = pki.jpki_ca()
    ca.revoke_at(now, int(serial, 16))
    ca.publish_crl_at(now, dt.timedelta(days=1))
    assert await reason_of(kiosk.Authenticate(auth_request(await create(kiosk), revoked))) == \
        "CARD_REVOKED"
    # Past the CRL's next update plus the grace: every card fails closed.
    created = await create(kiosk)
    later = testing_pb2.SetClockRequest(request_id=uuid.uuid4().hex)
    later.now.FromDatetime(now + dt.timedelta(days=1, hours=2))
    await env["fixtures"].SetClock(later)
    assert await reason_of(kiosk.Authenticate(auth_request(created, env["card"]))) in (
        "CRL_STALE", "CHALLENGE_EXPIRED")
    fresh = await create(kiosk)
    assert await reason_of(kiosk.Authenticate(auth_request(fresh, env["card"]))) == "CRL_STALE"


async def test_ended_session_is_unknown(env: dict[str, Any]) -> None:
    kiosk = env["kiosk"]
    created = await create(kiosk)
    await kiosk.EndSession(kiosk_pb2.EndSessionRequest(request_id="end",
                                                       session_id=created.session_id))
    assert await reason_of(kiosk.Authenticate(auth_request(created, env["card"]))) == \
        "SESSION_UNKNOWN"
