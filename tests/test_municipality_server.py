"""The issuing server over real loopback gRPC with mTLS, playing the centre with the centre's
client certificate, the real document composer, and each storage backend."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import grpc.aio
import psycopg
import pytest
import pytest_asyncio
from google.protobuf import timestamp_pb2
from psycopg import sql

from konbini.clock import JST
from konbini.common.v1 import types_pb2
from konbini.errors import parse_rpc_error
from konbini.issuing.v1 import issuing_pb2, issuing_pb2_grpc
from konbini.pki import PkiDir, pki_init
from konbini.pki.docsign import verify_p1363
from konbini.pki.mtls import channel_credentials
from konbini.register.v1 import register_pb2
from konbini.seal import parse_metadata, subject_digest
from konbini.testing.v1 import testing_pb2, testing_pb2_grpc
from municipality.config import MunicipalityConfig
from municipality.sample import CHIYODA, IVS_NAME, KOFU, demo_dataset
from municipality.server import running

pytestmark = pytest.mark.asyncio(loop_scope="module")

K = types_pb2
TODAY = dt.date(2026, 5, 13)  # a Wednesday
NOON = dt.datetime(2026, 5, 13, 12, 0, tzinfo=JST)
MAINTENANCE = dt.date(2026, 5, 20)
RR = K.CERTIFICATE_KIND_RESIDENCE_RECORD
SEAL = K.CERTIFICATE_KIND_SEAL_REGISTRATION
TAX = K.CERTIFICATE_KIND_INCOME_TAX
FULL = K.CERTIFICATE_KIND_FAMILY_REGISTER_FULL
INDIVIDUAL = K.CERTIFICATE_KIND_FAMILY_REGISTER_INDIVIDUAL
HISTORY = K.CERTIFICATE_KIND_FAMILY_REGISTER_ADDRESS_HISTORY
NAMES = {r.id: r.name for m in demo_dataset(TODAY).municipalities for r in m.residents}
NAMES.update({m.id: m.name for r in demo_dataset(TODAY).municipalities[0].family_registers
              for m in r.members})


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PkiDir:
    path = tmp_path_factory.mktemp("pki")
    pki_init(path, now=dt.datetime.now(dt.UTC))
    return PkiDir(path)


@pytest.fixture(scope="module",
                params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def module_store_url(request: pytest.FixtureRequest,
                     tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fresh database per backend for this module's server."""
    if request.param == "sqlite":
        yield f"sqlite://{tmp_path_factory.mktemp('db') / 'municipality.db'}"
        return
    base = request.getfixturevalue("postgres_url")
    schema = f"test_{uuid.uuid4().hex[:12]}"
    yield f"{base}{'&' if '?' in base else '?'}schema={schema}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def server(pki: PkiDir, module_store_url: str) -> AsyncIterator[int]:
    config = MunicipalityConfig(
        tenants=(KOFU, CHIYODA), pki_dir=pki.root, server_name="kofu",
        store_url=module_store_url, test_mode=True,
        sweep_interval=dt.timedelta(hours=1),
    )
    async with running(config) as (port, _app):
        yield port


def _channel(pki: PkiDir, port: int, cert_key: tuple[bytes, bytes]) -> grpc.aio.Channel:
    creds = channel_credentials(pki.network_ca_cert.read_bytes(), *cert_key)
    return grpc.aio.secure_channel(f"localhost:{port}", creds)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def centre(pki: PkiDir, server: int) -> AsyncIterator[issuing_pb2_grpc.IssuingServiceStub]:
    async with _channel(pki, server, pki.centre_client.read()) as channel:
        yield issuing_pb2_grpc.IssuingServiceStub(channel)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def fixtures(pki: PkiDir, server: int
                   ) -> AsyncIterator[testing_pb2_grpc.FixtureServiceStub]:
    async with _channel(pki, server, pki.conformance_client.read()) as channel:
        yield testing_pb2_grpc.FixtureServiceStub(channel)


def ts(instant: dt.datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(instant)
    return stamp


async def set_clock(fixtures: Any, instant: dt.datetime) -> None:
    await fixtures.SetClock(testing_pb2.SetClockRequest(request_id=rid(), now=ts(instant)))


@pytest_asyncio.fixture(loop_scope="module", autouse=True)
async def fresh(fixtures: testing_pb2_grpc.FixtureServiceStub) -> None:
    """Every test starts from the demo dataset at noon on a weekday."""
    await fixtures.Reset(testing_pb2.ResetRequest(request_id=rid()))
    await fixtures.LoadDataset(testing_pb2.LoadDatasetRequest(
        request_id=rid(), replace=True,
        municipality=demo_dataset(TODAY, maintenance_day=MAINTENANCE)))
    await set_clock(fixtures, NOON)


def rid() -> str:
    return uuid.uuid4().hex


def code(value: str = KOFU) -> types_pb2.MunicipalityCode:
    return K.MunicipalityCode(value=value)


def prepare_request(serial: str, kind: int, options: types_pb2.CertificateOptions | None = None,
                    copies: int = 1, municipality: str = KOFU,
                    request_id: str | None = None) -> issuing_pb2.PrepareIssuanceRequest:
    return issuing_pb2.PrepareIssuanceRequest(
        request_id=request_id or rid(), municipality_code=code(municipality),
        card=issuing_pb2.CardReference(certificate_serial=serial), kind=kind,  # type: ignore[arg-type]
        options=options, copies=copies,
        origin=issuing_pb2.Origin(store_operator="seven", terminal_id="T0001",
                                  issuance_id="iss-1"))


async def refusal_of(call: Any) -> Any:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return parse_rpc_error(info.value)


def check_documents(pki: PkiDir, response: issuing_pb2.PrepareIssuanceResponse,
                    subjects: list[str], *, kind: int, municipality: str = KOFU) -> None:
    """Each copy's metadata is signed by the tenant's key and names exactly ``subjects``."""
    cert = pki.document_signer(municipality).load().certificate
    expected = subject_digest(municipality, [(s, NAMES_BY_CODE[municipality][s])
                                             for s in subjects])
    numbers = set()
    for index, document in enumerate(response.documents):
        assert verify_p1363(cert, document.signed_metadata, document.signature)
        metadata = parse_metadata(document)
        assert metadata.subject_digest == expected
        assert metadata.kind == kind
        assert metadata.reservation_id == response.reservation_id
        assert (metadata.copy_index, metadata.copy_count) == (index + 1, len(response.documents))
        assert document.pdf.startswith(b"%PDF")
        numbers.add(metadata.issue_number)
    assert len(numbers) == len(response.documents)


NAMES_BY_CODE = {
    m.tenant.code.value: {
        **{r.id: r.name for r in m.residents},
        **{mem.id: mem.name for reg in m.family_registers for mem in reg.members},
    }
    for m in demo_dataset(TODAY).municipalities
}


# -- refusals ----------------------------------------------------------------------------------
WIRE_REFUSALS = [
    ("SUBJECT_NOT_FOUND", "ffff", RR, None, 1),
    ("KIND_NOT_OFFERED", "z1", SEAL, None, 1),
    ("TOO_MANY_COPIES", "a1", RR, None, 4),
    ("UNDER_15", "a3", RR, None, 1),
    ("ADULT_WARD", "b1", SEAL, None, 1),
    ("SEAL_NOT_REGISTERED", "a2", SEAL, None, 1),
    ("SEAL_ABOLISHED", "d1", SEAL, None, 1),
    ("SUPPORT_MEASURE", "c7", RR, None, 1),
    ("SUPPORT_MEASURE", "e2", RR, K.CertificateOptions(residence_record=K.ResidenceRecordOptions(
        scope=K.HOUSEHOLD_SCOPE_WHOLE_HOUSEHOLD)), 1),
    ("MOVED_OUT", "c1", RR, None, 1),
    ("MOVING_OUT", "c2", RR, None, 1),
    ("MOVING_OUT", "e1", RR, K.CertificateOptions(residence_record=K.ResidenceRecordOptions(
        scope=K.HOUSEHOLD_SCOPE_WHOLE_HOUSEHOLD)), 1),
    ("DECEASED", "c3", RR, None, 1),
    ("MOVED_IN_TODAY", "c4", RR, None, 1),
    ("CHARACTERS_BEING_REGISTERED", "c5", RR, None, 1),
    ("REGISTER_CHANGE_PENDING", "c6", RR, None, 1),
    ("REGISTER_CHANGE_PENDING", "f1", FULL, None, 1),
    ("CHARACTERS_NOT_SUPPORTED", "h1", RR, None, 1),
    ("OPTION_NOT_OFFERED", "a1", RR, K.CertificateOptions(
        residence_record=K.ResidenceRecordOptions(show_individual_number=True)), 1),
    ("FISCAL_YEAR_NOT_OFFERED", "a1", TAX, K.CertificateOptions(
        income_tax=K.IncomeTaxOptions(fiscal_year=2024)), 1),
    ("FIELD_INVALID", "a1", RR, None, 0),
]


@pytest.mark.parametrize(("reason", "serial", "kind", "options", "copies"), WIRE_REFUSALS,
                         ids=[f"{r[0]}-{r[1]}" for r in WIRE_REFUSALS])
async def test_refusal_is_typed_and_reserves_nothing(
    centre: Any, reason: str, serial: str, kind: int,
    options: types_pb2.CertificateOptions | None, copies: int,
) -> None:
    municipality = CHIYODA if serial == "z1" else KOFU
    request = prepare_request(serial, kind, options, copies, municipality=municipality)
    parsed = await refusal_of(centre.PrepareIssuance(request))
    assert parsed.reason == reason
    if reason == "FIELD_INVALID":
        assert [v.field for v in parsed.violations] == ["copies"]
    missing = await refusal_of(centre.GetReservation(issuing_pb2.GetReservationRequest(
        municipality_code=code(municipality), prepare_request_id=request.request_id)))
    assert missing.reason == "RESERVATION_NOT_FOUND"  # REFUSE-NO-STATE


async def test_hours_closed_day_and_outside_hours(centre: Any, fixtures: Any) -> None:
    await set_clock(fixtures, NOON.replace(hour=18))
    parsed = await refusal_of(centre.PrepareIssuance(prepare_request("a1", FULL)))
    assert parsed.reason == "OUTSIDE_SERVICE_HOURS"
    await set_clock(fixtures, dt.datetime.combine(MAINTENANCE, dt.time(12), JST))
    parsed = await refusal_of(centre.PrepareIssuance(prepare_request("a1", RR)))
    assert parsed.reason == "SERVICE_CLOSED_DAY"
    await set_clock(fixtures, dt.datetime(2026, 12, 31, 12, tzinfo=JST))
    parsed = await refusal_of(centre.PrepareIssuance(prepare_request("a1", RR)))
    assert parsed.reason == "SERVICE_CLOSED_DAY"


# -- kinds and options -------------------------------------------------------------------------
async def catalogue_refs(centre: Any, serial: str, kind: int) -> dict[str, str]:
    reply = await centre.GetCatalogue(issuing_pb2.GetCatalogueRequest(
        municipality_code=code(), card=issuing_pb2.CardReference(certificate_serial=serial)))
    entry = next(e for e in reply.entries if e.kind == kind)
    return {p.display_name: p.ref for p in entry.selectable}


async def test_residence_record_self_whole_and_selected(pki: PkiDir, centre: Any) -> None:
    alone = await centre.PrepareIssuance(prepare_request("a1", RR, copies=2))
    check_documents(pki, alone, ["r-taro"], kind=RR)
    assert alone.fee.yen == 400 and len(alone.documents) == 2
    whole = await centre.PrepareIssuance(prepare_request("a1", RR, K.CertificateOptions(
        residence_record=K.ResidenceRecordOptions(
            scope=K.HOUSEHOLD_SCOPE_WHOLE_HOUSEHOLD, show_household_head=True,
            show_registered_domicile=True))))
    check_documents(pki, whole, ["r-taro", "r-hanako", "r-ichiro"], kind=RR)
    refs = await catalogue_refs(centre, "a1", RR)
    chosen = await centre.PrepareIssuance(prepare_request(
        "a1", K.CERTIFICATE_KIND_RESIDENCE_RECORD_ITEMS, K.CertificateOptions(
            residence_record=K.ResidenceRecordOptions(
                scope=K.HOUSEHOLD_SCOPE_SELECTED_MEMBERS, member_refs=[refs["葛西 花子"]]))))
    check_documents(pki, chosen, ["r-hanako"], kind=K.CERTIFICATE_KIND_RESIDENCE_RECORD_ITEMS)


async def test_seal_and_tax(pki: PkiDir, centre: Any) -> None:
    seal = await centre.PrepareIssuance(prepare_request("a1", SEAL))
    check_documents(pki, seal, ["r-taro"], kind=SEAL)
    tax = await centre.PrepareIssuance(prepare_request("a1", TAX, K.CertificateOptions(
        income_tax=K.IncomeTaxOptions(fiscal_year=2025))))
    check_documents(pki, tax, ["r-taro"], kind=TAX)


async def test_family_register_kinds(pki: PkiDir, centre: Any) -> None:
    everyone = ["m-taro", "m-hanako", "m-ichiro", "m-jiro"]
    full = await centre.PrepareIssuance(prepare_request("a1", FULL))
    check_documents(pki, full, everyone, kind=FULL)
    history = await centre.PrepareIssuance(prepare_request("a1", HISTORY))
    check_documents(pki, history, everyone, kind=HISTORY)
    own = await centre.PrepareIssuance(prepare_request("g1", INDIVIDUAL))  # use registration
    check_documents(pki, own, ["m-jiro"], kind=INDIVIDUAL)
    refs = await catalogue_refs(centre, "g1", INDIVIDUAL)
    chosen = await centre.PrepareIssuance(prepare_request("g1", INDIVIDUAL, K.CertificateOptions(
        family_register=K.FamilyRegisterOptions(member_refs=[refs[IVS_NAME]]))))
    check_documents(pki, chosen, ["m-taro"], kind=INDIVIDUAL)


# -- two phases, idempotency, expiry -----------------------------------------------------------
async def test_retry_returns_the_same_reservation_and_bytes(centre: Any) -> None:
    request = prepare_request("a1", RR)
    first = await centre.PrepareIssuance(request)
    again = await centre.PrepareIssuance(request)
    assert again.SerializeToString() == first.SerializeToString()
    changed = prepare_request("a1", RR, copies=2, request_id=request.request_id)
    parsed = await refusal_of(centre.PrepareIssuance(changed))
    assert parsed.reason == "REQUEST_ID_REUSED"
    commit = issuing_pb2.CommitIssuanceRequest(
        request_id=rid(), municipality_code=code(), reservation_id=first.reservation_id)
    done = await centre.CommitIssuance(commit)
    assert await centre.CommitIssuance(commit) == done
    assert done.state == K.ISSUANCE_STATE_COMMITTED
    records = await centre.ListIssueRecords(issuing_pb2.ListIssueRecordsRequest(
        municipality_code=code(), day=K.Date(year=2026, month=5, day=13)))
    assert [r.reservation_id for r in records.records] == [first.reservation_id]
    assert list(records.records[0].issue_numbers) == list(done.issue_numbers)
    assert records.records[0].fee.yen == 200 and records.records[0].store_operator == "seven"
    parsed = await refusal_of(centre.CancelIssuance(issuing_pb2.CancelIssuanceRequest(
        request_id=rid(), municipality_code=code(), reservation_id=first.reservation_id)))
    assert parsed.reason == "RESERVATION_COMMITTED"


async def test_cancel_is_final_and_idempotent(centre: Any) -> None:
    prepared = await centre.PrepareIssuance(prepare_request("a1", RR))
    cancel = issuing_pb2.CancelIssuanceRequest(
        request_id=rid(), municipality_code=code(), reservation_id=prepared.reservation_id)
    assert (await centre.CancelIssuance(cancel)).state == K.ISSUANCE_STATE_CANCELLED
    assert (await centre.CancelIssuance(cancel)).state == K.ISSUANCE_STATE_CANCELLED
    parsed = await refusal_of(centre.CommitIssuance(issuing_pb2.CommitIssuanceRequest(
        request_id=rid(), municipality_code=code(), reservation_id=prepared.reservation_id)))
    assert parsed.reason == "RESERVATION_CANCELLED"
    state = await centre.GetReservation(issuing_pb2.GetReservationRequest(
        municipality_code=code(), reservation_id=prepared.reservation_id))
    assert state.state == K.ISSUANCE_STATE_CANCELLED


async def test_expired_reservation_never_commits(centre: Any, fixtures: Any) -> None:
    request = prepare_request("a1", RR)
    prepared = await centre.PrepareIssuance(request)
    expires = prepared.expires_at.ToDatetime(tzinfo=dt.UTC)
    # The test clock keeps running from NOON, so allow for the time the test took.
    assert dt.timedelta(minutes=10) <= expires - NOON < dt.timedelta(minutes=10, seconds=30)
    await set_clock(fixtures, expires + dt.timedelta(seconds=1))
    parsed = await refusal_of(centre.CommitIssuance(issuing_pb2.CommitIssuanceRequest(
        request_id=rid(), municipality_code=code(), reservation_id=prepared.reservation_id)))
    assert parsed.reason == "RESERVATION_EXPIRED"
    found = await centre.GetReservation(issuing_pb2.GetReservationRequest(
        municipality_code=code(), prepare_request_id=request.request_id))
    assert (found.reservation_id, found.state) == (prepared.reservation_id,
                                                   K.ISSUANCE_STATE_EXPIRED)
    cancelled = await centre.CancelIssuance(issuing_pb2.CancelIssuanceRequest(
        request_id=rid(), municipality_code=code(), reservation_id=prepared.reservation_id))
    assert cancelled.state == K.ISSUANCE_STATE_EXPIRED


# -- tenancy, authorization, fresh data --------------------------------------------------------
async def test_tenant_isolation(centre: Any) -> None:
    # z1 is Chiyoda's card: through Kofu's code it finds nothing, and the reverse.
    parsed = await refusal_of(centre.PrepareIssuance(prepare_request("z1", RR)))
    assert parsed.reason == "SUBJECT_NOT_FOUND"
    parsed = await refusal_of(centre.PrepareIssuance(prepare_request("a1", RR,
                                                                     municipality=CHIYODA)))
    assert parsed.reason == "SUBJECT_NOT_FOUND"
    ok = await centre.PrepareIssuance(prepare_request("z1", RR, municipality=CHIYODA))
    cert = ok.documents[0]
    assert parse_metadata(cert).municipality_code.value == CHIYODA
    # A reservation of one tenant is invisible through the other.
    parsed = await refusal_of(centre.GetReservation(issuing_pb2.GetReservationRequest(
        municipality_code=code(), reservation_id=ok.reservation_id)))
    assert parsed.reason == "RESERVATION_NOT_FOUND"
    parsed = await refusal_of(centre.PrepareIssuance(prepare_request("a1", RR,
                                                                     municipality="131041")))
    assert parsed.reason == "TENANT_NOT_SERVED"


async def test_only_the_centre_may_call(pki: PkiDir, server: int) -> None:
    terminal = pki.terminal_client("seven", "T0001").read()
    async with _channel(pki, server, terminal) as channel:
        stub = issuing_pb2_grpc.IssuingServiceStub(channel)
        parsed = await refusal_of(stub.PrepareIssuance(prepare_request("a1", RR)))
    assert parsed.code == grpc.StatusCode.PERMISSION_DENIED


async def test_a_register_change_shows_in_the_next_prepare(
    pki: PkiDir, centre: Any, fixtures: Any
) -> None:
    before = await centre.PrepareIssuance(prepare_request("a1", RR))
    check_documents(pki, before, ["r-taro"], kind=RR)
    data = demo_dataset(TODAY).municipalities[0]
    renamed = register_pb2.Resident()
    renamed.CopyFrom(data.residents[0])
    renamed.name = "葛西 太朗"
    update = register_pb2.Dataset(municipalities=[register_pb2.MunicipalityData(
        tenant=data.tenant, residents=[renamed])])
    await fixtures.LoadDataset(testing_pb2.LoadDatasetRequest(request_id=rid(),
                                                              municipality=update))
    after = await centre.PrepareIssuance(prepare_request("a1", RR))
    metadata = parse_metadata(after.documents[0])
    assert metadata.subject_digest == subject_digest(KOFU, [("r-taro", "葛西 太朗")])
    moved = register_pb2.Resident()
    moved.CopyFrom(renamed)
    moved.status = register_pb2.RESIDENT_STATUS_MOVED_OUT
    await fixtures.LoadDataset(testing_pb2.LoadDatasetRequest(
        request_id=rid(), municipality=register_pb2.Dataset(municipalities=[
            register_pb2.MunicipalityData(tenant=data.tenant, residents=[moved])])))
    parsed = await refusal_of(centre.PrepareIssuance(prepare_request("a1", RR)))
    assert parsed.reason == "MOVED_OUT"


async def test_card_holder_and_use_registration(centre: Any) -> None:
    holder = await centre.GetCardHolder(issuing_pb2.GetCardHolderRequest(
        municipality_code=code(CHIYODA), card=issuing_pb2.CardReference(certificate_serial="z1")))
    assert holder.name == "千代田 太郎"

    def link(serial: str, head: str, registration: str) -> issuing_pb2.LinkFamilyRegisterRequest:
        return issuing_pb2.LinkFamilyRegisterRequest(
            request_id=rid(), municipality_code=code(),
            card=issuing_pb2.CardReference(certificate_serial=serial),
            registered_domicile="山梨県甲府市相生二丁目1番", head_of_register=head,
            residence_municipality_code=code(CHIYODA), holder_name="葛西 花子",
            holder_birth_date=K.Date(year=1982, month=7, day=7), registration_id=registration)

    rejected = await centre.LinkFamilyRegister(link("99", "山田 一", "reg-1"))
    assert rejected.decision == issuing_pb2.LINK_DECISION_REJECTED
    linked = await centre.LinkFamilyRegister(link("99", "葛西 太郎", "reg-2"))
    assert linked.decision == issuing_pb2.LINK_DECISION_LINKED
    decision = await centre.GetFamilyRegisterLink(issuing_pb2.GetFamilyRegisterLinkRequest(
        municipality_code=code(), registration_id="reg-2"))
    assert decision.decision == issuing_pb2.LINK_DECISION_LINKED
    refs = await catalogue_refs(centre, "99", INDIVIDUAL)
    assert "葛西 花子" in refs  # the linked card now reaches the register
