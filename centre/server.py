"""The centre server: building (:func:`build_centre`) is separate from running
(:func:`serve_centre`), so tests bind port 0 and use the ports they get back.

Two ports: ``bind`` with mTLS (KioskService for terminals, PlatformService for municipalities,
FixtureService for the conformance suite in test mode) and ``public_bind`` with TLS but no
client certificates (VerificationService only; gRPC Python cannot make client certificates
optional on one port). An empty ``public_bind`` serves no public port.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import os
import secrets
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import grpc.aio
from grpc_health.v1 import health

from centre import ledger
from centre.audit import AuditLog
from centre.auditstage import StagedAudit
from centre.cardtrust import CardTrust
from centre.config import CentreConfig
from centre.context import BackSides, Centre, Timing
from centre.fixture import CentreFixtureServicer
from centre.kiosk import KioskServicer
from centre.outbox import run_background
from centre.platform import PlatformServicer
from centre.ratelimit import RateLimiter
from centre.routing import Router
from centre.schema import centre_migrations
from centre.timesource import TimeSource
from centre.trustpub import TrustListPublisher
from konbini.clock import Clock, SystemClock
from konbini.kiosk.v1 import kiosk_pb2, kiosk_pb2_grpc
from konbini.pki import PkiDir, ScrambleKeySet
from konbini.pki.mtls import channel_credentials, server_credentials
from konbini.pki.x509util import load_certificate
from konbini.platform.v1 import platform_pb2, platform_pb2_grpc
from konbini.server import (
    DEFAULT_MAX_MESSAGE_BYTES,
    ServerOptions,
    ServiceBinding,
    contract_authorization,
    create_server,
    drain,
    start,
    stop_on_signals,
)
from konbini.storage import AsyncStore, Store, open_store
from konbini.testing.v1 import testing_pb2, testing_pb2_grpc
from konbini.verification.v1 import verification_pb2, verification_pb2_grpc

log = logging.getLogger(__name__)

STORE_SCHEMA = "centre"  # PostgreSQL schema of the centre's tables (the URL may override it)


def _full_name(pb2: object, service: str) -> str:
    return pb2.DESCRIPTOR.services_by_name[service].full_name  # type: ignore[attr-defined]


KIOSK = _full_name(kiosk_pb2, "KioskService")
PLATFORM = _full_name(platform_pb2, "PlatformService")
FIXTURE = _full_name(testing_pb2, "FixtureService")
VERIFICATION = _full_name(verification_pb2, "VerificationService")


@dataclass
class CentreServer:
    """A built (not yet started) centre: its servers, ports and collaborators."""

    server: grpc.aio.Server
    port: int
    health: health.aio.HealthServicer
    names: list[str]
    centre: Centre
    store: Store
    config: CentreConfig
    public_server: grpc.aio.Server | None = None
    public_port: int = 0
    public_health: health.aio.HealthServicer | None = None
    public_names: list[str] = field(default_factory=list)
    background_jobs: list[Callable[[], Awaitable[object]]] = field(default_factory=list)
    _background: asyncio.Task[None] | None = None

    async def start(self, *, background: bool = True) -> None:
        """Start serving (and the outbox relay and sweeper unless ``background`` is False)."""
        await start(self.server, self.health, self.names)
        if self.public_server is not None and self.public_health is not None:
            await start(self.public_server, self.public_health, self.public_names)
        if background:
            self._background = asyncio.create_task(run_background(
                self.centre, self.config.relay_interval_s, self.config.sweep_interval_s,
                self.background_jobs))

    async def stop(self, grace: float = 5.0) -> None:
        """Drain both ports, stop the background work, close the channels and the store."""
        if self._background is not None:
            self._background.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._background
        await drain(self.server, self.health, grace)
        if self.public_server is not None and self.public_health is not None:
            await drain(self.public_server, self.public_health, grace)
        await self.centre.router.close()
        await self.centre.store.close()


def _default_back_sides() -> BackSides:
    from centre.backside import add_back_sides

    return add_back_sides


def build_centre(
    config: CentreConfig,
    *,
    clock: Clock | None = None,
    back_sides: BackSides | None = None,
    random_bytes: Callable[[int], bytes] = secrets.token_bytes,
) -> CentreServer:
    """Open the store, wire every servicer and bind both ports (call inside the event loop)."""
    pki = PkiDir(config.pki_dir)
    store = open_store(config.effective_store_url, migrations=centre_migrations(),
                       schema=STORE_SCHEMA)
    astore = AsyncStore(store)
    time = TimeSource(clock or SystemClock(), astore, shared_offset=config.test_mode)
    ca_pem = pki.network_ca_cert.read_bytes()
    channel_creds = None
    if not config.insecure_dev:
        client_cert, client_key = pki.centre_client.read()
        channel_creds = channel_credentials(ca_pem, client_cert, client_key)
    router = Router(config.routes, channel_creds, astore, use_stored=config.test_mode,
                    default_timeout_s=config.call_timeout_s)
    cards = CardTrust(pki.jpki_ca_cert, config.crl_path or pki.jpki_crl,
                      dt.timedelta(seconds=config.crl_grace_s), astore,
                      use_fixtures=config.test_mode)
    signer = pki.trust_list_signer.load()
    audit = AuditLog(store, signer.key, signer.certificate, clock=time.clock)  # type: ignore[arg-type]
    staged = StagedAudit(audit, astore, time.clock)
    centre = Centre(
        store=astore, time=time, router=router, cards=cards, audit=staged,
        scramble_keys=lambda: ScrambleKeySet.load(pki.scramble_keys),
        back_sides=back_sides or _default_back_sides(),
        timing=Timing(config.challenge_ttl_s, config.session_ttl_s,
                      config.reservation_margin_s, config.requested_timeout_s),
        random_bytes=random_bytes, new_id=lambda: uuid.uuid4().hex)
    trust = TrustListPublisher(pki, store, time.clock)
    limiter = RateLimiter(config.rate_per_s, config.rate_burst)
    bindings = [
        ServiceBinding(kiosk_pb2_grpc.add_KioskServiceServicer_to_server,
                       KioskServicer(centre, limiter), KIOSK),
        ServiceBinding(platform_pb2_grpc.add_PlatformServiceServicer_to_server,
                       PlatformServicer(astore, cards, time.clock, trust, ledger.committed_rows,
                                        config.commission_yen, audit), PLATFORM),
        ServiceBinding(testing_pb2_grpc.add_FixtureServiceServicer_to_server,
                       CentreFixtureServicer(centre), FIXTURE),
    ]
    credentials = None
    if not config.insecure_dev:
        cert, key = pki.centre_server.read()
        credentials = server_credentials(cert, key, ca_pem)
    options = ServerOptions(
        bind=config.bind, credentials=credentials, insecure_dev=config.insecure_dev,
        test_mode=config.test_mode, max_message_bytes=DEFAULT_MAX_MESSAGE_BYTES,
        interceptors=(contract_authorization(insecure_dev=config.insecure_dev),))
    server, port, health_servicer = create_server(bindings, options)
    built = CentreServer(server, port, health_servicer, [b.name for b in bindings], centre,
                         store, config, background_jobs=[staged.flush])
    if config.public_bind:
        _add_public(built, config, pki, trust, time.clock)
    return built


def _add_public(built: CentreServer, config: CentreConfig, pki: PkiDir,
                trust: TrustListPublisher, clock: Clock) -> None:
    from centre.verification import VerificationServicer

    public_creds = None
    if not config.insecure_dev:
        cert, key = pki.centre_server.read()
        public_creds = server_credentials(cert, key, pki.network_ca_cert.read_bytes(),
                                          require_client_auth=False)
    roots = [load_certificate(pki.docsign_ca.cert)]
    servicer = VerificationServicer(trust, roots, clock=clock)
    binding = ServiceBinding(verification_pb2_grpc.add_VerificationServiceServicer_to_server,
                             servicer, VERIFICATION)
    options = ServerOptions(
        bind=config.public_bind, credentials=public_creds, insecure_dev=config.insecure_dev,
        test_mode=False, interceptors=(contract_authorization(insecure_dev=config.insecure_dev),))
    built.public_server, built.public_port, built.public_health = create_server([binding],
                                                                                options)
    built.public_names = [VERIFICATION]


async def serve_centre(config: CentreConfig, *, port_file: Path | None = None,
                       grace: float = 10.0) -> None:
    """Run one centre worker until SIGTERM/SIGINT, then drain; a second signal exits at once."""
    built = build_centre(config)
    await built.start()
    stop = stop_on_signals()
    if port_file is not None:
        tmp = port_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"port": built.port, "public_port": built.public_port,
                                   "pid": os.getpid()}))
        tmp.replace(port_file)  # atomic: a reader never sees half a file
    log.info("centre serving on port %d (public %d)", built.port, built.public_port)
    try:
        await stop.wait()
    finally:
        await built.stop(grace)
