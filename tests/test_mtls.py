"""mTLS over real loopback grpc.aio servers: authorization by the role in the certificate."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest

from konbini.errors import parse_rpc_error
from konbini.pki import PkiDir, Role, pki_init
from konbini.pki.mtls import (
    DEV_IDENTITY_METADATA,
    AuthorizationInterceptor,
    channel_credentials,
    peer_identity,
    server_credentials,
)

TERMINAL_ONLY = "konbini.test.TerminalOnly"
MUNICIPALITY_ONLY = "konbini.test.MunicipalityOnly"
OPEN = "konbini.test.Open"  # not in the map: any authenticated peer
PUBLIC = "konbini.test.Public"  # no certificate needed
ROLES = {
    TERMINAL_ONLY: frozenset({Role.TERMINAL}),
    MUNICIPALITY_ONLY: frozenset({Role.MUNICIPALITY, Role.CENTRE}),
}


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PkiDir:
    path = tmp_path_factory.mktemp("pki")
    pki_init(path, now=dt.datetime.now(dt.UTC))
    return PkiDir(path)


async def whoami(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    identity = peer_identity(context)
    return f"{identity.role.value}|{identity.id}|{','.join(identity.municipality_codes)}".encode()


async def count(request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
    identity = peer_identity(context)
    for i in range(3):
        yield f"{identity.id}:{i}".encode()


async def ping(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    return b"pong"


class Handler(grpc.GenericRpcHandler):
    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        service, _, method = details.method.lstrip("/").partition("/")
        if service not in (TERMINAL_ONLY, MUNICIPALITY_ONLY, OPEN, PUBLIC):
            return None
        if method == "WhoAmI":
            return grpc.unary_unary_rpc_method_handler(whoami)
        if method == "Count":
            return grpc.unary_stream_rpc_method_handler(count)
        if method == "Ping":
            return grpc.unary_unary_rpc_method_handler(ping)
        return None


async def start_server(
    pki: PkiDir, *, require_client_auth: bool = True, insecure_dev: bool = False,
    tls: bool = True,
) -> tuple[grpc.aio.Server, int]:
    server = grpc.aio.server(interceptors=[
        AuthorizationInterceptor(ROLES, insecure_dev, public_services=frozenset({PUBLIC}))
    ])
    server.add_generic_rpc_handlers([Handler()])
    if tls:
        cert, key = pki.municipality_server("kofu").read()
        creds = server_credentials(cert, key, pki.network_ca_cert.read_bytes(),
                                   require_client_auth=require_client_auth)
        port = server.add_secure_port("127.0.0.1:0", creds)
    else:
        port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, port


async def call(
    port: int, ca: bytes | None, pair: tuple[bytes, bytes] | None, service: str,
    method: str = "WhoAmI", metadata: tuple[tuple[str, str], ...] = (),
) -> bytes | list[bytes]:
    if ca is None:
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    else:
        cert, key = pair if pair else (None, None)
        creds = channel_credentials(ca, cert, key)
        # The server certificate names localhost; connect by IP with that name checked.
        channel = grpc.aio.secure_channel(
            f"127.0.0.1:{port}", creds, options=[("grpc.ssl_target_name_override", "localhost")]
        )
    async with channel:
        if method == "Count":
            stream = channel.unary_stream(f"/{service}/Count")
            return [m async for m in stream(b"", timeout=10, metadata=metadata)]
        return await channel.unary_unary(f"/{service}/{method}")(b"", timeout=10,
                                                                   metadata=metadata)


def run(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(coro)


def test_roles_are_enforced(pki: PkiDir) -> None:
    ca = pki.network_ca_cert.read_bytes()
    terminal = pki.terminal_client("seven", "T0001").read()
    municipality = pki.municipality_client("192015").read()
    centre = pki.centre_client.read()

    async def scenario() -> None:
        server, port = await start_server(pki)
        try:
            assert await call(port, ca, terminal, TERMINAL_ONLY) == b"terminal|T0001|"
            assert await call(port, ca, municipality, MUNICIPALITY_ONLY) == \
                b"municipality|192015|192015"
            assert await call(port, ca, centre, MUNICIPALITY_ONLY) == b"centre|centre|"
            assert await call(port, ca, terminal, OPEN) == b"terminal|T0001|"
            for pair, service in [(terminal, MUNICIPALITY_ONLY), (municipality, TERMINAL_ONLY)]:
                for method in ("WhoAmI", "Count"):
                    with pytest.raises(grpc.aio.AioRpcError) as exc:
                        await call(port, ca, pair, service, method)
                    parsed = parse_rpc_error(exc.value)
                    assert parsed.code is grpc.StatusCode.PERMISSION_DENIED
                    assert parsed.reason == "CALLER_NOT_ALLOWED"
                    assert parsed.domain == "konbini-kofu.dev"
            assert await call(port, ca, terminal, TERMINAL_ONLY, "Count") == \
                [b"T0001:0", b"T0001:1", b"T0001:2"]
        finally:
            await server.stop(None)

    run(scenario())


def test_client_without_certificate_is_refused(pki: PkiDir) -> None:
    ca = pki.network_ca_cert.read_bytes()

    async def scenario() -> None:
        server, port = await start_server(pki)
        try:
            # The TLS handshake itself fails: the server requires a client certificate.
            with pytest.raises(grpc.aio.AioRpcError) as exc:
                await call(port, ca, None, OPEN)
            assert exc.value.code() is grpc.StatusCode.UNAVAILABLE
        finally:
            await server.stop(None)
        server, port = await start_server(pki, require_client_auth=False)
        try:
            # A server that does not ask for certificates: the interceptor refuses the call.
            with pytest.raises(grpc.aio.AioRpcError) as exc:
                await call(port, ca, None, TERMINAL_ONLY)
            parsed = parse_rpc_error(exc.value)
            assert parsed.code is grpc.StatusCode.UNAUTHENTICATED
            assert parsed.reason == "CLIENT_CERTIFICATE_REQUIRED"
            with pytest.raises(grpc.aio.AioRpcError) as exc:
                await call(port, ca, None, OPEN)
            assert exc.value.code() is grpc.StatusCode.UNAUTHENTICATED
            with pytest.raises(grpc.aio.AioRpcError) as exc:  # metadata is no identity here
                await call(port, ca, None, TERMINAL_ONLY,
                           metadata=((DEV_IDENTITY_METADATA, "urn:konbini:terminal:x:T1"),))
            assert exc.value.code() is grpc.StatusCode.UNAUTHENTICATED
            assert await call(port, ca, None, PUBLIC, "Ping") == b"pong"
        finally:
            await server.stop(None)

    run(scenario())


def test_certificate_from_another_ca_is_refused(pki: PkiDir, tmp_path: Path) -> None:
    other = PkiDir(tmp_path / "other")
    pki_init(other.root, now=dt.datetime.now(dt.UTC))
    ca = pki.network_ca_cert.read_bytes()
    stranger = other.terminal_client("seven", "T0001").read()

    async def scenario() -> None:
        server, port = await start_server(pki)
        try:
            with pytest.raises(grpc.aio.AioRpcError) as exc:
                await call(port, ca, stranger, TERMINAL_ONLY)
            assert exc.value.code() is grpc.StatusCode.UNAVAILABLE
        finally:
            await server.stop(None)

    run(scenario())


def test_insecure_dev_identity_from_metadata(
    pki: PkiDir, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        server, port = await start_server(pki, insecure_dev=True, tls=False)
        try:
            md = ((DEV_IDENTITY_METADATA, "urn:konbini:terminal:lawson:T0002"),)
            with caplog.at_level(logging.WARNING, logger="konbini.pki.mtls"):
                assert await call(port, None, None, TERMINAL_ONLY, metadata=md) == \
                    b"terminal|T0002|"
                assert await call(port, None, None, TERMINAL_ONLY, metadata=md) == \
                    b"terminal|T0002|"
            warnings = [r for r in caplog.records if "insecure" in r.getMessage()]
            assert len(warnings) == 1
            with pytest.raises(grpc.aio.AioRpcError) as exc:
                await call(port, None, None, MUNICIPALITY_ONLY, metadata=md)
            assert exc.value.code() is grpc.StatusCode.PERMISSION_DENIED
            with pytest.raises(grpc.aio.AioRpcError) as exc:
                await call(port, None, None, TERMINAL_ONLY)
            assert exc.value.code() is grpc.StatusCode.UNAUTHENTICATED
        finally:
            await server.stop(None)

    run(scenario())
