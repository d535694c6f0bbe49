"""The development PKI directory: :class:`PkiDir` names every file, :func:`pki_init` makes them.

Layout (servers and the demo use the :class:`PkiDir` properties, never these names)::

    pki.json                                   what was made (municipalities, servers, ...)
    network/ca.pem, ca.key                     operator CA (ECDSA P-256)
    network/centre/{server,client}.{pem,key}
    network/municipalities/<code>/client.{pem,key}
    network/servers/<name>/server.{pem,key}    municipality servers (one or more codes each)
    network/terminals/<operator>_<id>/client.{pem,key}
    network/conformance/client.{pem,key}
    docsign/ca.{pem,key}                       document-signing CA (root of the trust list)
    docsign/municipalities/<code>.{pem,key}
    docsign/trust-list-signer.{pem,key}
    centre/scramble-keys.json
    jpki/ca.{pem,key}, jpki/revocations.json, jpki/crl.pem

Re-running :func:`pki_init` never overwrites: existing items are kept, missing ones are made
(signed by the existing CAs), and an item with only some of its files present is an error.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from konbini.municode import validate_municipality_code
from konbini.pki.docsign import create_docsign_ca, issue_document_signer, issue_trust_list_signer
from konbini.pki.files import PUBLIC_MODE, write_atomic
from konbini.pki.identity import (
    centre_uri,
    conformance_uri,
    municipality_uri,
    terminal_uri,
)
from konbini.pki.jpki import JpkiCa
from konbini.pki.scramble import ScrambleKeySet
from konbini.pki.trustlist import SignedTrustList, build_trust_list_at, sign_trust_list
from konbini.pki.x509util import (
    Issued,
    issue_tls_leaf,
    load_certificate,
    load_issued,
    make_ca,
    new_ec_key,
    save_issued,
    simple_name,
)

DEFAULT_MUNICIPALITIES: tuple[str, ...] = ("192015", "131016", "131041")
DEFAULT_SERVERS: Mapping[str, tuple[str, ...]] = {
    "kofu": ("192015",),
    "tokyo-cloud": ("131016", "131041"),
}
DEFAULT_TERMINALS: tuple[tuple[str, str], ...] = (
    ("seven", "T0001"),
    ("lawson", "T0002"),
    ("family", "T0003"),
)
DEFAULT_CENTRE_ID = "centre"
DEFAULT_CONFORMANCE_NAME = "suite"

CA_VALIDITY = dt.timedelta(days=3650)
LEAF_VALIDITY = dt.timedelta(days=730)
SCRAMBLE_KEY_VALIDITY = dt.timedelta(days=365)
INITIAL_CRL_VALIDITY = dt.timedelta(days=1)
LOOPBACK_DNS = ("localhost",)
LOOPBACK_IPS = ("127.0.0.1", "::1")


class PkiInitError(RuntimeError):
    """The directory holds a partial item or the requested configuration is inconsistent."""


@dataclass(frozen=True)
class CertPaths:
    """A certificate file and its private key file."""

    cert: Path
    key: Path

    def read(self) -> tuple[bytes, bytes]:
        """(certificate PEM, key PEM)."""
        return self.cert.read_bytes(), self.key.read_bytes()

    def load(self) -> Issued:
        """The parsed certificate and key."""
        return load_issued(self.cert, self.key)


@dataclass(frozen=True)
class PkiManifest:
    """What a PKI directory was made for."""

    centre_id: str = DEFAULT_CENTRE_ID
    conformance_name: str = DEFAULT_CONFORMANCE_NAME
    municipalities: tuple[str, ...] = ()
    servers: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    terminals: tuple[tuple[str, str], ...] = ()


class PkiDir:
    """Paths of a development PKI directory."""

    def __init__(self, path: Path | str) -> None:
        self.root = Path(path)

    def _pair(self, directory: Path, stem: str) -> CertPaths:
        return CertPaths(directory / f"{stem}.pem", directory / f"{stem}.key")

    @property
    def manifest_path(self) -> Path:
        """The record of what the directory holds."""
        return self.root / "pki.json"

    # network PKI
    @property
    def network_ca(self) -> CertPaths:
        """The operator CA."""
        return self._pair(self.root / "network", "ca")

    @property
    def network_ca_cert(self) -> Path:
        """The operator CA certificate (root_certificates for every TLS peer)."""
        return self.network_ca.cert

    @property
    def centre_server(self) -> CertPaths:
        """The centre's TLS server certificate."""
        return self._pair(self.root / "network" / "centre", "server")

    @property
    def centre_client(self) -> CertPaths:
        """The centre's client certificate (for calls to municipalities)."""
        return self._pair(self.root / "network" / "centre", "client")

    def municipality_client(self, code: str) -> CertPaths:
        """A municipality's client certificate (for calls to the centre)."""
        return self._pair(self.root / "network" / "municipalities" / code, "client")

    def municipality_server(self, name: str) -> CertPaths:
        """A municipality server's TLS server certificate (one URI per tenant code)."""
        return self._pair(self.root / "network" / "servers" / name, "server")

    def terminal_client(self, store_operator: str, terminal_id: str) -> CertPaths:
        """A terminal's client certificate."""
        return self._pair(
            self.root / "network" / "terminals" / f"{store_operator}_{terminal_id}", "client"
        )

    @property
    def conformance_client(self) -> CertPaths:
        """The conformance suite's client certificate."""
        return self._pair(self.root / "network" / "conformance", "client")

    # document signing
    @property
    def docsign_ca(self) -> CertPaths:
        """The document-signing CA (trust anchor of the trust list)."""
        return self._pair(self.root / "docsign", "ca")

    def document_signer(self, code: str) -> CertPaths:
        """A municipality's document-signing certificate."""
        return self._pair(self.root / "docsign" / "municipalities", code)

    @property
    def trust_list_signer(self) -> CertPaths:
        """The centre's trust-list signing certificate."""
        return self._pair(self.root / "docsign", "trust-list-signer")

    @property
    def scramble_keys(self) -> Path:
        """The centre's scramble-key set (JSON, secret)."""
        return self.root / "centre" / "scramble-keys.json"

    # JPKI
    @property
    def jpki_ca_paths(self) -> CertPaths:
        """The JPKI test CA certificate and key."""
        return self._pair(self.root / "jpki", "ca")

    @property
    def jpki_ca_cert(self) -> Path:
        """The JPKI test CA certificate (what the centre trusts for cards)."""
        return self.jpki_ca_paths.cert

    @property
    def jpki_revocations(self) -> Path:
        """The JPKI revocation database."""
        return self.root / "jpki" / "revocations.json"

    @property
    def jpki_crl(self) -> Path:
        """The published CRL (PEM) that the centre reads."""
        return self.root / "jpki" / "crl.pem"

    def jpki_ca(self) -> JpkiCa:
        """The JPKI test CA object (issue, revoke, publish CRLs)."""
        paths = self.jpki_ca_paths
        return JpkiCa(paths.cert, paths.key, self.jpki_revocations, self.jpki_crl)

    def manifest(self) -> PkiManifest:
        """What this directory was made for (empty if not initialised)."""
        if not self.manifest_path.exists():
            return PkiManifest()
        raw = json.loads(self.manifest_path.read_bytes())
        return PkiManifest(
            centre_id=raw["centre_id"],
            conformance_name=raw["conformance_name"],
            municipalities=tuple(raw["municipalities"]),
            servers={k: tuple(v) for k, v in raw["servers"].items()},
            terminals=tuple((t[0], t[1]) for t in raw["terminals"]),
        )

    def signed_trust_list_at(
        self, now: dt.datetime, *, sequence: int, next_update_in: dt.timedelta
    ) -> SignedTrustList:
        """A trust list of every municipality's document signer and the scramble keys, signed
        with the centre's trust-list key."""
        signer = self.trust_list_signer.load()
        certs = [
            load_certificate(self.document_signer(code).cert)
            for code in self.manifest().municipalities
        ]
        trust_list = build_trust_list_at(
            now,
            sequence=sequence,
            next_update_in=next_update_in,
            document_signers=certs,
            scramble_keys=ScrambleKeySet.load(self.scramble_keys),
        )
        if not isinstance(signer.key, ec.EllipticCurvePrivateKey):
            raise PkiInitError("the trust-list signer key must be ECDSA P-256")
        return sign_trust_list(trust_list, signer.key, signer.certificate)


@dataclass
class InitReport:
    """Which items :func:`pki_init` created and which it found and kept."""

    created: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)


class _Builder:
    """Creates each missing item once; refuses partial items."""

    def __init__(self, report: InitReport) -> None:
        self.report = report

    def ensure(self, label: str, paths: Sequence[Path], make: Callable[[], None]) -> None:
        present = [p.exists() for p in paths]
        if all(present):
            self.report.kept.append(label)
            return
        if any(present):
            have = ", ".join(str(p) for p, ok in zip(paths, present, strict=True) if ok)
            raise PkiInitError(
                f"{label} is incomplete (only {have} exists); remove its files to recreate it"
            )
        make()
        self.report.created.append(label)

    def ensure_pair(self, label: str, pair: CertPaths, make: Callable[[], Issued]) -> None:
        self.ensure(label, [pair.cert, pair.key],
                    lambda: save_issued(make(), pair.cert, pair.key))


def _check_config(
    municipalities: Sequence[str],
    servers: Mapping[str, Sequence[str]],
    terminals: Iterable[tuple[str, str]],
) -> None:
    for code in municipalities:
        if not validate_municipality_code(code):
            raise PkiInitError(f"{code!r} is not a municipality code with a valid check digit")
    for name, codes in servers.items():
        if not codes:
            raise PkiInitError(f"server {name!r} serves no municipality")
        missing = [c for c in codes if c not in municipalities]
        if missing:
            raise PkiInitError(f"server {name!r} serves {missing} which are not municipalities")
    for store_operator, terminal_id in terminals:
        terminal_uri(store_operator, terminal_id)  # validates both tokens


def pki_init(
    path: Path | str,
    *,
    municipalities: Sequence[str] | None = None,
    servers: Mapping[str, Sequence[str]] | None = None,
    terminals: Sequence[tuple[str, str]] | None = None,
    centre_id: str = DEFAULT_CENTRE_ID,
    conformance_name: str = DEFAULT_CONFORMANCE_NAME,
    now: dt.datetime | None = None,
) -> InitReport:
    """Make (or complete) a development PKI in ``path``. Never overwrites existing files.

    Defaults: the demo municipalities 192015, 131016, 131041 with servers ``kofu`` and
    ``tokyo-cloud``; when ``municipalities`` is given without ``servers``, one server named
    ``m<code>`` per municipality. The names given are merged with those already recorded.
    """
    pki = PkiDir(path)
    now = now or dt.datetime.now(dt.UTC)
    old = pki.manifest()
    if municipalities is None:
        municipalities = DEFAULT_MUNICIPALITIES
        servers = DEFAULT_SERVERS if servers is None else servers
    elif servers is None:
        servers = {f"m{code}": (code,) for code in municipalities}
    terminals = DEFAULT_TERMINALS if terminals is None else tuple(terminals)
    codes = tuple(dict.fromkeys((*old.municipalities, *municipalities)))
    all_servers = {**old.servers, **{k: tuple(v) for k, v in servers.items()}}
    all_terminals = tuple(dict.fromkeys((*old.terminals, *terminals)))
    if old.municipalities and old.centre_id != centre_id:
        raise PkiInitError(f"this PKI was made for centre {old.centre_id!r}")
    _check_config(codes, all_servers, all_terminals)

    report = InitReport()
    b = _Builder(report)
    pki.root.mkdir(parents=True, exist_ok=True)

    def new_ca(common_name: str) -> Issued:
        key = new_ec_key()
        return Issued(make_ca(simple_name(common_name), key, now, CA_VALIDITY), key)

    b.ensure_pair("operator CA", pki.network_ca, lambda: new_ca("konbini development operator CA"))
    ca = pki.network_ca.load()

    def tls(name: str, uris: list[str], *, server: bool, host: str = "") -> Callable[[], Issued]:
        # A server answers to its own name (the routes' tls_server_name) and to loopback.
        dns = (host, *LOOPBACK_DNS) if host else LOOPBACK_DNS
        extra = {"dns_names": dns, "ip_addresses": LOOPBACK_IPS} if server else {}
        return lambda: issue_tls_leaf(
            ca, name, uris, server=server, now=now, valid_for=LEAF_VALIDITY, **extra
        )

    b.ensure_pair("centre server certificate", pki.centre_server,
                  tls(f"centre {centre_id}", [centre_uri(centre_id)], server=True,
                      host=centre_id))
    b.ensure_pair("centre client certificate", pki.centre_client,
                  tls(f"centre {centre_id}", [centre_uri(centre_id)], server=False))
    for code in codes:
        b.ensure_pair(f"municipality {code} client certificate", pki.municipality_client(code),
                      tls(f"municipality {code}", [municipality_uri(code)], server=False))
    for name, served in all_servers.items():
        b.ensure_pair(f"municipality server {name} certificate", pki.municipality_server(name),
                      tls(f"municipality server {name}",
                          [municipality_uri(c) for c in served], server=True, host=name))
    for store_operator, terminal_id in all_terminals:
        b.ensure_pair(f"terminal {store_operator}:{terminal_id} client certificate",
                      pki.terminal_client(store_operator, terminal_id),
                      tls(f"terminal {store_operator} {terminal_id}",
                          [terminal_uri(store_operator, terminal_id)], server=False))
    b.ensure_pair("conformance client certificate", pki.conformance_client,
                  tls(f"conformance {conformance_name}", [conformance_uri(conformance_name)],
                      server=False))

    b.ensure_pair("document-signing CA", pki.docsign_ca,
                  lambda: create_docsign_ca(now, CA_VALIDITY))
    docsign_ca = pki.docsign_ca.load()
    for code in codes:
        b.ensure_pair(f"document signer {code}", pki.document_signer(code),
                      lambda code=code: issue_document_signer(docsign_ca, code, now,
                                                              LEAF_VALIDITY))
    b.ensure_pair("trust-list signer", pki.trust_list_signer,
                  lambda: issue_trust_list_signer(docsign_ca, centre_id, now, LEAF_VALIDITY))
    b.ensure("scramble-key set", [pki.scramble_keys],
             lambda: ScrambleKeySet(()).with_new_key(now, SCRAMBLE_KEY_VALIDITY)
             .save(pki.scramble_keys))

    jpki = pki.jpki_ca_paths
    b.ensure("JPKI test CA", [jpki.cert, jpki.key, pki.jpki_revocations],
             lambda: JpkiCa.create(jpki.cert, jpki.key, pki.jpki_revocations, pki.jpki_crl,
                                   now=now, valid_for=CA_VALIDITY))
    if not pki.jpki_crl.exists():
        pki.jpki_ca().publish_crl_at(now, INITIAL_CRL_VALIDITY)
        report.created.append("JPKI CRL")

    manifest = {
        "centre_id": centre_id,
        "conformance_name": conformance_name,
        "municipalities": list(codes),
        "servers": {k: list(v) for k, v in all_servers.items()},
        "terminals": [list(t) for t in all_terminals],
    }
    write_atomic(pki.manifest_path, json.dumps(manifest, indent=2).encode(), PUBLIC_MODE)
    return report


def certificate_summary(path: Path) -> tuple[str, dt.datetime]:
    """(identity URIs or subject, not_after) of a certificate file, for ``pki show``."""
    cert: x509.Certificate = load_certificate(path)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    except x509.ExtensionNotFound:
        uris = []
    return (" ".join(uris) or cert.subject.rfc4514_string()), cert.not_valid_after_utc
