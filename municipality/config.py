"""The issuing server's configuration: one immutable object, read once from TOML.

Relative paths are relative to the configuration file. Defaults are the safe ones: mTLS on,
test mode off, loopback only. `konbini municipality init-config` writes :data:`SAMPLE`.
"""

from __future__ import annotations

import datetime as dt
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from konbini.municode import validate_municipality_code

SAMPLE = """\
# konbini municipality server (証明発行サーバ) configuration.

[server]
# host:port to listen on (port 0: any free port, printed at start).
bind = "127.0.0.1:50061"
# Worker processes sharing the port (SO_REUSEPORT); one per core is a good start.
workers = 1
# Seconds in-flight calls get to finish on SIGTERM.
grace_seconds = 10
# Test mode lets the conformance suite load data and set the clock (FixtureService).
test_mode = false
# Development only: no TLS; the caller's identity comes from request metadata.
insecure_dev = false

[pki]
# A directory made by `konbini pki init`.
dir = "pki"
# This server's TLS certificate (PkiDir.municipality_server(name)).
server_name = "kofu"

[store]
# sqlite:///absolute/path.db (default: municipality.db beside this file) or
# postgresql://user@host:port/db?schema=municipality for several replicas.
# url = "postgresql://postgres@127.0.0.1:5432/test?schema=municipality"

[issuance]
# How long a prepared reservation waits for commit before it expires.
reservation_ttl_seconds = 600
# How often expired reservations are marked EXPIRED.
sweep_interval_seconds = 30

[tenants]
# The municipalities this server serves; their data comes from `konbini municipality import`.
codes = ["192015"]
# Tenants whose use registrations (利用登録) an officer decides by hand (answered PENDING).
manual_link = []
"""


class ConfigError(ValueError):
    """The configuration file is missing a value or holds a wrong one."""


@dataclass(frozen=True)
class MunicipalityConfig:
    """Everything the issuing server reads at start."""

    # Tenants served (municipality codes).
    tenants: tuple[str, ...]
    # The development PKI directory and this server's certificate name in it.
    pki_dir: Path
    server_name: str
    # Storage URL (SQLite file by default; PostgreSQL for replicas).
    store_url: str
    bind: str = "127.0.0.1:0"
    workers: int = 1
    grace_seconds: float = 10.0
    test_mode: bool = False
    insecure_dev: bool = False
    reservation_ttl: dt.timedelta = dt.timedelta(minutes=10)
    sweep_interval: dt.timedelta = dt.timedelta(seconds=30)
    # Tenants whose link requests wait for an officer (PENDING).
    manual_link: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        if not self.tenants:
            raise ConfigError("tenants.codes must name at least one municipality")
        for code in (*self.tenants, *self.manual_link):
            if not validate_municipality_code(code):
                raise ConfigError(f"{code!r} is not a municipality code with a valid check digit")
        if self.workers < 1:
            raise ConfigError("server.workers must be at least 1")
        if self.reservation_ttl <= dt.timedelta(0):
            raise ConfigError("issuance.reservation_ttl_seconds must be positive")

    def with_changes(self, **changes: Any) -> MunicipalityConfig:
        from dataclasses import replace

        return replace(self, **changes)


def _section(data: dict[str, Any], name: str) -> dict[str, Any]:
    value = data.get(name, {})
    if not isinstance(value, dict):
        raise ConfigError(f"[{name}] must be a table")
    return value


def parse_config(text: str, base_dir: Path) -> MunicipalityConfig:
    """Read the TOML text; relative paths resolve against ``base_dir``."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}") from exc
    server, pki, store = _section(data, "server"), _section(data, "pki"), _section(data, "store")
    issuance, tenants = _section(data, "issuance"), _section(data, "tenants")
    if "server_name" not in pki:
        raise ConfigError("pki.server_name is required")
    pki_dir = Path(pki.get("dir", "pki"))
    url = store.get("url") or f"sqlite://{(base_dir / 'municipality.db').resolve()}"
    try:
        return MunicipalityConfig(
            tenants=tuple(str(c) for c in tenants.get("codes", [])),
            pki_dir=pki_dir if pki_dir.is_absolute() else (base_dir / pki_dir).resolve(),
            server_name=str(pki["server_name"]),
            store_url=str(url),
            bind=str(server.get("bind", "127.0.0.1:0")),
            workers=int(server.get("workers", 1)),
            grace_seconds=float(server.get("grace_seconds", 10)),
            test_mode=bool(server.get("test_mode", False)),
            insecure_dev=bool(server.get("insecure_dev", False)),
            reservation_ttl=dt.timedelta(seconds=float(issuance.get("reservation_ttl_seconds",
                                                                    600))),
            sweep_interval=dt.timedelta(seconds=float(issuance.get("sweep_interval_seconds",
                                                                   30))),
            manual_link=frozenset(str(c) for c in tenants.get("manual_link", [])),
        )
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(str(exc)) from exc


def load_config(path: Path | str) -> MunicipalityConfig:
    """Read a configuration file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    return parse_config(text, path.parent)
