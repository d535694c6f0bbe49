"""Serving the fake municipality over mTLS, where the centre under test can reach it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from konbini.issuing.v1 import issuing_pb2_grpc
from konbini.pki.mtls import server_credentials
from konbini.server import (
    ServerOptions,
    ServiceBinding,
    contract_authorization,
    create_server,
    drain,
    start,
)

ISSUING = "konbini.issuing.v1.IssuingService"


@dataclass(frozen=True)
class FakeServerConfig:
    """How a fake municipality server listens.

    ``bind`` is the local address (port 0: any free one); ``advertise`` the host the centre
    under test connects to (default: the bind host); ``cert_pem``/``key_pem`` the server
    certificate it presents, ``client_ca_pem`` the CA that signed the centre's client
    certificate, ``tls_server_name`` the name the centre should expect (the route's).
    """

    cert_pem: bytes
    key_pem: bytes
    client_ca_pem: bytes
    tls_server_name: str = ""
    bind: str = "127.0.0.1:0"
    advertise: str = ""


@dataclass(frozen=True)
class FakeEndpoint:
    """A running fake: the endpoint to put in the centre's route."""

    endpoint: str
    tls_server_name: str


@contextlib.asynccontextmanager
async def serve_fake(servicer: object, config: FakeServerConfig) -> AsyncIterator[FakeEndpoint]:
    """Serve ``servicer`` as IssuingService (the centre's certificate only) until exit."""
    credentials = server_credentials(config.cert_pem, config.key_pem, config.client_ca_pem)
    server, port, health = create_server(
        [ServiceBinding(issuing_pb2_grpc.add_IssuingServiceServicer_to_server, servicer,
                        ISSUING)],
        ServerOptions(bind=config.bind, credentials=credentials,
                      interceptors=(contract_authorization(),)),
    )
    await start(server, health, [ISSUING])
    host = config.advertise or config.bind.rsplit(":", 1)[0]
    try:
        yield FakeEndpoint(f"{host}:{port}", config.tls_server_name)
    finally:
        await drain(server, health, grace=0.5)
