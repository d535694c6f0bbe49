"""No cross-talk under concurrency (XTALK-SUBJECT, XTALK-TERMINAL, DURABLE-SHARED): 100
terminals with 100 cards at once across two `konbini centre serve` processes sharing one
PostgreSQL schema, each session opened on one process and continued on the other."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from test_centre_harness import (
    KOFU,
    Card,
    CentreProcess,
    FakeMunicipality,
    fixture_stub,
    issuance_request,
    kiosk_stub,
    load_routes,
    pin_clock,
    start_fake_municipality,
    subject_digest,
)
from test_time_support import pki_instant

from konbini.common.v1 import types_pb2
from konbini.kiosk.v1 import kiosk_pb2
from konbini.pki import PkiDir, pki_init

TERMINALS = 100

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PkiDir:
    path = tmp_path_factory.mktemp("pki")
    terminals = [("seven" if i % 2 else "lawson", f"T{i:04d}") for i in range(TERMINALS)]
    pki_init(path, terminals=terminals, now=pki_instant())  # valid at the pinned time too
    return PkiDir(path)


@pytest.fixture
async def shared_pg(postgres_url: str) -> AsyncIterator[str]:
    schema = f"test_{uuid.uuid4().hex[:12]}"
    yield f"{postgres_url}{'&' if '?' in postgres_url else '?'}schema={schema}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


async def test_hundred_terminals_two_processes(pki: PkiDir, shared_pg: str,
                                               tmp_path: Path) -> None:
    fake = FakeMunicipality(pki, (KOFU,))
    muni, muni_port = await start_fake_municipality(pki, fake, "kofu")
    config = tmp_path / "centre.toml"
    config.write_text(
        f'pki_dir = "{pki.root}"\nbind = "127.0.0.1:0"\npublic_bind = ""\n'
        f'store_url = "{shared_pg}"\ntest_mode = true\nrate_per_s = 100.0\n')
    procs = [CentreProcess(config, tmp_path), CentreProcess(config, tmp_path)]
    try:
        ports = [await p.start() for p in procs]
        cards = [Card.issue(pki, tmp_path) for _ in range(TERMINALS)]
        await pin_clock(fixture_stub(pki, ports[0]))  # both processes share the stored offset
        await load_routes(fixture_stub(pki, ports[0]), {KOFU: ("", [muni_port])},
                          {serial: KOFU for _, serial in cards})
        terminals = [("seven" if i % 2 else "lawson", f"T{i:04d}") for i in range(TERMINALS)]
        stubs = [[kiosk_stub(pki, port, op, tid) for port in ports] for op, tid in terminals]

        async def flow(i: int) -> tuple[int, Any, Any]:
            card, _ = cards[i]
            first, second = stubs[i][i % 2], stubs[i][1 - i % 2]
            created = await first.CreateSession(kiosk_pb2.CreateSessionRequest(
                request_id=uuid.uuid4().hex))
            intent = kiosk_pb2.AuthIntent(session_id=created.session_id,
                                          challenge=created.challenge).SerializeToString()
            await second.Authenticate(kiosk_pb2.AuthenticateRequest(
                request_id=uuid.uuid4().hex, session_id=created.session_id,
                auth_certificate_der=card.certificate, intent=intent,
                signature=card.sign(intent)))
            request = issuance_request(card, created.session_id, created.challenge, KOFU)
            delivered = await first.RequestIssuance(request)
            done = await second.CompleteIssuance(kiosk_pb2.CompleteIssuanceRequest(
                request_id=uuid.uuid4().hex, issuance_id=delivered.issuance_id,
                outcome=kiosk_pb2.PRINT_OUTCOME_PRINTED))
            return i, delivered, done

        started = time.monotonic()
        results = await asyncio.gather(*(flow(i) for i in range(TERMINALS)))
        elapsed = time.monotonic() - started
        print(f"\n{TERMINALS} sessions over 2 centre processes on PostgreSQL: {elapsed:.1f} s")
        seen: set[str] = set()
        for i, delivered, done in results:
            _, serial = cards[i]
            assert done.state == types_pb2.ISSUANCE_STATE_COMMITTED
            assert len(delivered.documents) == 1
            meta = types_pb2.DocumentMetadata.FromString(delivered.documents[0].signed_metadata)
            # The document is about this terminal's card holder, and reached only this terminal.
            assert meta.subject_digest == subject_digest(KOFU, serial)
            reservation = fake.reservations[meta.reservation_id]
            assert reservation.serial == serial
            assert reservation.issuance_id == delivered.issuance_id
            assert meta.reservation_id not in seen
            seen.add(meta.reservation_id)
        assert len(fake.reservations) == TERMINALS
        loop = asyncio.get_running_loop()
        end = loop.time() + 30
        while sum(r.commits for r in fake.reservations.values()) < TERMINALS:
            assert loop.time() < end, "commits not relayed"
            await asyncio.sleep(0.1)
        assert all(r.commits == 1 and r.cancels == 0 for r in fake.reservations.values())
    finally:
        for p in procs:
            p.stop()
        await muni.stop(0)
