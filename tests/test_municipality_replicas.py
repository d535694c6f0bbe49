"""Two issuing-server processes sharing one PostgreSQL schema, under 200 concurrent prepares
(XTALK-SUBJECT, ONCE-REQUEST-ID, DURABLE-SHARED): every document names the right subject and
every committed request_id has exactly one issue record."""

from __future__ import annotations

import asyncio
import datetime as dt
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc.aio
import psycopg
import pytest
import pytest_asyncio
from google.protobuf import timestamp_pb2
from psycopg import sql

from konbini.clock import JST
from konbini.common.v1 import types_pb2
from konbini.issuing.v1 import issuing_pb2, issuing_pb2_grpc
from konbini.pki import PkiDir, pki_init
from konbini.pki.docsign import verify_p1363
from konbini.pki.mtls import channel_credentials
from konbini.register.v1 import register_pb2
from konbini.seal import parse_metadata, subject_digest
from konbini.testing.v1 import testing_pb2, testing_pb2_grpc
from municipality.sample import KOFU, kofu_tenant

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

K = types_pb2
R = register_pb2
RESIDENTS = 200
DUPLICATED = 20  # request_ids sent to both processes at once
NOON = dt.datetime(2026, 5, 13, 12, 0, tzinfo=JST)
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PkiDir:
    path = tmp_path_factory.mktemp("pki")
    pki_init(path, now=dt.datetime.now(dt.UTC))
    return PkiDir(path)


@pytest.fixture
def shared_schema_url(postgres_url: str) -> Iterator[str]:
    schema = f"test_{uuid.uuid4().hex[:12]}"
    yield f"{postgres_url}{'&' if '?' in postgres_url else '?'}schema={schema}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


async def start_process(config: Path, log: Path) -> tuple[asyncio.subprocess.Process, int]:
    with log.open("wb") as stderr:  # the server's log, for a failing run to show
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "municipality.cli", "serve", "--config", str(config),
            cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=stderr)
    assert proc.stdout is not None
    line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
    assert line.startswith("listening on "), line
    return proc, int(line.rsplit(":", 1)[1])


@pytest_asyncio.fixture
async def two_servers(pki: PkiDir, shared_schema_url: str, tmp_path: Path
                      ) -> AsyncIterator[list[int]]:
    config = tmp_path / "municipality.toml"
    config.write_text(
        f'[server]\nbind = "127.0.0.1:0"\ntest_mode = true\n'
        f'[pki]\ndir = "{pki.root}"\nserver_name = "kofu"\n'
        f'[store]\nurl = "{shared_schema_url}"\n'
        f'[tenants]\ncodes = ["{KOFU}"]\n', encoding="utf-8")
    # The first creates the schema (migrations); the second then finds it applied.
    first = await start_process(config, tmp_path / "server-1.log")
    second = await start_process(config, tmp_path / "server-2.log")
    procs = [first[0], second[0]]
    try:
        yield [first[1], second[1]]
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        codes = [await asyncio.wait_for(proc.wait(), 30) for proc in procs]
        assert codes == [0, 0]  # graceful shutdown on SIGTERM


def dataset() -> register_pb2.Dataset:
    residents = [
        R.Resident(id=f"r-{i:03d}", name=f"住民 {i:03d}号", household_id=f"h-{i:03d}",
                   birth_date=K.Date(year=1970 + i % 30, month=1 + i % 12, day=1 + i % 28),
                   address=f"山梨県甲府市丸の内{i}番", relationship="世帯主")
        for i in range(RESIDENTS)
    ]
    bindings = [R.CardBinding(certificate_serial=f"c{i:03x}", resident_id=f"r-{i:03d}")
                for i in range(RESIDENTS)]
    return R.Dataset(municipalities=[R.MunicipalityData(
        tenant=kofu_tenant(), residents=residents, card_bindings=bindings)])


def prepare(i: int, request_id: str) -> issuing_pb2.PrepareIssuanceRequest:
    return issuing_pb2.PrepareIssuanceRequest(
        request_id=request_id, municipality_code=K.MunicipalityCode(value=KOFU),
        card=issuing_pb2.CardReference(certificate_serial=f"c{i:03x}"),
        kind=K.CERTIFICATE_KIND_RESIDENCE_RECORD, copies=1)


async def test_200_concurrent_prepares_across_two_processes(pki: PkiDir,
                                                            two_servers: list[int]) -> None:
    creds = channel_credentials(pki.network_ca_cert.read_bytes(), *pki.centre_client.read())
    suite = channel_credentials(pki.network_ca_cert.read_bytes(),
                                *pki.conformance_client.read())
    channels = [grpc.aio.secure_channel(f"localhost:{port}", creds) for port in two_servers]
    stubs = [issuing_pb2_grpc.IssuingServiceStub(ch) for ch in channels]
    async with grpc.aio.secure_channel(f"localhost:{two_servers[0]}", suite) as fixture_channel:
        fixtures = testing_pb2_grpc.FixtureServiceStub(fixture_channel)
        await fixtures.LoadDataset(testing_pb2.LoadDatasetRequest(
            request_id="load", replace=True, municipality=dataset()))
        noon = timestamp_pb2.Timestamp()
        noon.FromDatetime(NOON)
        await fixtures.SetClock(testing_pb2.SetClockRequest(request_id="clock", now=noon))
    try:
        request_ids = [f"prep-{i:03d}" for i in range(RESIDENTS)]
        started = time.perf_counter()
        calls = [stubs[i % 2].PrepareIssuance(prepare(i, request_ids[i]))
                 for i in range(RESIDENTS)]
        # The same request_id through the other process at the same time.
        calls += [stubs[(i + 1) % 2].PrepareIssuance(prepare(i, request_ids[i]))
                  for i in range(DUPLICATED)]
        replies = await asyncio.gather(*calls)
        prepared_s = time.perf_counter() - started
        signer = pki.document_signer(KOFU).load().certificate
        for i in range(RESIDENTS):
            reply: Any = replies[i]
            document = reply.documents[0]
            assert verify_p1363(signer, document.signed_metadata, document.signature)
            metadata = parse_metadata(document)
            assert metadata.subject_digest == subject_digest(
                KOFU, [(f"r-{i:03d}", f"住民 {i:03d}号")]), f"cross-talk at {i}"
            assert metadata.reservation_id == reply.reservation_id
        for i in range(DUPLICATED):
            assert replies[RESIDENTS + i].SerializeToString() == replies[i].SerializeToString()
        # Commit every reservation through the OTHER process, half of them twice.
        started = time.perf_counter()
        commits = []
        for i in range(RESIDENTS):
            commit = issuing_pb2.CommitIssuanceRequest(
                request_id=f"commit-{i:03d}", municipality_code=K.MunicipalityCode(value=KOFU),
                reservation_id=replies[i].reservation_id)
            commits.append(stubs[(i + 1) % 2].CommitIssuance(commit))
            if i % 2:
                commits.append(stubs[i % 2].CommitIssuance(commit))
        done = await asyncio.gather(*commits)
        committed_s = time.perf_counter() - started
        assert all(d.state == K.ISSUANCE_STATE_COMMITTED for d in done)
        records: list[issuing_pb2.IssueRecord] = []
        token = ""
        while True:
            page = await stubs[0].ListIssueRecords(issuing_pb2.ListIssueRecordsRequest(
                municipality_code=K.MunicipalityCode(value=KOFU),
                day=K.Date(year=2026, month=5, day=13), page_size=64, page_token=token))
            records.extend(page.records)
            token = page.next_page_token
            if not token:
                break
        ids = [r.reservation_id for r in records]
        assert sorted(ids) == sorted(replies[i].reservation_id for i in range(RESIDENTS))
        numbers = [n for r in records for n in r.issue_numbers]
        assert len(numbers) == len(set(numbers)) == RESIDENTS
        print(f"\n{RESIDENTS}+{DUPLICATED} prepares over 2 processes: {prepared_s:.1f} s; "
              f"{len(commits)} commits: {committed_s:.1f} s")
    finally:
        for channel in channels:
            await channel.close()
