"""PlatformService over a real loopback mTLS server: tenants, roles, card checks as answers,
idempotent binding, settlement and the trust list."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
import grpc.aio
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding

from centre.audit import AUDIT_MIGRATIONS, AuditLog, verify
from centre.bindings import BINDINGS_MIGRATIONS
from centre.platform import PlatformServicer
from centre.trustpub import TRUSTPUB_MIGRATIONS, TrustListPublisher
from konbini.clock import SystemClock
from konbini.common.v1 import types_pb2
from konbini.contracts import reason_enum_value
from konbini.errors import parse_rpc_error
from konbini.pki import CardVerifier, CrlFile, PkiDir, pki_init, verify_signed_trust_list_at
from konbini.pki.mtls import channel_credentials, server_credentials
from konbini.pki.trustlist import from_proto
from konbini.pki.x509util import load_certificate
from konbini.platform.v1 import platform_pb2, platform_pb2_grpc
from konbini.server import ServerOptions, ServiceBinding, contract_authorization, create_server
from konbini.storage import AsyncStore, open_store
from konbini.storage.idempotency import idempotency_migration

NOW = dt.datetime.now(dt.UTC)
KOFU, CHIYODA = "192015", "131016"
MIGRATIONS = [idempotency_migration(1), *BINDINGS_MIGRATIONS, *AUDIT_MIGRATIONS,
              *TRUSTPUB_MIGRATIONS]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PkiDir:
    path = tmp_path_factory.mktemp("pki")
    pki_init(path, now=NOW - dt.timedelta(days=1))
    return PkiDir(path)


def _card(pki: PkiDir, *, expired: bool = False) -> tuple[bytes, rsa.RSAPrivateKey]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = pki.jpki_ca().issue_at(NOW, key.public_key(), expired=expired)
    return cert.public_bytes(Encoding.DER), key


def _ledger(tx: object, code: str, start: int, end: int) -> list[dict[str, object]]:
    rows = [
        {"municipality_code": KOFU, "kind": types_pb2.CERTIFICATE_KIND_RESIDENCE_RECORD,
         "store_operator": "seven", "copies": 2, "fee_yen": 400, "committed_at": start + 1,
         "issuance_id": "i1"},
        {"municipality_code": CHIYODA, "kind": types_pb2.CERTIFICATE_KIND_INCOME_TAX,
         "store_operator": "lawson", "copies": 1, "fee_yen": 300, "committed_at": start + 2,
         "issuance_id": "i2"},
    ]
    return [r for r in rows if r["municipality_code"] == code]


@asynccontextmanager
async def _platform(
    pki: PkiDir, tmp_path: Path
) -> AsyncIterator[tuple[Callable[[str], platform_pb2_grpc.PlatformServiceStub], AuditLog]]:
    store = open_store(f"sqlite://{tmp_path / 'centre.db'}", migrations=MIGRATIONS)
    signer = pki.trust_list_signer.load()
    audit = AuditLog(store, signer.key, signer.certificate, checkpoint_every=2)  # type: ignore[arg-type]
    verifier = CardVerifier([load_certificate(pki.jpki_ca_cert)], CrlFile(pki.jpki_crl),
                            dt.timedelta(hours=1))
    servicer = PlatformServicer(AsyncStore(store), verifier, SystemClock(),
                                TrustListPublisher(pki, store, SystemClock()), _ledger, 120,
                                audit)
    cert, key = pki.centre_server.read()
    ca = pki.network_ca_cert.read_bytes()
    server, port, _health = create_server(
        [ServiceBinding(platform_pb2_grpc.add_PlatformServiceServicer_to_server, servicer,
                        "konbini.platform.v1.PlatformService")],
        ServerOptions(credentials=server_credentials(cert, key, ca),
                      interceptors=[contract_authorization()]),
    )
    await server.start()
    channels: list[grpc.aio.Channel] = []

    def stub(who: str) -> platform_pb2_grpc.PlatformServiceStub:
        paths = (pki.municipality_client(who) if who.isdigit()
                 else pki.terminal_client(*who.split(":")))
        c, k = paths.read()
        channel = grpc.aio.secure_channel(f"127.0.0.1:{port}", channel_credentials(ca, c, k),
                                          options=[("grpc.ssl_target_name_override",
                                                    "localhost")])
        channels.append(channel)
        return platform_pb2_grpc.PlatformServiceStub(channel)

    try:
        yield stub, audit
    finally:
        for channel in channels:
            await channel.close()
        await server.stop(None)
        store.close()


def _bind(request_id: str, code: str, der: bytes) -> platform_pb2.BindCardRequest:
    return platform_pb2.BindCardRequest(
        request_id=request_id, municipality_code=types_pb2.MunicipalityCode(value=code),
        certificate_der=der)


async def test_binding_is_tenant_scoped_moves_and_is_idempotent(
    pki: PkiDir, tmp_path: Path
) -> None:
    der, _ = _card(pki)
    async with _platform(pki, tmp_path) as (stub, audit):
        kofu, chiyoda = stub(KOFU), stub(CHIYODA)
        first = await kofu.BindCard(_bind("b-1", KOFU, der))
        assert first.certificate_serial and not first.previous_municipality_code.value
        assert await kofu.BindCard(_bind("b-1", KOFU, der)) == first  # a retry: same answer
        with pytest.raises(grpc.aio.AioRpcError) as reused:
            await kofu.BindCard(_bind("b-1", KOFU, _card(pki)[0]))
        assert parse_rpc_error(reused.value).reason == "REQUEST_ID_REUSED"
        # Kofu cannot act for Chiyoda.
        with pytest.raises(grpc.aio.AioRpcError) as foreign:
            await kofu.BindCard(_bind("b-2", CHIYODA, der))
        parsed = parse_rpc_error(foreign.value)
        assert (parsed.code, parsed.reason) == (grpc.StatusCode.PERMISSION_DENIED,
                                                "TENANT_NOT_SERVED")
        # The resident moves to Chiyoda: the card moves, Kofu's unbind no longer finds it.
        moved = await chiyoda.BindCard(_bind("c-1", CHIYODA, der))
        assert moved.previous_municipality_code.value == KOFU
        unbind = platform_pb2.UnbindCardRequest(
            request_id="u-1", municipality_code=types_pb2.MunicipalityCode(value=KOFU),
            certificate_serial=first.certificate_serial)
        assert (await kofu.UnbindCard(unbind)).removed is False
        unbind.request_id, unbind.municipality_code.value = "u-2", CHIYODA
        assert (await chiyoda.UnbindCard(unbind)).removed is True
        report = verify(audit.store, load_certificate(pki.trust_list_signer.cert),
                        checkpoint_every=2)
        assert report.ok and report.entries == 4, report.problems


async def test_a_terminal_certificate_is_refused(pki: PkiDir, tmp_path: Path) -> None:
    async with _platform(pki, tmp_path) as (stub, _):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub("seven:T0001").GetTrustList(platform_pb2.GetTrustListRequest())
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_validate_certificate_answers_with_reasons(pki: PkiDir, tmp_path: Path) -> None:
    good, key = _card(pki)
    expired, _ = _card(pki, expired=True)
    revoked, _ = _card(pki)
    ca = pki.jpki_ca()
    from cryptography import x509

    ca.revoke_at(NOW, x509.load_der_x509_certificate(revoked).serial_number)
    ca.publish_crl_at(NOW, dt.timedelta(days=1))
    signed = b"counter check"
    signature = key.sign(signed, padding.PKCS1v15(), hashes.SHA256())
    async with _platform(pki, tmp_path) as (stub, _):
        kofu = stub(KOFU)

        async def check(der: bytes, data: bytes = b"", sig: bytes = b"") -> tuple[bool, int]:
            answer = await kofu.ValidateCertificate(platform_pb2.ValidateCertificateRequest(
                certificate_der=der, signed_data=data, signature=sig))
            return answer.valid, answer.reason

        assert await check(good) == (True, 0)
        assert await check(good, signed, signature) == (True, 0)
        assert await check(good, b"other bytes", signature) == (
            False, reason_enum_value("CARD_SIGNATURE_INVALID"))
        assert await check(expired) == (False, reason_enum_value("CARD_EXPIRED"))
        assert await check(revoked) == (False, reason_enum_value("CARD_REVOKED"))
        with pytest.raises(grpc.aio.AioRpcError) as refused:  # a revoked card is not bound
            await kofu.BindCard(_bind("r-1", KOFU, revoked))
        assert parse_rpc_error(refused.value).reason == "CARD_REVOKED"


async def test_settlement_and_trust_list(pki: PkiDir, tmp_path: Path) -> None:
    today = dt.datetime.now(dt.UTC).date()
    day = types_pb2.Date(year=today.year, month=today.month, day=today.day)
    async with _platform(pki, tmp_path) as (stub, _):
        kofu = stub(KOFU)
        report = await kofu.GetSettlementReport(platform_pb2.GetSettlementReportRequest(
            municipality_code=types_pb2.MunicipalityCode(value=KOFU), day=day))
        assert [(ln.store_operator, ln.copies) for ln in report.lines] == [("seven", 2)]
        assert (report.total_fees.yen, report.total_commissions.yen) == (400, 240)
        assert report.csv.startswith(b"kind,store_operator")
        with pytest.raises(grpc.aio.AioRpcError) as foreign:
            await kofu.GetSettlementReport(platform_pb2.GetSettlementReportRequest(
                municipality_code=types_pb2.MunicipalityCode(value=CHIYODA), day=day))
        assert parse_rpc_error(foreign.value).reason == "TENANT_NOT_SERVED"
        listed = (await kofu.GetTrustList(platform_pb2.GetTrustListRequest())).trust_list
        trust = verify_signed_trust_list_at(from_proto(listed),
                                            [load_certificate(pki.docsign_ca.cert)], NOW)
        assert trust.sequence == 1 and trust.scramble_keys
