"""The centre's audit log: append-only, hash-chained, with signed checkpoints (AUDIT-CHAIN).

Each entry ``n`` stores ``hash_n = SHA-256("konbini.audit.v1" ‖ hash_{n-1} ‖ n ‖ at ‖ event ‖
fields)`` (integers as 8-byte big-endian, strings length-prefixed, ``fields`` the canonical JSON
object: sorted keys, no spaces, UTF-8; ``hash_0`` is 32 zero bytes). Every ``checkpoint_every``
entries the log signs the chain head (``"konbini.audit.checkpoint.v1" ‖ n ‖ hash_n ‖ at``,
ECDSA P-256 / SHA-256, P1363) with a centre key — the trust-list signer key of the PKI
directory, whose certificate :func:`verify` is given. Editing, removing or reordering any entry
breaks the chain; rewriting the whole chain from there on breaks the next signed checkpoint.
Entries after the newest checkpoint are protected by the chain only: removing them from the
end is detected only once a later checkpoint exists (keep ``checkpoint_every`` small).

No personal data (AUDIT-NO-PII). Detecting personal data in free text is not feasible, so
:meth:`AuditLog.append` accepts only the field names in :data:`ALLOWED_FIELDS` (ids, codes,
kinds, states, reasons, counts) and values of at most 128 characters from
``[A-Za-z0-9_.:@-]`` — no spaces and no Japanese text, so no name or address fits. A card is
named by :func:`card_ref` (a truncated hash of its serial), never by the serial itself.

Usage: ``AuditLog(store, signer_key, signer_cert, checkpoint_every=64, clock=SystemClock())``;
``log.append(tx, "platform.bind_card", {...})`` inside the caller's transaction (an append that
races another one conflicts on the sequence number and :meth:`Store.run` reruns the caller's
transaction); ``verify(store, cert) -> AuditReport``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from konbini.clock import Clock, SystemClock
from konbini.pki.docsign import key_id_of, sign_p1363, verify_p1363
from konbini.storage import (
    Migration,
    Store,
    TransactionConflict,
    Tx,
    UniqueViolation,
    to_micros,
)

AUDIT_MIGRATIONS: list[Migration] = [
    Migration(
        60,
        "audit log",
        """
CREATE TABLE audit_entries (
    seq BIGINT PRIMARY KEY,             -- 1, 2, 3, ... without gaps
    at BIGINT NOT NULL,                 -- microseconds since the epoch, UTC
    event TEXT NOT NULL,
    fields TEXT NOT NULL,               -- canonical JSON object
    entry_hash BLOB NOT NULL            -- covers the previous hash, seq, at, event, fields
);
CREATE TABLE audit_checkpoints (
    seq BIGINT PRIMARY KEY,             -- the entry whose hash is signed
    head_hash BLOB NOT NULL,
    at BIGINT NOT NULL,
    signer_key_id TEXT NOT NULL,
    signature BLOB NOT NULL             -- P1363 over checkpoint_message(seq, head_hash, at)
);
""",
    ),
]

ALLOWED_FIELDS: frozenset[str] = frozenset({
    # identifiers chosen by the system or by callers (never personal)
    "request_id", "issuance_id", "reservation_id", "session_id", "registration_id",
    "terminal_id", "store_operator", "caller", "centre_id", "card_ref",
    # codes, kinds and states
    "municipality_code", "previous_municipality_code", "register_municipality_code",
    "kind", "state", "outcome", "reason", "cause", "key_id", "sequence", "day",
    # counts and amounts
    "copies", "count", "fee_yen", "commission_yen",
})
_VALUE = re.compile(r"^[A-Za-z0-9_.:@\-]{0,128}$")
_EVENT = re.compile(r"^[a-z][a-z0-9_.]{0,63}$")
_GENESIS = bytes(32)
_ENTRY_DOMAIN = b"konbini.audit.v1"
_CHECKPOINT_DOMAIN = b"konbini.audit.checkpoint.v1"


def card_ref(serial: str) -> str:
    """How the audit log names a card: 16 hex digits of SHA-256 over its serial."""
    return hashlib.sha256(b"konbini.card.v1" + serial.encode()).hexdigest()[:16]


def canonical_fields(fields: Mapping[str, str]) -> str:
    """The fields as canonical JSON, after checking them against the allow-list.

    Raises ValueError for a field name outside :data:`ALLOWED_FIELDS` or a value that is not
    a short token (the allow-list is what keeps personal data out; see the module docstring).
    """
    for name, value in fields.items():
        if name not in ALLOWED_FIELDS:
            raise ValueError(f"audit field {name!r} is not in the allow-list")
        if not isinstance(value, str) or not _VALUE.match(value):
            raise ValueError(f"audit field {name!r} must be a short token of [A-Za-z0-9_.:@-]")
    return json.dumps(dict(fields), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _chunk(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


def entry_hash(previous: bytes, seq: int, at: int, event: str, fields_json: str) -> bytes:
    """The chain hash of one entry (see the module docstring)."""
    return hashlib.sha256(
        _ENTRY_DOMAIN + previous + seq.to_bytes(8, "big") + at.to_bytes(8, "big", signed=True)
        + _chunk(event.encode()) + _chunk(fields_json.encode())
    ).digest()


def checkpoint_message(seq: int, head_hash: bytes, at: int) -> bytes:
    """The bytes a checkpoint signature covers."""
    return (
        _CHECKPOINT_DOMAIN + seq.to_bytes(8, "big") + head_hash
        + at.to_bytes(8, "big", signed=True)
    )


class AuditLog:
    """Appends entries to the chain and signs a checkpoint every ``checkpoint_every`` entries.

    ``store`` is kept for :meth:`verify`; ``signer_key``/``signer_cert`` are a centre ECDSA
    P-256 key and its certificate (``PkiDir.trust_list_signer.load()``).
    """

    def __init__(
        self,
        store: Store,
        signer_key: ec.EllipticCurvePrivateKey,
        signer_cert: x509.Certificate,
        *,
        checkpoint_every: int = 64,
        clock: Clock | None = None,
    ) -> None:
        if checkpoint_every < 1:
            raise ValueError("checkpoint_every must be at least 1")
        if not isinstance(signer_key.curve, ec.SECP256R1):
            raise ValueError("the audit signer key must be ECDSA P-256")
        self.store = store
        self._key = signer_key
        self._cert = signer_cert
        self._key_id = key_id_of(signer_cert)
        self._every = checkpoint_every
        self._clock = clock or SystemClock()

    def append(self, tx: Tx, event: str, fields: Mapping[str, str]) -> int:
        """Add one entry in ``tx`` (the caller's transaction); return its sequence number."""
        if not _EVENT.match(event):
            raise ValueError(f"audit event {event!r} must match {_EVENT.pattern}")
        fields_json = canonical_fields(fields)
        at = to_micros(self._clock.now())
        head = tx.execute(
            "SELECT seq, entry_hash FROM audit_entries ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        seq = 1 if head is None else int(head["seq"]) + 1
        previous = _GENESIS if head is None else bytes(head["entry_hash"])
        digest = entry_hash(previous, seq, at, event, fields_json)
        try:
            tx.execute(
                "INSERT INTO audit_entries (seq, at, event, fields, entry_hash)"
                " VALUES (?, ?, ?, ?, ?)",
                (seq, at, event, fields_json, digest),
            )
        except UniqueViolation as exc:  # another transaction appended first: rerun
            raise TransactionConflict("concurrent audit append") from exc
        if seq % self._every == 0:
            signature = sign_p1363(self._key, checkpoint_message(seq, digest, at))
            tx.execute(
                "INSERT INTO audit_checkpoints (seq, head_hash, at, signer_key_id, signature)"
                " VALUES (?, ?, ?, ?, ?)",
                (seq, digest, at, self._key_id, signature),
            )
        return seq

    def verify(self) -> AuditReport:
        """:func:`verify` of this log's store with its own certificate."""
        return verify(self.store, self._cert, checkpoint_every=self._every)


@dataclass
class AuditReport:
    """What :func:`verify` found. ``ok`` when ``problems`` is empty."""

    entries: int = 0
    checkpoints: int = 0
    last_checkpoint: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _check_entries(rows: Sequence[Mapping[str, object]], report: AuditReport) -> dict[int, bytes]:
    previous = _GENESIS
    hashes: dict[int, bytes] = {}
    for expected, row in enumerate(rows, start=1):
        seq = int(row["seq"])  # type: ignore[call-overload]
        if seq != expected:
            report.problems.append(f"entry {expected} is missing (next is {seq})")
            return hashes  # the chain cannot be followed past a gap
        stored = bytes(row["entry_hash"])  # type: ignore[arg-type]
        recomputed = entry_hash(
            previous, seq, int(row["at"]), str(row["event"]), str(row["fields"])  # type: ignore[call-overload]
        )
        if stored != recomputed:
            report.problems.append(f"entry {seq} does not match its hash (edited or reordered)")
            return hashes
        hashes[seq] = stored
        previous = stored
    return hashes


def verify(
    store: Store, cert: x509.Certificate, *, checkpoint_every: int | None = None
) -> AuditReport:
    """Check the whole chain and every checkpoint against ``cert`` (the signer's certificate).
    With ``checkpoint_every`` (the log's setting), a checkpoint missing at any multiple of it
    is reported too (someone deleted it to hide a rewritten chain).

    Reports the first broken entry (an edit, a removal or a reordering breaks every hash after
    it, so later ones add nothing) and every bad checkpoint.
    """

    def read(tx: Tx) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
        entries = tx.execute(
            "SELECT seq, at, event, fields, entry_hash FROM audit_entries ORDER BY seq"
        ).fetchall()
        checkpoints = tx.execute(
            "SELECT seq, head_hash, at, signer_key_id, signature FROM audit_checkpoints"
            " ORDER BY seq"
        ).fetchall()
        return entries, checkpoints

    entries, checkpoints = store.run(read, write=False)
    report = AuditReport(entries=len(entries), checkpoints=len(checkpoints))
    hashes = _check_entries(entries, report)
    key_id = key_id_of(cert)
    for row in checkpoints:
        seq = int(row["seq"])  # type: ignore[call-overload]
        head = bytes(row["head_hash"])  # type: ignore[arg-type]
        message = checkpoint_message(seq, head, int(row["at"]))  # type: ignore[call-overload]
        if row["signer_key_id"] != key_id or not verify_p1363(
            cert, message, bytes(row["signature"])  # type: ignore[arg-type]
        ):
            report.problems.append(f"checkpoint {seq} has a bad signature")
            continue
        if seq > report.entries and seq not in hashes:
            report.problems.append(
                f"checkpoint {seq} covers entries that are no longer in the log (removed)"
            )
        elif seq in hashes and hashes[seq] != head:
            report.problems.append(f"checkpoint {seq} does not match the chain (rewritten)")
        report.last_checkpoint = seq
    if checkpoint_every:
        present = {int(row["seq"]) for row in checkpoints}  # type: ignore[call-overload]
        for seq in range(checkpoint_every, report.entries + 1, checkpoint_every):
            if seq not in present:
                report.problems.append(f"checkpoint {seq} is missing")
    return report
