"""Start the reference network on this machine: PKI, cards, data, configs and processes.

Each side runs as its own `konbini ... serve` process on loopback with mTLS and an SQLite
store, exactly as an operator would run it; this module only prepares files, starts the
processes, waits until their health checks answer SERVING, and talks to them over the wire.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from google.protobuf import json_format
from grpc_health.v1 import health_pb2, health_pb2_grpc

from konbini.card import JpkiCard, SoftCardReader
from konbini.card.issue import issue_soft_card
from konbini.clock import JST
from konbini.common.v1 import types_pb2
from konbini.pki import PkiDir, pki_init
from konbini.pki.mtls import channel_credentials
from konbini.platform.v1 import platform_pb2, platform_pb2_grpc
from konbini.register.v1 import register_pb2
from network import demo_data
from network.demo_data import CHIYODA, KOFU, PEOPLE, SHINJUKU

# The municipality servers of the demo: one single-municipality server and one multi-tenant
# cloud server (ISSUE 6); the names match `konbini pki init`'s defaults.
SERVERS: dict[str, tuple[str, ...]] = {"kofu": (KOFU,), "tokyo-cloud": (CHIYODA, SHINJUKU)}
NAMES = {KOFU: "甲府市", CHIYODA: "千代田区", SHINJUKU: "新宿区"}
READY_TIMEOUT_S = 60.0


class NetworkError(RuntimeError):
    """The network could not be prepared or did not come up; the message says what to check."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Service:
    """One running side."""

    name: str
    port: int
    tls_name: str
    log: Path
    process: subprocess.Popen[bytes] | None = None


@dataclass
class ReferenceNetwork:
    """The demo network under `root`: pki/, cards/, config/, var/, logs/."""

    root: Path
    services: dict[str, Service] = field(default_factory=dict)
    card_serials: dict[str, int] = field(default_factory=dict)

    @property
    def pki(self) -> PkiDir:
        return PkiDir(self.root / "pki")

    def card_path(self, key: str) -> Path:
        return self.root / "cards" / f"{key}.card"

    @property
    def centre(self) -> Service:
        return self.services["centre"]

    # -- preparation ----------------------------------------------------------------------

    def prepare(self, now: dt.datetime, *, test_mode: bool = False) -> None:
        """PKI, cards (one revoked), register data with card bindings, configs, data import."""
        for sub in ("cards", "config", "var", "logs"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        pki_init(self.root / "pki", now=now)
        ca = self.pki.jpki_ca()
        for person in PEOPLE:
            path = self.card_path(person.key)
            if path.exists():
                path.unlink()
            serial = issue_soft_card(ca, path, person.pin, now=now)
            assert serial is not None
            self.card_serials[person.key] = serial
        ca.publish_crl_at(now, dt.timedelta(days=1))
        self._write_datasets()
        self._write_configs(test_mode)
        for server in SERVERS:
            self._konbini("municipality", "import", "--config", str(self._config(server)),
                          "--replace", str(self.root / "config" / f"{server}-data.json"))

    def _write_datasets(self) -> None:
        data = demo_data.dataset()
        by_code = {m.tenant.code.value: m for m in data.municipalities}
        for person in PEOPLE:
            by_code[person.municipality].card_bindings.append(register_pb2.CardBinding(
                certificate_serial=format(self.card_serials[person.key], "x"),
                resident_id=person.resident_id))
        for server, codes in SERVERS.items():
            subset = register_pb2.Dataset(municipalities=[by_code[c] for c in codes])
            (self.root / "config" / f"{server}-data.json").write_text(
                json_format.MessageToJson(subset, ensure_ascii=False), encoding="utf-8")

    def _config(self, name: str) -> Path:
        return self.root / "config" / f"{name}.toml"

    def _write_configs(self, test_mode: bool) -> None:
        flag = "true" if test_mode else "false"  # test mode only to pin the clock (demo)
        pki = (self.root / "pki").resolve()
        for server, codes in SERVERS.items():
            port = free_port()
            self.services[server] = Service(server, port, server, self.root / "logs" /
                                            f"{server}.log")
            db = (self.root / "var" / f"{server}.db").resolve()
            self._config(server).write_text(
                "[server]\n"
                f'bind = "127.0.0.1:{port}"\n'
                f"test_mode = {flag}\n"
                "[pki]\n"
                f'dir = "{pki}"\n'
                f'server_name = "{server}"\n'
                "[store]\n"
                f'url = "sqlite://{db}"\n'
                "[tenants]\n"
                f"codes = {json.dumps(list(codes))}\n",
                encoding="utf-8",
            )
        port, public_port = free_port(), free_port()
        self.services["centre"] = Service("centre", port, "centre",
                                          self.root / "logs" / "centre.log")
        self.services["centre-public"] = Service("centre-public", public_port, "localhost",
                                                 self.root / "logs" / "centre.log")
        routes = "".join(
            "\n[[routes]]\n"
            f'code = "{code}"\n'
            f'name = "{NAMES[code]}"\n'
            f'endpoints = ["127.0.0.1:{self.services[server].port}"]\n'
            f'tls_server_name = "{server}"\n'
            for server, codes in SERVERS.items()
            for code in codes
        )
        db = (self.root / "var" / "centre.db").resolve()
        self._config("centre").write_text(
            f'pki_dir = "{pki}"\n'
            f'bind = "127.0.0.1:{port}"\n'
            f'public_bind = "127.0.0.1:{public_port}"\n'
            f'store_url = "sqlite://{db}"\n'
            f"test_mode = {flag}\n" + routes,
            encoding="utf-8",
        )

    # -- processes ------------------------------------------------------------------------

    def _konbini(self, *args: str) -> None:
        # Our own CLI with arguments we built: no shell, no outside input.
        result = subprocess.run([sys.executable, "-m", "konbini.cli", *args],  # noqa: S603
                                capture_output=True, text=True, check=False, timeout=300)
        if result.returncode != 0:
            raise NetworkError(f"konbini {' '.join(args[:2])} failed:\n{result.stderr}")

    def start(self) -> None:
        """Start every server and wait until each answers its health check."""
        for name in [*SERVERS, "centre"]:
            service = self.services[name]
            log = service.log.open("ab")
            side = "centre" if name == "centre" else "municipality"
            service.process = subprocess.Popen(  # noqa: S603 - our own CLI, no shell
                [sys.executable, "-m", "konbini.cli", side, "serve", "--config",
                 str(self._config(name))],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        deadline = time.monotonic() + READY_TIMEOUT_S
        try:
            for name in [*SERVERS, "centre"]:
                self._wait_serving(self.services[name], deadline)
        except BaseException:
            self.stop()
            raise

    def _wait_serving(self, service: Service, deadline: float) -> None:
        cert, key = (self.pki.centre_client if service.name != "centre"
                     else self.pki.municipality_client(KOFU)).read()
        creds = channel_credentials(self.pki.network_ca_cert.read_bytes(), cert, key)
        while True:
            assert service.process is not None
            if service.process.poll() is not None:
                raise NetworkError(f"{service.name} exited; see {service.log}")
            with grpc.secure_channel(f"127.0.0.1:{service.port}", creds, options=[
                    ("grpc.ssl_target_name_override", service.tls_name)]) as channel:
                try:
                    reply = health_pb2_grpc.HealthStub(channel).Check(
                        health_pb2.HealthCheckRequest(), timeout=2)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.RpcError:
                    pass
            if time.monotonic() > deadline:
                raise NetworkError(f"{service.name} did not become ready; see {service.log}")
            time.sleep(0.2)

    def stop(self, grace_s: float = 15.0) -> None:
        """SIGTERM every server (they drain), then wait; SIGKILL what does not stop."""
        running = [s for s in self.services.values() if s.process and s.process.poll() is None]
        for service in running:
            assert service.process is not None
            with contextlib.suppress(ProcessLookupError):
                os.killpg(service.process.pid, signal.SIGTERM)
        for service in running:
            assert service.process is not None
            try:
                service.process.wait(grace_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(service.process.pid, signal.SIGKILL)
                service.process.wait()

    # -- platform calls (as each municipality) ------------------------------------------------

    def bind_cards_at_centre(self) -> None:
        """Each municipality registers its residents' cards with the centre (PlatformService)."""
        for person in PEOPLE:
            cert, key = self.pki.municipality_client(person.municipality).read()
            creds = channel_credentials(self.pki.network_ca_cert.read_bytes(), cert, key)
            reader = SoftCardReader(self.card_path(person.key))
            try:
                card = JpkiCard(reader.connect())
                card.select_jpki()
                certificate = card.read_auth_certificate()
            finally:
                reader.disconnect()
            with grpc.secure_channel(f"127.0.0.1:{self.centre.port}", creds) as channel:
                platform_pb2_grpc.PlatformServiceStub(channel).BindCard(
                    platform_pb2.BindCardRequest(
                        request_id=f"bind-{person.key}",
                        municipality_code=types_pb2.MunicipalityCode(
                            value=person.municipality),
                        certificate_der=certificate),
                    timeout=30)

    def revoke_cards(self, now: dt.datetime) -> None:
        """Revoke the demo's lost card and publish the CRL the centre reads."""
        ca = self.pki.jpki_ca()
        for person in PEOPLE:
            if person.revoked:
                ca.revoke_at(now, self.card_serials[person.key])
        ca.publish_crl_at(now, dt.timedelta(days=1))


def in_service_hours(now: dt.datetime) -> bool:
    """Whether the standard kiosk hours (06:30-23:00 JST, not 29 Dec-3 Jan) hold now."""
    local = now.astimezone(JST)
    if (local.month, local.day) >= (12, 29) or (local.month, local.day) <= (1, 3):
        return False
    minutes = local.hour * 60 + local.minute
    return 6 * 60 + 30 <= minutes < 23 * 60
