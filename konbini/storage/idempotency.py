"""Idempotency records: every mutating RPC is idempotent on its client-chosen request_id.

A record is keyed by (scope, caller, request_id): ``scope`` names the operation
(``"centre.RequestIssuance"``), ``caller`` the authenticated peer identity (from its
certificate, so one caller can never replay another's request). It holds the SHA-256
fingerprint of the request and the outcome: the serialized response, or a typed refusal.

The record is written in the same transaction as the effect, so a crash never leaves one without
the other, and its primary key makes concurrent duplicates end with exactly one effect: the
losers' transactions fail, rerun, and find the winner's record.

Add ``idempotency_migration(n)`` to a side's migration list, then either call
:func:`execute_once` or use :func:`lookup` and :func:`record` inside your own transaction.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from konbini.errors import KonbiniError
from konbini.storage.errors import TransactionConflict, UniqueViolation
from konbini.storage.migrations import Migration
from konbini.storage.store import Store, Tx

REQUEST_ID_REUSED = "REQUEST_ID_REUSED"

IDEMPOTENCY_TABLE_SQL = """
CREATE TABLE idempotency_records (
    scope TEXT NOT NULL,
    caller TEXT NOT NULL,
    request_id TEXT NOT NULL,
    fingerprint BLOB NOT NULL,       -- SHA-256 of the canonical request bytes
    response BLOB,                   -- serialized response, or NULL for a refusal
    error_reason TEXT,               -- KonbiniError.reason, or NULL for a response
    error_message TEXT,
    error_metadata TEXT,             -- JSON object of KonbiniError.metadata
    created_at BIGINT NOT NULL,      -- microseconds since the epoch, UTC
    PRIMARY KEY (scope, caller, request_id),
    CHECK ((response IS NULL) <> (error_reason IS NULL))
);
CREATE INDEX idempotency_records_created_at ON idempotency_records (created_at);
"""


def idempotency_migration(version: int) -> Migration:
    """The migration creating ``idempotency_records``, at the version the side chooses."""
    return Migration(version, "idempotency records", IDEMPOTENCY_TABLE_SQL)


class DeterministicMessage(Protocol):
    """A protobuf message (anything with deterministic serialization)."""

    def SerializeToString(self, *, deterministic: bool = ...) -> bytes: ...


def request_fingerprint(request: bytes | DeterministicMessage) -> bytes:
    """SHA-256 of the request's canonical bytes (deterministic protobuf serialization).

    Deterministic serialization is stable within one implementation, which is all a side needs:
    it fingerprints the requests it parsed itself.
    """
    data = request if isinstance(request, bytes) else request.SerializeToString(deterministic=True)
    return hashlib.sha256(data).digest()


@dataclass(frozen=True)
class StoredOutcome:
    """What a request_id produced the first time: a response or a typed refusal."""

    response: bytes | None
    error_reason: str | None = None
    error_message: str = ""
    error_metadata: Mapping[str, str] = field(default_factory=dict)
    created_at: int = 0

    def error(self) -> KonbiniError | None:
        """The stored refusal as a fresh exception, or None for a response."""
        if self.error_reason is None:
            return None
        return KonbiniError(
            self.error_reason, self.error_message, metadata=dict(self.error_metadata)
        )

    def replay(self) -> bytes:
        """Return the stored response, or raise the stored refusal."""
        error = self.error()
        if error is not None:
            raise error
        assert self.response is not None  # the table's CHECK guarantees one of the two
        return self.response


def lookup(
    tx: Tx, scope: str, caller: str, request_id: str, fingerprint: bytes
) -> StoredOutcome | None:
    """The stored outcome of this request_id, or None if it is new.

    Raises ``KonbiniError("REQUEST_ID_REUSED")`` if the request_id was used for a different
    request (another fingerprint).
    """
    _check_key(scope, caller, request_id)
    row = tx.execute(
        "SELECT fingerprint, response, error_reason, error_message, error_metadata, created_at"
        " FROM idempotency_records WHERE scope = ? AND caller = ? AND request_id = ?",
        (scope, caller, request_id),
    ).fetchone()
    if row is None:
        return None
    if bytes(row["fingerprint"]) != fingerprint:
        raise KonbiniError(
            REQUEST_ID_REUSED,
            "this request_id was already used for a different request",
            metadata={"request_id": request_id},
        )
    return StoredOutcome(
        response=None if row["response"] is None else bytes(row["response"]),
        error_reason=row["error_reason"],
        error_message=row["error_message"] or "",
        error_metadata=json.loads(row["error_metadata"] or "{}"),
        created_at=int(row["created_at"]),
    )


def record(
    tx: Tx,
    scope: str,
    caller: str,
    request_id: str,
    fingerprint: bytes,
    *,
    now: int,
    response: bytes | None = None,
    error: KonbiniError | None = None,
) -> None:
    """Store the outcome (exactly one of ``response`` and ``error``) in ``tx``, the transaction
    that made the effect. ``now`` is microseconds since the epoch.

    If a concurrent duplicate recorded first, raises :class:`TransactionConflict` so that
    :meth:`Store.run` reruns the transaction, whose :func:`lookup` then finds that record.
    """
    _check_key(scope, caller, request_id)
    if (response is None) == (error is None):
        raise ValueError("record() takes exactly one of response and error")
    try:
        tx.execute(
            "INSERT INTO idempotency_records (scope, caller, request_id, fingerprint, response,"
            " error_reason, error_message, error_metadata, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                scope,
                caller,
                request_id,
                fingerprint,
                response,
                None if error is None else error.reason,
                None if error is None else error.message,
                None if error is None else json.dumps(error.metadata, sort_keys=True),
                now,
            ),
        )
    except UniqueViolation as exc:
        raise TransactionConflict("a concurrent duplicate of this request_id won") from exc


def execute_once(
    store: Store,
    *,
    scope: str,
    caller: str,
    request_id: str,
    fingerprint: bytes,
    now: int,
    effect: Callable[[Tx], bytes],
    remember_refusals: bool = False,
) -> bytes:
    """Run ``effect`` at most once per (scope, caller, request_id) and return its response.

    A repeat with the same fingerprint returns the stored response without running ``effect``;
    one with another fingerprint raises REQUEST_ID_REUSED. ``effect`` runs in the same
    transaction as the record and may run again if that transaction conflicts.

    A :class:`KonbiniError` from ``effect`` rolls its writes back. With ``remember_refusals``
    the refusal is stored and replayed to repeats; without it (the default: a refusal changes
    no state) a repeat is evaluated afresh.
    """

    def attempt(tx: Tx) -> StoredOutcome:
        stored = lookup(tx, scope, caller, request_id, fingerprint)
        if stored is not None:
            return stored
        response = effect(tx)
        record(tx, scope, caller, request_id, fingerprint, now=now, response=response)
        return StoredOutcome(response=response, created_at=now)

    try:
        outcome = store.run(attempt)
    except KonbiniError as exc:
        if not remember_refusals or exc.reason == REQUEST_ID_REUSED:
            raise
        refusal = exc

        def remember(tx: Tx) -> StoredOutcome:
            # A concurrent duplicate may have succeeded meanwhile: its outcome wins.
            stored = lookup(tx, scope, caller, request_id, fingerprint)
            if stored is not None:
                return stored
            record(tx, scope, caller, request_id, fingerprint, now=now, error=refusal)
            return StoredOutcome(
                response=None,
                error_reason=refusal.reason,
                error_message=refusal.message,
                error_metadata=refusal.metadata,
                created_at=now,
            )

        outcome = store.run(remember)
    return outcome.replay()


def purge_before(tx: Tx, cutoff: int) -> int:
    """Delete records created before ``cutoff`` (microseconds); returns how many.

    Keep records at least as long as clients may retry (and reservations may live).
    """
    return tx.execute("DELETE FROM idempotency_records WHERE created_at < ?", (cutoff,)).rowcount


def _check_key(scope: str, caller: str, request_id: str) -> None:
    # Sides validate request_id into a field violation first; reaching here empty is a bug.
    if not scope or not caller or not request_id:
        raise ValueError("scope, caller and request_id must all be non-empty")
