"""Building a centre run: the identities the suite plays, its JPKI CAs, and the fake
municipality server started where the centre under test can reach it.

Options (RunOptions.extra, from the CLI): ``fake_bind`` (HOST:PORT the fakes listen on,
default 127.0.0.1:0), ``fake_advertise`` (host the centre connects to), ``fake_cert`` /
``fake_key`` / ``fake_client_ca`` / ``fake_tls_name`` (the fakes' server certificate without a
PKI dir), ``municipality_cert`` / ``municipality_key``, ``terminal_b_cert`` /
``terminal_b_key``, ``jpki_ca_cert`` / ``jpki_ca_key`` (issue cards from this CA instead of
the PKI dir's or a generated one), ``relay_wait`` and ``quiet_wait`` (seconds).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import shutil
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from conformance.checks.centre.cardkit import CardAuthority, card_directory
from conformance.checks.centre.context import CentreContext
from conformance.fakes import FakeMunicipality, FakeServerConfig, serve_fake
from conformance.harness import background_server
from conformance.target import Identity, Wire, identity_from_files
from konbini.pki import PkiDir, key_id_of


class CentreSetupError(ValueError):
    """The centre run cannot be set up as asked (a certificate or tenant is missing)."""


def _identities(pki: PkiDir | None, codes: tuple[str, ...], extra: dict[str, Any]) -> dict[
    str, Identity
]:
    found: dict[str, Identity] = {}
    if pki is not None:
        terminals = pki.manifest().terminals
        if len(terminals) >= 2:
            t = pki.terminal_client(*terminals[1])
            found["terminal_b"] = identity_from_files(t.cert, t.key)
        m = pki.municipality_client(codes[0])
        if m.cert.exists():
            found["municipality"] = identity_from_files(m.cert, m.key)
    for name in ("municipality", "terminal_b"):
        if extra.get(f"{name}_cert") and extra.get(f"{name}_key"):
            found[name] = identity_from_files(extra[f"{name}_cert"], extra[f"{name}_key"])
    if "terminal_b" not in found:
        raise CentreSetupError("the centre role needs a second terminal certificate "
                               "(--pki DIR with two terminals, or --terminal-b-cert/-key)")
    return found


def _fake_config(pki: PkiDir | None, codes: tuple[str, ...], extra: dict[str, Any]
                 ) -> FakeServerConfig:
    bind = str(extra.get("fake_bind") or "127.0.0.1:0")
    advertise = str(extra.get("fake_advertise") or "")
    if extra.get("fake_cert") and extra.get("fake_key"):
        ca = extra.get("fake_client_ca")
        if not ca:
            raise CentreSetupError("--fake-cert needs --fake-client-ca (the centre's client CA)")
        return FakeServerConfig(Path(extra["fake_cert"]).read_bytes(),
                                Path(extra["fake_key"]).read_bytes(), Path(ca).read_bytes(),
                                str(extra.get("fake_tls_name") or ""), bind, advertise)
    if pki is None:
        raise CentreSetupError("give --pki DIR or --fake-cert/--fake-key/--fake-client-ca")
    servers = pki.manifest().servers
    name = next((n for n, served in servers.items() if set(codes) <= set(served)), None)
    if name is None:
        raise CentreSetupError(f"no municipality server certificate in the PKI names {codes}")
    cert, key = pki.municipality_server(name).read()
    return FakeServerConfig(cert, key, pki.network_ca_cert.read_bytes(), name, bind, advertise)


def _signer(pki: PkiDir | None) -> Any:
    """Document signing for the fake: the PKI's signer of each code, else a key of its own."""
    own = ec.generate_private_key(ec.SECP256R1())
    cache: dict[str, tuple[ec.EllipticCurvePrivateKey, str]] = {}

    def signer(code: str) -> tuple[ec.EllipticCurvePrivateKey, str]:
        if code not in cache:
            paths = pki.document_signer(code) if pki is not None else None
            if paths is not None and paths.cert.exists():
                issued = paths.load()
                cache[code] = (issued.key, key_id_of(issued.certificate))  # type: ignore[assignment]
            else:
                cache[code] = (own, f"conformance-{code}")
        return cache[code]

    return signer


def _codes(pki: PkiDir | None, given: tuple[str, ...]) -> tuple[str, ...]:
    if given:
        codes = given
    elif pki is not None and pki.manifest().servers:
        codes = tuple(max(pki.manifest().servers.values(), key=len))
    else:
        codes = ()
    if len(codes) < 2:
        raise CentreSetupError("the centre role needs two municipality codes (--municipality A B)")
    return codes[:2]


def centre_context(opts: Any, wire: Wire, now: dt.datetime,
                   docsign_roots: tuple[x509.Certificate, ...]) -> CentreContext:
    """The context of a centre run; call ``ctx.close()`` when done (stops the fake)."""
    pki = PkiDir(opts.pki) if opts.pki is not None else None
    extra = dict(opts.extra)
    codes = _codes(pki, tuple(opts.municipalities))
    identities = {**wire.config.identities, **_identities(pki, codes, extra)}
    identities["terminal"] = identities["caller"]
    wire.config = dataclasses.replace(wire.config, identities=identities)
    cards_dir = card_directory()
    if extra.get("jpki_ca_cert") and extra.get("jpki_ca_key"):
        cards = CardAuthority.from_files(extra["jpki_ca_cert"], extra["jpki_ca_key"], cards_dir)
    elif pki is not None:
        paths = pki.jpki_ca_paths
        cards = CardAuthority.from_files(paths.cert, paths.key, cards_dir)
    else:
        cards = CardAuthority.generated(now, cards_dir)
    fake = FakeMunicipality(codes, _signer(pki))
    config = _fake_config(pki, codes, extra)
    served = background_server(lambda: serve_fake(fake, config))
    endpoint = served.__enter__()
    ctx = CentreContext(
        wire=wire, codes=codes, now=now, seed=opts.seed, examples=opts.examples, fake=fake,
        endpoint=endpoint, cards=cards, stranger=CardAuthority.generated(now, cards_dir),
        make_authority=lambda: CardAuthority.generated(now, cards_dir),
        docsign_roots=docsign_roots,
        relay_wait=float(extra.get("relay_wait") or 30.0),
        quiet_wait=float(extra.get("quiet_wait") or 1.5),
    )
    ctx.closers.append(lambda: shutil.rmtree(cards_dir, ignore_errors=True))
    ctx.closers.append(lambda: served.__exit__(None, None, None))
    return ctx
