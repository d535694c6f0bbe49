"""Building a run from settings: the target connection, the trust list, the role's context.

Adding a role: write its context factory (like :func:`municipality_context`) and add it to
:data:`ROLE_CONTEXTS`, next to its check package in conformance.checks.ROLE_PACKAGES.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509

from conformance.fixtures import suite_clock
from conformance.target import Identity, TargetConfig, Wire, identity_from_files
from konbini.common.v1 import trust_pb2
from konbini.pki import PkiDir
from konbini.pki.trustlist import TrustList, from_proto, verify_signed_trust_list_at

TRUST_LIST_LIFETIME = dt.timedelta(days=30)


class SessionError(ValueError):
    """The run cannot be set up as asked (missing certificate, unknown role, ...)."""


@dataclass(frozen=True)
class RunOptions:
    """Everything a run needs, as the CLI (or a test) gives it."""

    role: str
    target: str
    pki: Path | None = None
    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    fixture_cert: Path | None = None
    fixture_key: Path | None = None
    wrong_role_cert: Path | None = None
    wrong_role_key: Path | None = None
    tls_server_name: str = ""
    municipalities: tuple[str, ...] = ()
    trust_list: Path | None = None
    docsign_ca: Path | None = None
    seed: int = 0
    examples: int = 10
    only: tuple[str, ...] = ()
    clock: dt.datetime | None = None  # the suite's fixed time; default: suite_clock(now)
    call_timeout: float = 30.0
    extra: dict[str, Any] = field(default_factory=dict)


def _first_terminal(pki: PkiDir) -> Any:
    """The PKI's first terminal certificate (None without terminals)."""
    terminals = pki.manifest().terminals
    return pki.terminal_client(*terminals[0]) if terminals else None


def target_config(opts: RunOptions) -> TargetConfig:
    """The connection settings: from a konbini PKI dir, or from explicit files."""
    identities: dict[str, Identity] = {"none": Identity(None, None)}
    if opts.pki is not None:
        pki = PkiDir(opts.pki)
        ca = pki.network_ca_cert
        caller = {
            "municipality": pki.centre_client,
            "terminal": pki.conformance_client,  # the suite drives a terminal's driver service
            "centre": _first_terminal(pki),  # the suite plays terminals against a centre
        }.get(opts.role)
        if caller is None:
            raise SessionError(f"no caller certificate known for role {opts.role}")
        identities["caller"] = identity_from_files(caller.cert, caller.key)
        identities["fixture"] = identity_from_files(
            pki.conformance_client.cert, pki.conformance_client.key
        )
        terminals = pki.manifest().terminals
        if terminals and opts.role != "terminal":
            t = pki.terminal_client(*terminals[0])
            identities["wrong_role"] = identity_from_files(t.cert, t.key)
        if opts.role == "terminal":  # any role but conformance may not drive a terminal
            identities["wrong_role"] = identity_from_files(
                pki.centre_client.cert, pki.centre_client.key
            )
    else:
        if opts.ca is None or opts.cert is None or opts.key is None:
            raise SessionError("give --pki DIR, or --ca, --cert and --key")
        ca = opts.ca
        identities["caller"] = identity_from_files(opts.cert, opts.key)
        identities["fixture"] = identity_from_files(
            opts.fixture_cert or opts.cert, opts.fixture_key or opts.key
        )
    if opts.wrong_role_cert and opts.wrong_role_key:
        identities["wrong_role"] = identity_from_files(opts.wrong_role_cert, opts.wrong_role_key)
    return TargetConfig(
        address=opts.target,
        ca_pem=Path(ca).read_bytes(),
        identities=identities,
        tls_server_name=opts.tls_server_name,
        ca_path=str(Path(ca).resolve()),
        call_timeout=opts.call_timeout,
    )


def load_trust_list(opts: RunOptions, at: dt.datetime) -> TrustList | None:
    """The verified trust list documents are checked against (None: not available)."""
    if opts.trust_list is not None:
        if opts.docsign_ca is None and opts.pki is None:
            raise SessionError("--trust-list needs --docsign-ca FILE (or --pki) to verify it")
        roots_path = opts.docsign_ca or PkiDir(opts.pki).docsign_ca.cert  # type: ignore[arg-type]
        signed = from_proto(trust_pb2.SignedTrustList.FromString(opts.trust_list.read_bytes()))
    elif opts.pki is not None:
        pki = PkiDir(opts.pki)
        roots_path = pki.docsign_ca.cert
        signed = pki.signed_trust_list_at(
            dt.datetime.now(dt.UTC), sequence=1, next_update_in=TRUST_LIST_LIFETIME
        )
    else:
        return None
    roots = [x509.load_pem_x509_certificate(Path(roots_path).read_bytes())]
    return verify_signed_trust_list_at(signed, roots, at)


def municipality_codes(opts: RunOptions) -> tuple[str, ...]:
    if opts.municipalities:
        return opts.municipalities
    if opts.pki is not None:
        servers = PkiDir(opts.pki).manifest().servers
        if servers:
            return tuple(max(servers.values(), key=len))
    raise SessionError("give --municipality CODE (the tenants the target serves)")


def municipality_context(opts: RunOptions, wire: Wire) -> Any:
    from conformance.checks.municipality import MunicipalityContext

    now = opts.clock or suite_clock(dt.datetime.now(dt.UTC))
    return MunicipalityContext(
        wire=wire,
        codes=municipality_codes(opts),
        now=now,
        seed=opts.seed,
        examples=opts.examples,
        trust_list=load_trust_list(opts, now + dt.timedelta(hours=1)),
        sweep_wait=float(opts.extra.get("sweep_wait", 5.0)),
        shrink_budget=float(opts.extra.get("shrink_budget", 20.0)),
    )


def terminal_context(opts: RunOptions, wire: Wire) -> Any:
    from conformance.checks.terminal.setup import build_terminal_context

    return build_terminal_context(
        wire, seed=opts.seed, examples=opts.examples, extra=opts.extra, pki=opts.pki, ca=opts.ca
    )


def centre_context(opts: RunOptions, wire: Wire) -> Any:
    from conformance.checks.centre.setup import centre_context as build

    now = opts.clock or suite_clock(dt.datetime.now(dt.UTC))
    roots: tuple[x509.Certificate, ...] = ()
    roots_path = opts.docsign_ca or (PkiDir(opts.pki).docsign_ca.cert if opts.pki else None)
    if roots_path is not None:
        roots = (x509.load_pem_x509_certificate(Path(roots_path).read_bytes()),)
    return build(opts, wire, now, roots)


ROLE_CONTEXTS: dict[str, Callable[[RunOptions, Wire], Any]] = {
    "municipality": municipality_context,
    "terminal": terminal_context,
    "centre": centre_context,
}


def build_context(opts: RunOptions) -> tuple[Any, Wire]:
    """(the role's context, the wire) for a run; close the wire when done."""
    factory = ROLE_CONTEXTS.get(opts.role)
    if factory is None:
        raise SessionError(f"no checks for role {opts.role!r} yet (roles: {sorted(ROLE_CONTEXTS)})")
    wire = Wire(target_config(opts))
    return factory(opts, wire), wire


def option_list(values: Sequence[str] | None) -> tuple[str, ...]:
    return tuple(values or ())
