"""Building and running the issuing server: mTLS, authorization, health, reflection, the
expiry sweeper, graceful shutdown, and several worker processes on one port.

Build (``build_app`` + ``build_server``) is separate from run (``run_server``), so tests start a
real server on port 0 in-process with :func:`running`. Each worker opens its own store after it
was spawned (connections are never shared across processes).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import replace

import grpc
import grpc.aio
from grpc_health.v1 import health

from konbini.clock import Clock, SystemClock
from konbini.issuing.v1 import issuing_pb2, issuing_pb2_grpc
from konbini.pki import PkiDir
from konbini.pki.mtls import server_credentials
from konbini.server import (
    ServerOptions,
    ServiceBinding,
    contract_authorization,
    create_server,
    drain,
    reserve_port,
    run_workers,
    serve,
    start,
)
from konbini.storage import Store, open_store
from konbini.testing.v1 import testing_pb2, testing_pb2_grpc
from municipality.config import MunicipalityConfig
from municipality.documents import DocumentSigner
from municipality.issuance import Composer, Issuer
from municipality.schema import MIGRATIONS
from municipality.service import FixtureServicer, IssuingServicer, Municipality
from municipality.settings import StoreClock, person_ref_secret

log = logging.getLogger(__name__)

STORE_SCHEMA = "municipality"
ISSUING = issuing_pb2.DESCRIPTOR.services_by_name["IssuingService"].full_name
FIXTURE = testing_pb2.DESCRIPTOR.services_by_name["FixtureService"].full_name


def open_municipality_store(config: MunicipalityConfig) -> Store:
    """The store with this side's migrations applied."""
    return open_store(config.store_url, migrations=MIGRATIONS, schema=STORE_SCHEMA)


def default_composer() -> Composer:
    from municipality.documents import compose

    return compose


def build_app(config: MunicipalityConfig, store: Store, *, composer: Composer | None = None,
              clock: Clock | None = None) -> Municipality:
    """The domain engines for ``config`` over ``store`` (document signers from the PKI dir)."""
    pki = PkiDir(config.pki_dir)
    signers = {code: DocumentSigner.from_paths(pki.document_signer(code))
               for code in config.tenants}
    if clock is None:
        clock = StoreClock(store) if config.test_mode else SystemClock()
    issuer = Issuer(store, composer=composer or default_composer(), signers=signers,
                    clock=clock, person_secret=person_ref_secret(store),
                    ttl=config.reservation_ttl)
    return Municipality(tenants=frozenset(config.tenants), store=store, issuer=issuer,
                        clock=clock, manual_link=config.manual_link)


def credentials_for(config: MunicipalityConfig) -> grpc.ServerCredentials | None:
    """mTLS with this server's certificate, requiring clients of the operator CA."""
    if config.insecure_dev:
        return None
    pki = PkiDir(config.pki_dir)
    cert, key = pki.municipality_server(config.server_name).read()
    return server_credentials(cert, key, pki.network_ca_cert.read_bytes())


def build_server(config: MunicipalityConfig, app: Municipality
                 ) -> tuple[grpc.aio.Server, int, health.aio.HealthServicer, list[str]]:
    """The gRPC server with both services, bound but not started."""
    bindings = [
        ServiceBinding(issuing_pb2_grpc.add_IssuingServiceServicer_to_server,
                       IssuingServicer(app), ISSUING),
        ServiceBinding(testing_pb2_grpc.add_FixtureServiceServicer_to_server,
                       FixtureServicer(app), FIXTURE),
    ]
    options = ServerOptions(
        bind=config.bind, credentials=credentials_for(config), insecure_dev=config.insecure_dev,
        test_mode=config.test_mode,
        interceptors=(contract_authorization(insecure_dev=config.insecure_dev),),
    )
    server, port, health_servicer = create_server(bindings, options)
    return server, port, health_servicer, [b.name for b in bindings]


async def sweep_forever(app: Municipality, interval: float) -> None:
    """Mark expired reservations EXPIRED every ``interval`` seconds (ISSUE-SWEEPER)."""
    while True:
        try:
            swept = await asyncio.to_thread(app.issuer.sweep)
            if swept:
                log.info("expired %d reservations", swept)
        except Exception:
            # A database hiccup must not stop the sweeper; the next round retries.
            log.exception("sweeping expired reservations failed")
        await asyncio.sleep(interval)


async def run_server(config: MunicipalityConfig, *,
                     on_started: Callable[[int], None] | None = None) -> None:
    """Open the store, serve until SIGTERM/SIGINT, drain, close."""
    store = open_municipality_store(config)
    try:
        app = build_app(config, store)
        server, port, health_servicer, names = build_server(config, app)
        interval = config.sweep_interval.total_seconds()
        await serve(
            server, health_servicer, names, grace=config.grace_seconds,
            on_started=(lambda: on_started(port)) if on_started else None,
            background=[lambda: sweep_forever(app, interval)],
        )
    finally:
        store.close()


def _worker(config: MunicipalityConfig) -> None:
    """A spawned worker process: its own store, its own event loop."""
    logging.basicConfig(level=logging.INFO)
    asyncio.run(run_server(config))


def serve_workers(config: MunicipalityConfig, *,
                  on_bound: Callable[[int], None] | None = None) -> int:
    """Run ``config.workers`` processes on one port; the port is chosen first if it is 0."""
    host, _, port_text = config.bind.rpartition(":")
    holder, port = reserve_port(host.strip("[]"), int(port_text))
    try:
        if on_bound:
            on_bound(port)
        return run_workers(config.workers, _worker, (replace(config, bind=f"{host}:{port}"),))
    finally:
        holder.close()


@contextlib.asynccontextmanager
async def running(config: MunicipalityConfig, *, composer: Composer | None = None,
                  clock: Clock | None = None) -> AsyncIterator[tuple[int, Municipality]]:
    """A started server in this process (tests): yields (port, app); drains on exit."""
    store = open_municipality_store(config)
    try:
        app = build_app(config, store, composer=composer, clock=clock)
        server, port, health_servicer, names = build_server(config, app)
        await start(server, health_servicer, names)
        sweeper = asyncio.create_task(
            sweep_forever(app, config.sweep_interval.total_seconds()))
        try:
            yield port, app
        finally:
            sweeper.cancel()
            await drain(server, health_servicer, grace=2)
    finally:
        store.close()
