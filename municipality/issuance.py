"""Two-phase issuance (ISSUE-TWO-PHASE): prepare → commit or cancel, with expiry.

prepare: a replayed request_id returns its stored reservation at once; otherwise the register
is read afresh (FRESH-NEXT), eligibility decides, issue numbers are taken from the tenant's
counter (their own short transaction, so a lost race only leaves a gap), the documents are
rendered OUTSIDE any transaction (it is slow), and the reservation is stored in ONE transaction
with the idempotency record, which re-checks the key: concurrent duplicates end with exactly one
reservation and everyone gets its documents (ONCE-REQUEST-ID). A refusal stores nothing.

commit / cancel are idempotent on request_id as well, and final: an expired or cancelled
reservation never commits (checked against the clock, even before the sweeper marks it), a
committed one never cancels. Issue numbers are unique per municipality (UNIQUE constraint).

These methods block (storage, rendering): an asyncio server runs them in threads.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import random
import time
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from google.protobuf import timestamp_pb2

from konbini.clock import JST, Clock
from konbini.common.v1 import types_pb2
from konbini.errors import FieldViolation, KonbiniError, invalid
from konbini.issuing.v1 import issuing_pb2
from konbini.register.v1 import register_pb2
from konbini.storage import (
    Store,
    TransactionConflict,
    Tx,
    UniqueViolation,
    from_micros,
    to_micros,
)
from konbini.storage.idempotency import execute_once, lookup, request_fingerprint
from municipality.documents import DocumentRequest, DocumentSigner
from municipality.eligibility import Ask, Plan, catalogue, decide
from municipality.refs import PersonRefs
from municipality.registry import Registry
from municipality.render import GlyphMissing

Composer = Callable[[DocumentRequest], list[types_pb2.Document]]

DEFAULT_TTL = dt.timedelta(minutes=10)
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
COUNTER_RETRIES = 200
ONCE_ROUNDS = 10  # the counter row is hot under load; its transaction is tiny
STATE_VALUES = {
    "RESERVED": types_pb2.ISSUANCE_STATE_RESERVED,
    "COMMITTED": types_pb2.ISSUANCE_STATE_COMMITTED,
    "CANCELLED": types_pb2.ISSUANCE_STATE_CANCELLED,
    "EXPIRED": types_pb2.ISSUANCE_STATE_EXPIRED,
}


def timestamp(instant: dt.datetime) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(instant)
    return ts


def jst_day(instant: dt.datetime) -> str:
    return instant.astimezone(JST).date().isoformat()


def issue_number(code: str, value: int) -> str:
    """The printed issue number: the municipality code and its counter."""
    return f"{code}-{value:010d}"


@dataclass(frozen=True)
class Reservation:
    """A stored reservation, without its documents."""

    id: str
    tenant: str
    state: str
    kind: int
    copies: int
    fee_yen: int
    expires_at: dt.datetime
    issue_numbers: tuple[str, ...]
    issuance_id: str
    store_operator: str

    def expired_at(self, now: dt.datetime) -> bool:
        return now >= self.expires_at


def _reservation(row: Mapping[str, object]) -> Reservation:
    return Reservation(
        id=str(row["id"]), tenant=str(row["tenant"]), state=str(row["state"]),
        kind=int(row["kind"]), copies=int(row["copies"]),  # type: ignore[call-overload]
        fee_yen=int(row["fee_yen"]),  # type: ignore[call-overload]
        expires_at=from_micros(int(row["expires_at"])),  # type: ignore[call-overload]
        issue_numbers=tuple(json.loads(str(row["issue_numbers"]))),
        issuance_id=str(row["issuance_id"]), store_operator=str(row["store_operator"]),
    )


RESERVATION_COLUMNS = (
    "id, tenant, state, kind, copies, fee_yen, expires_at, issue_numbers, issuance_id,"
    " store_operator"
)


class Issuer:
    """The issuance engine of one server (every tenant it serves)."""

    def __init__(
        self,
        store: Store,
        *,
        composer: Composer,
        signers: Mapping[str, DocumentSigner],
        clock: Clock,
        person_secret: bytes,
        ttl: dt.timedelta = DEFAULT_TTL,
        holidays: Collection[dt.date] | None = None,
    ) -> None:
        self.store = store
        self.composer = composer
        self.signers = dict(signers)
        self.clock = clock
        self.ttl = ttl
        self.holidays = holidays
        self._secret = person_secret

    def refs(self, serial: str) -> PersonRefs:
        return PersonRefs(self._secret, serial.lower())

    # -- catalogue and card holder ------------------------------------------------------------
    def catalogue(self, code: str, serial: str) -> list[types_pb2.CatalogueEntry]:
        now = self.clock.now()
        view = self.store.run(lambda tx: Registry(tx, code).card_view(serial), write=False)
        return catalogue(view, now, self.refs(serial), holidays=self.holidays)

    def card_holder(self, code: str, serial: str) -> issuing_pb2.GetCardHolderResponse:
        holder = self.store.run(lambda tx: Registry(tx, code).resident_by_card(serial.lower()),
                                write=False)
        if holder is None:
            raise KonbiniError("SUBJECT_NOT_FOUND", "no resident is bound to this card")
        return issuing_pb2.GetCardHolderResponse(name=holder.name, birth_date=holder.birth_date)

    # -- prepare ------------------------------------------------------------------------------
    def prepare(
        self, code: str, caller: str, request: issuing_pb2.PrepareIssuanceRequest
    ) -> issuing_pb2.PrepareIssuanceResponse:
        scope = f"municipality.PrepareIssuance/{code}"
        fingerprint = request_fingerprint(request)

        def replay(tx: Tx) -> issuing_pb2.PrepareIssuanceResponse | None:
            stored = lookup(tx, scope, caller, request.request_id, fingerprint)
            return None if stored is None else _stored_documents(tx, code, stored.replay())

        done = self.store.run(replay, write=False)
        if done is not None:
            return done
        now = self.clock.now()
        serial = request.card.certificate_serial.lower()
        view = self.store.run(lambda tx: Registry(tx, code).card_view(serial), write=False)
        ask = Ask(request.kind, request.options, request.copies)
        plan = decide(view, ask, now, self.refs(serial), holidays=self.holidays)
        assert view.tenant is not None  # decide refuses an unknown tenant
        numbers = self.store.run(
            lambda tx: _take_issue_numbers(tx, code, plan.copies), retries=COUNTER_RETRIES
        )
        reservation_id = uuid.uuid4().hex
        documents = self._render(view.tenant, code, plan, numbers=numbers,
                                 reservation_id=reservation_id, now=now)
        expires_at = now + self.ttl
        response = issuing_pb2.PrepareIssuanceResponse(
            reservation_id=reservation_id, documents=documents,
            fee=types_pb2.Money(yen=plan.fee_yen), expires_at=timestamp(expires_at),
        )

        def reserve(tx: Tx) -> bytes:
            _insert_reservation(tx, code, caller, request, fingerprint=fingerprint, plan=plan,
                                numbers=numbers, response=response, now=now,
                                expires_at=expires_at)
            return reservation_id.encode()

        stored_id = execute_once_patiently(
            self.store, scope=scope, caller=caller, request_id=request.request_id,
            fingerprint=fingerprint, now=to_micros(now), effect=reserve,
        )
        if stored_id.decode() == reservation_id:
            return response
        # A concurrent duplicate won: its reservation and documents are the answer.
        won = self.store.run(lambda tx: _stored_documents(tx, code, stored_id), write=False)
        assert won is not None
        return won

    def _render(self, tenant: register_pb2.Tenant, code: str, plan: Plan, *,
                numbers: Sequence[str], reservation_id: str,
                now: dt.datetime) -> list[types_pb2.Document]:
        signer = self.signers.get(code)
        if signer is None:
            raise KonbiniError("INTERNAL", "no document signer is configured for this tenant")
        request = DocumentRequest(
            tenant=tenant, signer=signer, kind=plan.kind, options=plan.options,
            residents=plan.residents, seal=plan.seal, tax=plan.tax,
            family_register=plan.family_register, register_members=plan.register_members,
            issue_numbers=tuple(numbers), reservation_id=reservation_id, issued_at=now,
        )
        try:
            return self.composer(request)
        except GlyphMissing as exc:
            raise KonbiniError("CHARACTERS_NOT_SUPPORTED",
                               "a character of the record cannot be drawn") from exc

    # -- commit and cancel --------------------------------------------------------------------
    def commit(
        self, code: str, caller: str, request: issuing_pb2.CommitIssuanceRequest
    ) -> issuing_pb2.CommitIssuanceResponse:
        now = self.clock.now()

        def effect(tx: Tx) -> bytes:
            found = _load_reservation(tx, code, request.reservation_id)
            if found.state == "COMMITTED":
                return _commit_response(tx, code, found.id).SerializeToString()
            if found.state == "CANCELLED":
                raise KonbiniError("RESERVATION_CANCELLED", "the reservation was cancelled")
            if found.state == "EXPIRED" or found.expired_at(now):
                raise KonbiniError("RESERVATION_EXPIRED", "the reservation has expired")
            micros = to_micros(now)
            tx.execute("UPDATE reservations SET state = 'COMMITTED', ended_at = ?"
                       " WHERE tenant = ? AND id = ?", (micros, code, found.id))
            try:
                tx.execute(
                    "INSERT INTO issue_records (tenant, reservation_id, jst_day, committed_at,"
                    " kind, copies, fee_yen, issue_numbers, issuance_id, store_operator)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (code, found.id, jst_day(now), micros, found.kind, found.copies,
                     found.fee_yen, json.dumps(list(found.issue_numbers)), found.issuance_id,
                     found.store_operator),
                )
            except UniqueViolation as exc:
                # A concurrent commit (another request_id) won: rerun and answer as it did.
                raise TransactionConflict("a concurrent commit of this reservation won") from exc
            return _commit_response(tx, code, found.id).SerializeToString()

        data = execute_once_patiently(
            self.store, scope=f"municipality.CommitIssuance/{code}", caller=caller,
            request_id=request.request_id, fingerprint=request_fingerprint(request),
            now=to_micros(now), effect=effect,
        )
        return issuing_pb2.CommitIssuanceResponse.FromString(data)

    def cancel(
        self, code: str, caller: str, request: issuing_pb2.CancelIssuanceRequest
    ) -> issuing_pb2.CancelIssuanceResponse:
        now = self.clock.now()

        def effect(tx: Tx) -> bytes:
            found = _load_reservation(tx, code, request.reservation_id)
            state = found.state
            if state == "COMMITTED":
                raise KonbiniError("RESERVATION_COMMITTED", "the reservation is committed")
            if state == "RESERVED":
                state = "EXPIRED" if found.expired_at(now) else "CANCELLED"
                tx.execute("UPDATE reservations SET state = ?, ended_at = ?"
                           " WHERE tenant = ? AND id = ?", (state, to_micros(now), code, found.id))
            return issuing_pb2.CancelIssuanceResponse(
                state=STATE_VALUES[state]).SerializeToString()  # type: ignore[arg-type]

        data = execute_once_patiently(
            self.store, scope=f"municipality.CancelIssuance/{code}", caller=caller,
            request_id=request.request_id, fingerprint=request_fingerprint(request),
            now=to_micros(now), effect=effect,
        )
        return issuing_pb2.CancelIssuanceResponse.FromString(data)

    # -- queries and the sweeper --------------------------------------------------------------
    def get_reservation(self, code: str, caller: str, reservation_id: str,
                        prepare_request_id: str) -> issuing_pb2.GetReservationResponse:
        if not reservation_id and not prepare_request_id:
            raise invalid([FieldViolation("reservation_id",
                                          "give reservation_id or prepare_request_id")])

        def read(tx: Tx) -> Reservation:
            if reservation_id:
                return _load_reservation(tx, code, reservation_id)
            row = tx.execute(
                f"SELECT {RESERVATION_COLUMNS} FROM reservations"  # noqa: S608
                " WHERE tenant = ? AND caller = ? AND request_id = ?",
                (code, caller, prepare_request_id),
            ).fetchone()
            if row is None:
                raise KonbiniError("RESERVATION_NOT_FOUND", "no such reservation")
            return _reservation(row)

        found = self.store.run(read, write=False)
        state = found.state
        if state == "RESERVED" and found.expired_at(self.clock.now()):
            state = "EXPIRED"  # what the sweeper will record; never committable
        return issuing_pb2.GetReservationResponse(
            reservation_id=found.id, state=STATE_VALUES[state],  # type: ignore[arg-type]
            expires_at=timestamp(found.expires_at), fee=types_pb2.Money(yen=found.fee_yen),
        )

    def list_issue_records(self, code: str, day: types_pb2.Date, page_size: int,
                           page_token: str) -> issuing_pb2.ListIssueRecordsResponse:
        if page_size > MAX_PAGE_SIZE:
            raise invalid([FieldViolation("page_size", f"at most {MAX_PAGE_SIZE}")])
        size = page_size or DEFAULT_PAGE_SIZE
        try:
            day_text = dt.date(day.year, day.month, day.day).isoformat()
        except ValueError:
            raise invalid([FieldViolation("day", "not a calendar date")]) from None
        after = _decode_token(page_token) if page_token else (-1, "")

        def read(tx: Tx) -> list[Mapping[str, object]]:
            return tx.execute(
                "SELECT * FROM issue_records WHERE tenant = ? AND jst_day = ? AND"
                " (committed_at > ? OR (committed_at = ? AND reservation_id > ?))"
                " ORDER BY committed_at, reservation_id LIMIT ?",
                (code, day_text, after[0], after[0], after[1], size + 1),
            ).fetchall()

        rows = self.store.run(read, write=False)
        response = issuing_pb2.ListIssueRecordsResponse(
            records=[_issue_record(r) for r in rows[:size]])
        if len(rows) > size:
            last = rows[size - 1]
            response.next_page_token = _encode_token(
                int(last["committed_at"]), str(last["reservation_id"]))  # type: ignore[call-overload]
        return response

    def sweep(self) -> int:
        """Mark every reservation past its expiry EXPIRED (ISSUE-SWEEPER); returns how many."""
        micros = to_micros(self.clock.now())
        return self.store.run(lambda tx: tx.execute(
            "UPDATE reservations SET state = 'EXPIRED', ended_at = ?"
            " WHERE state = 'RESERVED' AND expires_at <= ?", (micros, micros)).rowcount)


# -- storage helpers ---------------------------------------------------------------------------
def execute_once_patiently(store: Store, **kwargs: Any) -> bytes:
    """:func:`execute_once`, again on a conflict that outlasted the store's own retries.

    Under SERIALIZABLE, hundreds of concurrent commits touching one index conflict far more
    often than the default retry budget expects; a rerun is safe (the idempotency lookup runs
    first), so keep going with backoff for a bounded while.
    """
    for attempt in range(ONCE_ROUNDS):
        try:
            return execute_once(store, **kwargs)
        except TransactionConflict:
            if attempt == ONCE_ROUNDS - 1:
                raise
            time.sleep(random.uniform(0.01, 0.05) * (attempt + 1))  # noqa: S311 - jitter
    raise AssertionError("unreachable")


def _take_issue_numbers(tx: Tx, code: str, copies: int) -> list[str]:
    tx.execute("INSERT INTO issue_counters (tenant, next_value) VALUES (?, 1)"
               " ON CONFLICT (tenant) DO NOTHING", (code,))
    row = tx.execute(
        "UPDATE issue_counters SET next_value = next_value + ? WHERE tenant = ?"
        " RETURNING next_value", (copies, code)).fetchone()
    assert row is not None
    end = int(row["next_value"])
    return [issue_number(code, value) for value in range(end - copies, end)]


def _insert_reservation(tx: Tx, code: str, caller: str,
                        request: issuing_pb2.PrepareIssuanceRequest, *, fingerprint: bytes,
                        plan: Plan, numbers: Sequence[str],
                        response: issuing_pb2.PrepareIssuanceResponse, now: dt.datetime,
                        expires_at: dt.datetime) -> None:
    try:
        _insert_reservation_row(tx, code, caller, request, fingerprint=fingerprint, plan=plan,
                                numbers=numbers, response=response, now=now,
                                expires_at=expires_at)
    except UniqueViolation as exc:
        # A concurrent duplicate committed first: rerun, and the idempotency lookup finds it.
        raise TransactionConflict("a concurrent duplicate of this prepare won") from exc


def _insert_reservation_row(tx: Tx, code: str, caller: str,
                            request: issuing_pb2.PrepareIssuanceRequest, *, fingerprint: bytes,
                            plan: Plan, numbers: Sequence[str],
                            response: issuing_pb2.PrepareIssuanceResponse, now: dt.datetime,
                            expires_at: dt.datetime) -> None:
    origin = request.origin
    tx.execute(
        "INSERT INTO reservations (id, tenant, caller, request_id, fingerprint, kind,"
        " subject_ids, copies, fee_yen, state, created_at, expires_at, documents,"
        " issue_numbers, store_operator, terminal_id, issuance_id)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'RESERVED', ?, ?, ?, ?, ?, ?, ?)",
        (response.reservation_id, code, caller, request.request_id, fingerprint, plan.kind,
         json.dumps(list(plan.subject_ids)), plan.copies, plan.fee_yen, to_micros(now),
         to_micros(expires_at), response.SerializeToString(), json.dumps(list(numbers)),
         origin.store_operator, origin.terminal_id, origin.issuance_id),
    )
    for number in numbers:
        tx.execute("INSERT INTO issue_numbers (tenant, number, reservation_id) VALUES (?, ?, ?)",
                   (code, number, response.reservation_id))


def _stored_documents(tx: Tx, code: str,
                      reservation_id: bytes) -> issuing_pb2.PrepareIssuanceResponse | None:
    row = tx.execute("SELECT documents FROM reservations WHERE tenant = ? AND id = ?",
                     (code, reservation_id.decode())).fetchone()
    if row is None:
        return None
    return issuing_pb2.PrepareIssuanceResponse.FromString(bytes(row["documents"]))


def _load_reservation(tx: Tx, code: str, reservation_id: str) -> Reservation:
    row = tx.execute(
        f"SELECT {RESERVATION_COLUMNS} FROM reservations"  # noqa: S608
        " WHERE tenant = ? AND id = ?" + (tx.lock_for_update() if tx.write else ""),
        (code, reservation_id),
    ).fetchone()
    if row is None:
        raise KonbiniError("RESERVATION_NOT_FOUND", "no such reservation")
    return _reservation(row)


def _issue_record(row: Mapping[str, object]) -> issuing_pb2.IssueRecord:
    return issuing_pb2.IssueRecord(
        reservation_id=str(row["reservation_id"]), kind=int(row["kind"]),  # type: ignore[call-overload,arg-type]
        copies=int(row["copies"]),  # type: ignore[call-overload]
        fee=types_pb2.Money(yen=int(row["fee_yen"])),  # type: ignore[call-overload]
        committed_at=timestamp(from_micros(int(row["committed_at"]))),  # type: ignore[call-overload]
        issue_numbers=json.loads(str(row["issue_numbers"])),
        issuance_id=str(row["issuance_id"]), store_operator=str(row["store_operator"]),
    )


def _commit_response(tx: Tx, code: str, reservation_id: str) -> issuing_pb2.CommitIssuanceResponse:
    row = tx.execute("SELECT committed_at, issue_numbers FROM issue_records"
                     " WHERE tenant = ? AND reservation_id = ?", (code, reservation_id)).fetchone()
    assert row is not None  # COMMITTED and the issue record are written together
    return issuing_pb2.CommitIssuanceResponse(
        state=types_pb2.ISSUANCE_STATE_COMMITTED,
        committed_at=timestamp(from_micros(int(row["committed_at"]))),
        issue_numbers=json.loads(str(row["issue_numbers"])),
    )


def _encode_token(committed_at: int, reservation_id: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([committed_at, reservation_id]).encode()).decode()


def _decode_token(token: str) -> tuple[int, str]:
    try:
        committed_at, reservation_id = json.loads(base64.urlsafe_b64decode(token.encode()))
        return int(committed_at), str(reservation_id)
    except (ValueError, TypeError):
        raise invalid([FieldViolation("page_token", "not a token from this server")]) from None
