"""Staged audit entries: written in the caller's transaction, chained shortly after.

The audit chain (centre.audit) has one head, so appending to it inside every issuance
transaction would serialize all of them (on PostgreSQL SERIALIZABLE, 100 concurrent sessions
exhaust the conflict retries). Instead :meth:`StagedAudit.append` inserts the entry into
``audit_staging`` in the caller's transaction (no shared row, so no contention; the entry is
durable exactly when the effect is), and :meth:`StagedAudit.flush` (the background task of
every worker) moves staged entries into the chain in their order, in one transaction per batch.
Fields are checked against the audit allow-list at staging time, so a bad field fails the call
that made it, never the flush.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable, Mapping

from centre.audit import AuditLog, canonical_fields
from konbini.clock import Clock
from konbini.storage import AsyncStore, Tx, to_micros

BATCH = 200
_EVENT = re.compile(r"^[a-z][a-z0-9_.]{0,63}$")  # as centre.audit accepts


class StagedAudit:
    """An audit sink for hot paths, in front of an :class:`AuditLog`."""

    def __init__(self, log: AuditLog, store: AsyncStore, clock: Clock,
                 token: Callable[[int], str] = secrets.token_hex) -> None:
        self.log = log
        self._store = store
        self._clock = clock
        self._token = token

    def append(self, tx: Tx, event: str, fields: Mapping[str, str]) -> None:
        """Stage one entry in the caller's transaction."""
        if not _EVENT.match(event):
            raise ValueError(f"audit event {event!r} must match {_EVENT.pattern}")
        canonical = canonical_fields(fields)  # refuse personal data now, not at flush time
        staged_id = f"{to_micros(self._clock.now()):020d}-{self._token(8)}"
        tx.execute("INSERT INTO audit_staging (staged_id, event, fields) VALUES (?, ?, ?)",
                   (staged_id, event, canonical))

    async def flush(self) -> int:
        """Chain the staged entries (oldest first); return how many were chained.

        The scan of the staging table runs read-only: on PostgreSQL a writing transaction that
        read the whole range would conflict with every transaction staging an entry meanwhile.
        The chaining transaction then touches the staged rows by key only.
        """
        total = 0
        while True:
            ids = await self._store.run(lambda tx: [str(r["staged_id"]) for r in tx.execute(
                "SELECT staged_id FROM audit_staging ORDER BY staged_id LIMIT ?", (BATCH,)
            ).fetchall()], write=False)
            if not ids:
                return total

            def move(tx: Tx, ids: list[str] = ids) -> int:
                moved = 0
                for staged_id in ids:
                    row = tx.execute("SELECT event, fields FROM audit_staging WHERE staged_id = ?",
                                     (staged_id,)).fetchone()
                    if row is None:  # another worker chained it
                        continue
                    self.log.append(tx, str(row["event"]), json.loads(row["fields"]))
                    tx.execute("DELETE FROM audit_staging WHERE staged_id = ?", (staged_id,))
                    moved += 1
                return moved

            total += await self._store.run(move)
            if len(ids) < BATCH:
                return total
