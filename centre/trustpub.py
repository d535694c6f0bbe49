"""The published trust list: one signed edition shared by every centre replica (TRUST-LIST-SIGNED).

``TrustListPublisher(pki_dir, store, clock, *, validity=timedelta(days=1))``;
:meth:`TrustListPublisher.current` returns the ``konbini.common.v1.SignedTrustList`` to hand
out. The edition lives in the store (``TRUSTPUB_MIGRATIONS``), so its sequence number keeps
increasing across restarts and is the same for every replica. A new edition is signed when the
stored one is past half its validity (``next_update = issued_at + validity``, so verifiers that
refresh by ``next_update`` always find a fresh one) or when its content changed: a scramble key
added by rotation, a document signer added or replaced in the PKI directory.

The content comes from the PKI directory: every manifest municipality's document-signing
certificate, every scramble key (current and past) and the centre's trust-list signer key.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from konbini.clock import Clock
from konbini.common.v1 import trust_pb2
from konbini.pki import PkiDir, ScrambleKeySet
from konbini.pki.trustlist import build_trust_list_at, sign_trust_list, to_proto
from konbini.pki.x509util import load_certificate
from konbini.storage import (
    Migration,
    Store,
    TransactionConflict,
    Tx,
    UniqueViolation,
    from_micros,
    to_micros,
)

TRUSTPUB_MIGRATIONS: list[Migration] = [
    Migration(
        70,
        "trust list editions",
        """
CREATE TABLE trust_list_editions (
    sequence BIGINT PRIMARY KEY,        -- the newest row is the current edition
    issued_at BIGINT NOT NULL,          -- microseconds since the epoch, UTC
    next_update BIGINT NOT NULL,
    content_digest BLOB NOT NULL,       -- SHA-256 of the signers and scramble keys listed
    trust_list BLOB NOT NULL,           -- the exact signed bytes
    signature BLOB NOT NULL,
    signer_certificate_der BLOB NOT NULL
);
""",
    ),
]


@dataclass(frozen=True)
class _Material:
    """What an edition lists, read from the PKI directory, and its digest."""

    signers: tuple[x509.Certificate, ...]
    scramble_keys: ScrambleKeySet
    signer_key: ec.EllipticCurvePrivateKey
    signer_cert: x509.Certificate
    digest: bytes


@dataclass(frozen=True)
class _Edition:
    sequence: int
    issued_at: dt.datetime
    digest: bytes
    signed: trust_pb2.SignedTrustList


class TrustListPublisher:
    """Serves the current signed trust list; signs a new edition when needed."""

    def __init__(
        self,
        pki_dir: PkiDir,
        store: Store,
        clock: Clock,
        *,
        validity: dt.timedelta = dt.timedelta(days=1),
    ) -> None:
        if validity <= dt.timedelta(0):
            raise ValueError("validity must be positive")
        self._pki = pki_dir
        self._store = store
        self._clock = clock
        self._validity = validity
        self._lock = threading.Lock()
        self._cached: _Edition | None = None

    def current(self) -> trust_pb2.SignedTrustList:
        """The edition to publish now (blocking: reads files and the store; call it from a
        thread in async code)."""
        now = self._clock.now()
        material = self._material()
        with self._lock:
            cached = self._cached
            if cached is not None and self._usable(cached, material.digest, now):
                return cached.signed
            edition = self._store.run(lambda tx: self._current_in(tx, material, now))
            self._cached = edition
            return edition.signed

    def _usable(self, edition: _Edition, digest: bytes, now: dt.datetime) -> bool:
        return (
            edition.digest == digest
            and edition.issued_at <= now < edition.issued_at + self._validity / 2
        )

    def _material(self) -> _Material:
        signers = tuple(
            load_certificate(self._pki.document_signer(code).cert)
            for code in self._pki.manifest().municipalities
        )
        keys = ScrambleKeySet.load(self._pki.scramble_keys)
        issued = self._pki.trust_list_signer.load()
        if not isinstance(issued.key, ec.EllipticCurvePrivateKey):
            raise ValueError("the trust-list signer key must be ECDSA P-256")
        h = hashlib.sha256(b"konbini.trustpub.v1")
        for cert in (*signers, issued.certificate):
            der = cert.public_bytes(Encoding.DER)
            h.update(len(der).to_bytes(4, "big") + der)
        h.update(keys.to_json())
        return _Material(signers, keys, issued.key, issued.certificate, h.digest())

    def _current_in(self, tx: Tx, material: _Material, now: dt.datetime) -> _Edition:
        row = tx.execute(
            "SELECT sequence, issued_at, content_digest, trust_list, signature,"
            " signer_certificate_der FROM trust_list_editions ORDER BY sequence DESC LIMIT 1"
        ).fetchone()
        if row is not None:
            stored = _Edition(
                sequence=int(row["sequence"]),
                issued_at=from_micros(int(row["issued_at"])),
                digest=bytes(row["content_digest"]),
                signed=trust_pb2.SignedTrustList(
                    trust_list=bytes(row["trust_list"]),
                    signature=bytes(row["signature"]),
                    signer_certificate_der=bytes(row["signer_certificate_der"]),
                ),
            )
            # Another replica may have signed it already: everyone publishes the same edition.
            if self._usable(stored, material.digest, now):
                return stored
        sequence = 1 if row is None else int(row["sequence"]) + 1
        trust_list = build_trust_list_at(
            now,
            sequence=sequence,
            next_update_in=self._validity,
            document_signers=material.signers,
            scramble_keys=material.scramble_keys,
        )
        signed = to_proto(sign_trust_list(trust_list, material.signer_key, material.signer_cert))
        # The primary key on sequence makes two replicas that sign at once conflict; the
        # loser's transaction reruns and finds the winner's edition.
        try:
            tx.execute(
                "INSERT INTO trust_list_editions (sequence, issued_at, next_update,"
                " content_digest, trust_list, signature, signer_certificate_der)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    sequence,
                    to_micros(now),
                    to_micros(now + self._validity),
                    material.digest,
                    signed.trust_list,
                    signed.signature,
                    signed.signer_certificate_der,
                ),
            )
        except UniqueViolation as exc:
            raise TransactionConflict("another replica signed this edition") from exc
        return _Edition(sequence, now, material.digest, signed)
