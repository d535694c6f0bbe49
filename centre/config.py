"""The centre's configuration: one immutable object, read once at the entry point (TOML).

Example (every key is optional except ``pki_dir``)::

    bind = "0.0.0.0:7443"              # mTLS port: terminals, municipalities, conformance
    public_bind = "0.0.0.0:7444"       # VerificationService only: TLS without client certs
    pki_dir = "/etc/konbini/pki"       # PkiDir: certificates, CRL, scramble keys
    store_url = "sqlite:///var/lib/konbini/centre.db"
    crl_path = ""                      # default: the PKI directory's jpki/crl.pem
    crl_grace_s = 3600                 # a CRL is accepted this long past its next update
    challenge_ttl_s = 300              # a session's challenge and the session itself
    session_ttl_s = 900                # an authenticated session
    reservation_margin_s = 60          # the terminal's deadline = municipality expiry - this
    requested_timeout_s = 120          # a request stuck before the municipality answered
    commission_yen = 120               # store commission per certificate printed (each copy)
    rate_per_s = 20.0                  # per terminal (LIMIT-RATE)
    rate_burst = 40
    test_mode = false                  # FixtureService answers (never in production)
    insecure_dev = false               # no TLS at all: local development only
    workers = 1
    call_timeout_s = 10.0              # centre -> municipality, when the caller set no deadline

    [[routes]]
    code = "192015"
    name = "甲府市"
    endpoints = ["10.0.0.5:7443", "10.0.0.6:7443"]
    tls_server_name = "kofu"           # optional: the name in the server certificate
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from konbini.municode import validate_municipality_code


class ConfigError(ValueError):
    """The configuration file is missing a value or holds a wrong one."""


@dataclass(frozen=True)
class RouteConfig:
    """Where one municipality is served: replicas and the TLS name of their certificate."""

    code: str
    name: str
    endpoints: tuple[str, ...]
    tls_server_name: str = ""


@dataclass(frozen=True)
class CentreConfig:
    """Every setting of the centre; safe defaults (TLS on, test mode off, loopback)."""

    pki_dir: Path
    bind: str = "127.0.0.1:7443"
    public_bind: str = "127.0.0.1:7444"
    store_url: str = ""  # empty: sqlite file next to the PKI directory
    routes: tuple[RouteConfig, ...] = ()
    crl_path: Path | None = None  # None: PkiDir.jpki_crl
    crl_grace_s: float = 3600.0
    challenge_ttl_s: float = 300.0
    session_ttl_s: float = 900.0
    reservation_margin_s: float = 60.0
    requested_timeout_s: float = 120.0
    commission_yen: int = 120  # per certificate printed: one per copy (settlement)
    rate_per_s: float = 20.0
    rate_burst: int = 40
    test_mode: bool = False
    insecure_dev: bool = False
    workers: int = 1
    call_timeout_s: float = 10.0
    # How often the background relay and sweeper look for work.
    relay_interval_s: float = 1.0
    sweep_interval_s: float = 5.0
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def effective_store_url(self) -> str:
        """The store URL, defaulting to an SQLite file beside the PKI directory."""
        if self.store_url:
            return self.store_url
        return f"sqlite://{(self.pki_dir.parent / 'centre.db').resolve()}"

    def with_changes(self, **changes: Any) -> CentreConfig:
        """A copy with some settings changed (tests, command-line overrides)."""
        values = {f: getattr(self, f) for f in self.__dataclass_fields__}
        values.update(changes)
        return CentreConfig(**values)


_FLOATS = ("crl_grace_s", "challenge_ttl_s", "session_ttl_s", "reservation_margin_s",
           "requested_timeout_s", "rate_per_s", "call_timeout_s", "relay_interval_s",
           "sweep_interval_s")
_INTS = ("commission_yen", "rate_burst", "workers")
_BOOLS = ("test_mode", "insecure_dev")
_STRS = ("bind", "public_bind", "store_url")


def _route(raw: Any, index: int) -> RouteConfig:
    if not isinstance(raw, dict):
        raise ConfigError(f"routes[{index}] must be a table")
    code = str(raw.get("code", ""))
    if not validate_municipality_code(code):
        raise ConfigError(f"routes[{index}].code {code!r} is not a valid municipality code")
    endpoints = raw.get("endpoints")
    if not isinstance(endpoints, list) or not endpoints or not all(
        isinstance(e, str) and ":" in e for e in endpoints
    ):
        raise ConfigError(f"routes[{index}].endpoints must be a list of host:port")
    return RouteConfig(code, str(raw.get("name", "")), tuple(endpoints),
                       str(raw.get("tls_server_name", "")))


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and v >= 0


def _is_count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


_KINDS: tuple[tuple[tuple[str, ...], Any, Any, str], ...] = (
    (_FLOATS, _is_number, float, "a non-negative number"),
    (_INTS, _is_count, int, "a non-negative integer"),
    (_BOOLS, lambda v: isinstance(v, bool), bool, "true or false"),
    (_STRS, lambda v: isinstance(v, str), str, "a string"),
)


def _scalars(raw: dict[str, Any]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for names, ok, convert, what in _KINDS:
        for name in names:
            if name in raw:
                if not ok(raw[name]):
                    raise ConfigError(f"{name} must be {what}")
                values[name] = convert(raw[name])
    return values


def config_from_mapping(raw: dict[str, Any], *, base_dir: Path = Path(".")) -> CentreConfig:
    """Build the configuration from a parsed TOML document; relative paths from ``base_dir``."""
    known = {"pki_dir", "crl_path", "routes", *_FLOATS, *_INTS, *_BOOLS, *_STRS}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"unknown settings: {', '.join(unknown)}")
    if "pki_dir" not in raw:
        raise ConfigError("pki_dir is required")
    values: dict[str, Any] = {"pki_dir": (base_dir / str(raw["pki_dir"])).resolve()}
    if raw.get("crl_path"):
        values["crl_path"] = (base_dir / str(raw["crl_path"])).resolve()
    values.update(_scalars(raw))
    routes = raw.get("routes", [])
    if not isinstance(routes, list):
        raise ConfigError("routes must be an array of tables")
    values["routes"] = tuple(_route(r, i) for i, r in enumerate(routes))
    if len({r.code for r in values["routes"]}) != len(values["routes"]):
        raise ConfigError("a municipality code appears in more than one route")
    if values.get("workers", 1) < 1:
        raise ConfigError("workers must be at least 1")
    return CentreConfig(**values)


def load_config(path: Path) -> CentreConfig:
    """Read and check a TOML configuration file."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    return config_from_mapping(raw, base_dir=path.parent)
