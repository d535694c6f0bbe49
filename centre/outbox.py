"""The durable outbox: commits and cancels relayed to municipalities until acknowledged
(ISSUE-OUTBOX), and the sweeper that expires what nobody completed (ISSUE-SWEEPER).

An entry is written in the same transaction as the ledger change that needs it, so a crash can
never leave one without the other. Any worker may relay any entry: claiming one pushes its
next attempt into the future (a lease), so two workers rarely send the same call, and when
they do the request_id (derived from the issuance id) makes the second a no-op.

Actions: COMMIT (reservation_id), CANCEL (reservation_id) and CANCEL_PREPARE (the reservation
id is unknown: a prepare timed out or the centre crashed before storing it; the municipality
is asked with GetReservation(prepare_request_id) first).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from centre import ledger
from centre.context import Centre
from konbini.common.v1 import types_pb2
from konbini.errors import KonbiniError
from konbini.issuing.v1 import issuing_pb2
from konbini.storage import Tx, to_micros

log = logging.getLogger(__name__)

COMMIT, CANCEL, CANCEL_PREPARE = "COMMIT", "CANCEL", "CANCEL_PREPARE"
LEASE = dt.timedelta(seconds=30)
MAX_BACKOFF_S = 60.0
# A prepare that never arrived leaves nothing to cancel; ask a few times (it may still land).
NOT_FOUND_RETRIES = 3
RELAY_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Entry:
    """One relay to do."""

    entry_id: str
    issuance_id: str
    action: str
    municipality_code: str
    reservation_id: str | None
    prepare_request_id: str | None
    cause: str
    attempts: int


def enqueue(tx: Tx, *, entry_id: str, issuance_id: str, action: str, municipality_code: str,
            reservation_id: str | None, prepare_request_id: str | None, now_us: int,
            cause: str = "") -> None:
    """Add a relay in the caller's transaction (once per issuance and action)."""
    tx.execute(
        "INSERT INTO outbox (entry_id, issuance_id, action, municipality_code, reservation_id,"
        " prepare_request_id, cause, attempts, next_attempt_at, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?, ?) ON CONFLICT (issuance_id, action) DO NOTHING",
        (entry_id, issuance_id, action, municipality_code, reservation_id, prepare_request_id,
         cause, now_us, now_us),
    )


def _entry(r: dict) -> Entry:
    return Entry(str(r["entry_id"]), str(r["issuance_id"]), str(r["action"]),
                 str(r["municipality_code"]), r["reservation_id"], r["prepare_request_id"],
                 str(r["cause"]), int(r["attempts"]))


_SELECT = ("SELECT entry_id, issuance_id, action, municipality_code, reservation_id,"
           " prepare_request_id, cause, attempts FROM outbox")


def due_ids(tx: Tx, now_us: int, limit: int = 20) -> list[str]:
    """Ids of entries due now (run read-only: a writing range scan would conflict with every
    new entry on PostgreSQL)."""
    return [str(r["entry_id"]) for r in tx.execute(
        "SELECT entry_id FROM outbox WHERE done_at IS NULL AND next_attempt_at <= ?"
        " ORDER BY next_attempt_at LIMIT ?", (now_us, limit)).fetchall()]


def claim(tx: Tx, entry_ids: list[str], now_us: int) -> list[Entry]:
    """Lease the entries that are still due (by key), for LEASE."""
    lease_until = now_us + to_micros_delta(LEASE)
    claimed = []
    for entry_id in entry_ids:
        r = tx.execute(f"{_SELECT} WHERE entry_id = ? AND done_at IS NULL"
                       " AND next_attempt_at <= ?", (entry_id, now_us)).fetchone()
        if r is None:
            continue
        tx.execute("UPDATE outbox SET next_attempt_at = ? WHERE entry_id = ?",
                   (lease_until, entry_id))
        claimed.append(_entry(r))
    return claimed


def claim_one(tx: Tx, issuance_id: str, action: str, now_us: int) -> Entry | None:
    """The entry of this issuance and action if it is not done, leased to this caller."""
    r = tx.execute(
        f"{_SELECT} WHERE issuance_id = ? AND action = ? AND done_at IS NULL",
        (issuance_id, action),
    ).fetchone()
    if r is None:
        return None
    tx.execute("UPDATE outbox SET next_attempt_at = ? WHERE entry_id = ?",
               (now_us + to_micros_delta(LEASE), r["entry_id"]))
    return _entry(r)


def pending(tx: Tx) -> list[Entry]:
    """Every entry not yet acknowledged (for operators and tests)."""
    return [_entry(r) for r in tx.execute(
        f"{_SELECT} WHERE done_at IS NULL ORDER BY created_at").fetchall()]


def to_micros_delta(delta: dt.timedelta) -> int:
    """A timedelta in microseconds."""
    return int(delta.total_seconds() * 1_000_000)


def _backoff_s(attempts: int) -> float:
    return min(MAX_BACKOFF_S, 0.5 * 2 ** min(attempts, 10))


class Relay:
    """Sends outbox entries and records the outcome."""

    def __init__(self, centre: Centre) -> None:
        self._centre = centre

    async def _call(self, entry: Entry) -> tuple[bool, str]:
        """(done, note): send the entry once."""
        router = self._centre.router
        code = entry.municipality_code
        muni = types_pb2.MunicipalityCode(value=code)
        reservation_id = entry.reservation_id
        if entry.action == CANCEL_PREPARE:
            try:
                found = await router.call(code, "GetReservation", issuing_pb2.GetReservationRequest(
                    municipality_code=muni, prepare_request_id=entry.prepare_request_id or ""),
                    time_remaining=RELAY_TIMEOUT_S)
            except KonbiniError as error:
                if error.reason == "RESERVATION_NOT_FOUND":
                    done = entry.attempts + 1 >= NOT_FOUND_RETRIES
                    return done, "RESERVATION_NOT_FOUND"
                raise
            if found.state != types_pb2.ISSUANCE_STATE_RESERVED:
                return True, types_pb2.IssuanceState.Name(found.state)
            reservation_id = found.reservation_id
        if entry.action == COMMIT:
            response = await router.call(code, "CommitIssuance", issuing_pb2.CommitIssuanceRequest(
                request_id=f"commit-{entry.issuance_id}", municipality_code=muni,
                reservation_id=reservation_id or ""), time_remaining=RELAY_TIMEOUT_S)
            committed_at = to_micros(response.committed_at.ToDatetime(tzinfo=dt.UTC))
            numbers = ",".join(response.issue_numbers)
            await self._centre.store.run(
                lambda tx: ledger.record_commit_ack(tx, entry.issuance_id, committed_at, numbers))
            return True, "COMMITTED"
        await router.call(code, "CancelIssuance", issuing_pb2.CancelIssuanceRequest(
            request_id=f"cancel-{entry.issuance_id}", municipality_code=muni,
            reservation_id=reservation_id or "", cause=entry.cause),
            time_remaining=RELAY_TIMEOUT_S)
        return True, "CANCELLED"

    async def send(self, entry: Entry) -> bool:
        """Relay one entry; True once acknowledged. Failures are rescheduled with backoff."""
        centre = self._centre
        try:
            done, note = await self._call(entry)
        except KonbiniError as error:
            done, note = self._final_refusal(entry, error)
            reason = error.reason
            if done:
                log.error("outbox %s %s for issuance %s refused: %s", entry.action,
                          entry.entry_id, entry.issuance_id, reason)
                await centre.store.run(lambda tx: self._settle_refused(tx, entry, reason))
        now_us = to_micros(await centre.time.now())
        next_us = now_us + int(_backoff_s(entry.attempts) * 1_000_000)

        def finish(tx: Tx) -> None:
            if done:
                tx.execute("UPDATE outbox SET done_at = ?, attempts = attempts + 1,"
                           " last_error = ? WHERE entry_id = ?", (now_us, note, entry.entry_id))
                centre.audit.append(tx, "outbox.done", {
                    "issuance_id": entry.issuance_id, "outcome": f"{entry.action}:{note}",
                    "municipality_code": entry.municipality_code})
            else:
                tx.execute("UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?,"
                           " last_error = ? WHERE entry_id = ?", (next_us, note, entry.entry_id))

        await centre.store.run(finish)
        return done

    @staticmethod
    def _final_refusal(entry: Entry, error: KonbiniError) -> tuple[bool, str]:
        """Whether a refusal ends the entry (retrying cannot change it)."""
        final = {"RESERVATION_EXPIRED", "RESERVATION_CANCELLED", "RESERVATION_COMMITTED",
                 "RESERVATION_NOT_FOUND", "MUNICIPALITY_UNKNOWN"}
        return error.reason in final, error.reason

    @staticmethod
    def _settle_refused(tx: Tx, entry: Entry, reason: str) -> None:
        # A commit the municipality refuses was never an issue record: never charge it.
        if entry.action == COMMIT and reason in ("RESERVATION_EXPIRED", "RESERVATION_CANCELLED",
                                                 "RESERVATION_NOT_FOUND"):
            tx.execute("UPDATE ledger SET state = ? WHERE issuance_id = ? AND state = ?",
                       (ledger.EXPIRED, entry.issuance_id, ledger.COMMITTED))

    async def send_now(self, issuance_id: str, action: str) -> bool:
        """Try the entry of a completion right away (the background loop retries it)."""
        now_us = to_micros(await self._centre.time.now())
        entry = await self._centre.store.run(
            lambda tx: claim_one(tx, issuance_id, action, now_us))
        if entry is None:
            return True
        return await self.send(entry)

    async def run_once(self) -> int:
        """Relay every due entry once; return how many were acknowledged."""
        now_us = to_micros(await self._centre.time.now())
        store = self._centre.store
        ids = await store.run(lambda tx: due_ids(tx, now_us), write=False)
        if not ids:
            return 0
        entries = await store.run(lambda tx: claim(tx, ids, now_us))
        results = await asyncio.gather(*(self.send(e) for e in entries))
        return sum(1 for r in results if r)


async def sweep_once(centre: Centre) -> int:
    """Expire open issuances past their expiry and queue their cancel; return how many."""
    now = await centre.time.now()
    now_us = to_micros(now)
    requested_before = to_micros(now - centre.timing.requested_timeout)
    # The range scan runs read-only (see due_ids); each row is then moved by key.
    rows = await centre.store.run(lambda tx: ledger.overdue(tx, now_us, requested_before),
                                  write=False)
    if not rows:
        return 0
    entry_ids = [centre.new_id() for _ in rows]

    def expire(tx: Tx) -> int:
        count = 0
        for row, entry_id in zip(rows, entry_ids, strict=True):
            if not ledger.set_state(tx, row.issuance_id, ledger.EXPIRED, now_us,
                                    only_from=ledger.OPEN_STATES):
                continue
            current = ledger.by_id(tx, row.issuance_id)
            reservation_id = current.reservation_id if current else row.reservation_id
            enqueue(tx, entry_id=entry_id, issuance_id=row.issuance_id,
                    action=CANCEL if reservation_id else CANCEL_PREPARE,
                    municipality_code=row.municipality_code, reservation_id=reservation_id,
                    prepare_request_id=row.prepare_request_id, now_us=now_us, cause="expired")
            centre.audit.append(tx, "issuance.expired", {
                "issuance_id": row.issuance_id, "municipality_code": row.municipality_code,
                "state": row.state})
            count += 1
        return count

    return await centre.store.run(expire)


async def run_background(centre: Centre, relay_interval_s: float, sweep_interval_s: float,
                         extra: Sequence[Callable[[], Awaitable[object]]] = ()) -> None:
    """The relay and sweeper loop of one worker (plus ``extra`` jobs each round, such as the
    audit flush); runs until cancelled."""
    relay = Relay(centre)
    last_sweep = 0.0
    loop = asyncio.get_running_loop()
    while True:
        try:
            if loop.time() - last_sweep >= sweep_interval_s:
                last_sweep = loop.time()
                await sweep_once(centre)
            await relay.run_once()
            for job in extra:
                await job()
        except asyncio.CancelledError:
            raise
        except Exception:  # keep relaying: the next round retries (log without details)
            log.exception("outbox round failed")
        await asyncio.sleep(relay_interval_s)
