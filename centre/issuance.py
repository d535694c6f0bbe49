"""Issuance: request (prepare at the municipality, add the back sides, deliver), complete
(commit or cancel through the outbox) and look up (ISSUE-*, ONCE-*, XTALK-*, REFUSE-*).

Idempotent end to end on (terminal, request_id): the ledger row is keyed by it, the
PrepareIssuance request_id is derived from the issuance id (so a retry after a crash asks the
municipality for the same reservation), and the delivered response is stored byte for byte.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging

from google.protobuf.message import DecodeError

from centre import ledger
from centre.catalogue import find_entry, municipality_entries, unavailable_reason
from centre.context import HOT_RETRIES, Centre
from centre.outbox import CANCEL, CANCEL_PREPARE, COMMIT, Relay, enqueue
from centre.sessions import authenticated, parse_intent, timestamp
from centre.useregs import require_registration
from konbini import validation
from konbini.common.v1 import types_pb2
from konbini.errors import FieldViolation, KonbiniError, invalid
from konbini.hours import check_open_at
from konbini.issuing.v1 import issuing_pb2
from konbini.kiosk.v1 import kiosk_pb2
from konbini.pki import PeerIdentity
from konbini.storage import TransactionConflict, Tx, UniqueViolation, to_micros
from konbini.storage.idempotency import lookup, record, request_fingerprint

log = logging.getLogger(__name__)

_STATE = {
    ledger.REQUESTED: types_pb2.ISSUANCE_STATE_REQUESTED,
    ledger.RESERVED: types_pb2.ISSUANCE_STATE_RESERVED,
    ledger.DELIVERED: types_pb2.ISSUANCE_STATE_DELIVERED,
    ledger.COMMITTED: types_pb2.ISSUANCE_STATE_COMMITTED,
    ledger.CANCELLED: types_pb2.ISSUANCE_STATE_CANCELLED,
    ledger.EXPIRED: types_pb2.ISSUANCE_STATE_EXPIRED,
}
# Answers from the municipality after which we cannot know whether it reserved.
UNCERTAIN = frozenset({"MUNICIPALITY_UNAVAILABLE", "INTERNAL"})


def _stored_answer(row: ledger.LedgerRow) -> kiosk_pb2.RequestIssuanceResponse | None:
    """What a retry of an existing request gets, or None to resume a REQUESTED one."""
    if row.state == ledger.CANCELLED:
        raise KonbiniError("RESERVATION_CANCELLED", "this issuance was cancelled")
    if row.state == ledger.EXPIRED:
        raise KonbiniError("RESERVATION_EXPIRED", "this issuance expired")
    if row.response is None:
        return None
    response = kiosk_pb2.RequestIssuanceResponse.FromString(row.response)
    response.state = _STATE[row.state]  # type: ignore[assignment]
    return response


def check_documents(documents: list[types_pb2.Document], *, code: str, kind: int,
                    reservation_id: str, copies: int) -> None:
    """The municipality's documents belong to this reservation (XTALK-SUBJECT at the centre):
    signed metadata names it, and each front PDF is the one the metadata hashes."""
    if len(documents) != copies:
        raise KonbiniError("INTERNAL", "the municipality returned the wrong number of copies")
    for doc in documents:
        try:
            meta = types_pb2.DocumentMetadata.FromString(doc.signed_metadata)
        except DecodeError:
            raise KonbiniError("INTERNAL", "unreadable document metadata") from None
        if (meta.municipality_code.value != code or meta.kind != kind
                or meta.reservation_id != reservation_id
                or meta.front_pdf_sha256 != hashlib.sha256(doc.pdf).digest()):
            raise KonbiniError("INTERNAL", "a document does not belong to this reservation")


async def _prechecks(
    centre: Centre, identity: PeerIdentity, request: kiosk_pb2.RequestIssuanceRequest,
    intent: kiosk_pb2.IssuanceIntent, *, now: dt.datetime, time_remaining: float | None,
) -> ledger.LedgerRow:
    """Every check of a new request; returns the ledger row to record (not yet written)."""
    session = await authenticated(centre, request.session_id, identity.uri, now)
    if intent.session_id != request.session_id or intent.challenge != session.challenge:
        raise KonbiniError("CHALLENGE_MISMATCH", "the intent is for another session")
    if intent.request_id != request.request_id:
        raise invalid([FieldViolation("intent", "request_id differs from the request's")])
    if not intent.HasField("municipality_code"):
        raise invalid([FieldViolation("intent.municipality_code", "required")])
    validation.check(intent)
    if intent.kind == types_pb2.CERTIFICATE_KIND_UNSPECIFIED:
        raise invalid([FieldViolation("intent.kind", "required")])
    if intent.copies < 1:
        raise invalid([FieldViolation("intent.copies", "at least 1")])
    # CARD-SIGNATURE: the card that authenticated the session signed exactly these bytes.
    await centre.cards.verify_at(now, session.certificate, request.intent, request.signature)
    code = intent.municipality_code.value
    await centre.store.run(lambda tx: require_registration(
        tx, session.card_serial, session.residence_code, code, intent.kind), write=False)
    # Fresh catalogue: kind offered, copies, hours (HOURS-* enforced here too).
    entries = await municipality_entries(centre, code, session.card_serial, now, time_remaining)
    entry = find_entry(entries, intent.kind)
    if intent.copies > entry.max_copies > 0:
        raise KonbiniError("TOO_MANY_COPIES", f"at most {entry.max_copies} copies",
                           violations=[FieldViolation("intent.copies", "too many")])
    check_open_at(now, entry.hours)
    reason = unavailable_reason(entry)
    if reason is not None:
        raise KonbiniError(reason, "not available now")
    issuance_id = centre.new_id()
    now_us = to_micros(now)
    return ledger.LedgerRow(
        issuance_id=issuance_id, terminal=identity.uri, request_id=request.request_id,
        fingerprint=request_fingerprint(request), session_id=request.session_id,
        card_serial=session.card_serial, municipality_code=code, kind=int(intent.kind),
        copies=int(intent.copies), fee_yen=int(entry.fee.yen) * int(intent.copies),
        state=ledger.REQUESTED, prepare_request_id=f"prep-{issuance_id}", reservation_id=None,
        municipality_expires_at=None, expires_at=None, response=None,
        store_operator=identity.store_operator or "", terminal_id=identity.id,
        created_at=now_us, updated_at=now_us, committed_at=None, issue_numbers=None)


async def request_issuance(
    centre: Centre, identity: PeerIdentity, request: kiosk_pb2.RequestIssuanceRequest,
    time_remaining: float | None = None,
) -> kiosk_pb2.RequestIssuanceResponse:
    """Prepare, add back sides, deliver; a retry returns the stored answer."""
    terminal = identity.uri
    fingerprint = request_fingerprint(request)

    def existing(tx: Tx) -> ledger.LedgerRow | None:
        row = ledger.by_request(tx, terminal, request.request_id)
        if row is not None and row.fingerprint != fingerprint:
            raise KonbiniError("REQUEST_ID_REUSED", "this request_id was used for another"
                               " request", metadata={"request_id": request.request_id})
        return row

    row = await centre.store.run(existing, write=False)
    if row is not None:
        answer = _stored_answer(row)
        if answer is not None:
            return answer
    else:
        intent = parse_intent(kiosk_pb2.IssuanceIntent, request.intent)
        now = await centre.time.now()
        new_row = await _prechecks(centre, identity, request, intent, now=now,
                                   time_remaining=time_remaining)

        def insert(tx: Tx) -> ledger.LedgerRow:
            found = existing(tx)
            if found is not None:  # a concurrent duplicate recorded first: follow it
                return found
            try:
                ledger.insert_requested(tx, new_row)
            except UniqueViolation:
                raise TransactionConflict("concurrent duplicate request") from None
            centre.audit.append(tx, "issuance.requested", {
                "issuance_id": new_row.issuance_id, "caller": terminal,
                "municipality_code": new_row.municipality_code, "kind": str(new_row.kind),
                "copies": str(new_row.copies)})
            return new_row

        row = await centre.store.run(insert, retries=HOT_RETRIES)
        answer = _stored_answer(row)
        if answer is not None:
            return answer
    return await _prepare_and_deliver(centre, row, request, time_remaining)


async def _forget_uncertain(centre: Centre, row: ledger.LedgerRow, cause: str) -> None:
    """The municipality may or may not have reserved: drop the request and queue a cancel by
    prepare_request_id, so nothing stays half done (ROUTE-UNAVAILABLE)."""
    now_us = to_micros(await centre.time.now())
    entry_id = centre.new_id()

    def forget(tx: Tx) -> None:
        current = ledger.by_id(tx, row.issuance_id)
        if current is None or current.state != ledger.REQUESTED:
            return
        ledger.delete_requested(tx, row.issuance_id)
        enqueue(tx, entry_id=entry_id, issuance_id=row.issuance_id, action=CANCEL_PREPARE,
                municipality_code=row.municipality_code, reservation_id=None,
                prepare_request_id=row.prepare_request_id, now_us=now_us, cause=cause)
        centre.audit.append(tx, "issuance.abandoned", {
            "issuance_id": row.issuance_id, "municipality_code": row.municipality_code,
            "reason": cause})

    await centre.store.run(forget)


async def _prepare_and_deliver(
    centre: Centre, row: ledger.LedgerRow, request: kiosk_pb2.RequestIssuanceRequest,
    time_remaining: float | None,
) -> kiosk_pb2.RequestIssuanceResponse:
    intent = parse_intent(kiosk_pb2.IssuanceIntent, request.intent)
    code = row.municipality_code
    prepare = issuing_pb2.PrepareIssuanceRequest(
        request_id=row.prepare_request_id,
        municipality_code=types_pb2.MunicipalityCode(value=code),
        card=issuing_pb2.CardReference(certificate_serial=row.card_serial),
        kind=intent.kind, options=intent.options, copies=intent.copies,
        origin=issuing_pb2.Origin(store_operator=row.store_operator, terminal_id=row.terminal_id,
                                  issuance_id=row.issuance_id))
    try:
        prepared = await centre.router.call(code, "PrepareIssuance", prepare,
                                            time_remaining=time_remaining)
    except KonbiniError as error:
        reason = error.reason
        if reason in UNCERTAIN:
            await _forget_uncertain(centre, row, reason)
        else:
            # A typed refusal reserved nothing (REFUSE-NO-STATE): forget the request.
            def refuse(tx: Tx) -> None:
                ledger.delete_requested(tx, row.issuance_id)
                centre.audit.append(tx, "issuance.refused", {
                    "issuance_id": row.issuance_id, "municipality_code": code,
                    "reason": reason})

            await centre.store.run(refuse)
        raise
    now = await centre.time.now()
    muni_expires = prepared.expires_at.ToDatetime(tzinfo=dt.UTC)
    expires = muni_expires - centre.timing.reservation_margin
    try:
        check_documents(list(prepared.documents), code=code, kind=intent.kind,
                        reservation_id=prepared.reservation_id, copies=intent.copies)
        if expires <= now:
            raise KonbiniError("RESERVATION_EXPIRED", "the reservation is too short to print")
        keys = centre.scramble_keys()
        loop = asyncio.get_running_loop()
        documents = []
        for doc in prepared.documents:
            # ~100 ms of image work per page: keep it off the event loop.
            pdf = await loop.run_in_executor(None, centre.back_sides, doc.pdf, keys, now)
            documents.append(types_pb2.Document(pdf=pdf, signed_metadata=doc.signed_metadata,
                                                signature=doc.signature))
    except KonbiniError as error:
        await _cancel_reserved(centre, row, prepared.reservation_id, error.reason)
        raise
    response = kiosk_pb2.RequestIssuanceResponse(
        issuance_id=row.issuance_id, documents=documents, fee=prepared.fee,
        expires_at=timestamp(to_micros(expires)), state=types_pb2.ISSUANCE_STATE_DELIVERED)
    data = response.SerializeToString()
    now_us = to_micros(now)

    def deliver(tx: Tx) -> kiosk_pb2.RequestIssuanceResponse:
        if ledger.mark_delivered(tx, row.issuance_id, reservation_id=prepared.reservation_id,
                                 fee_yen=int(prepared.fee.yen),
                                 municipality_expires_at=to_micros(muni_expires),
                                 expires_at=to_micros(expires), response=data, now_us=now_us):
            centre.audit.append(tx, "issuance.delivered", {
                "issuance_id": row.issuance_id, "municipality_code": code,
                "reservation_id": prepared.reservation_id, "fee_yen": str(prepared.fee.yen)})
            return response
        current = ledger.by_id(tx, row.issuance_id)
        if current is None:
            raise KonbiniError("RESERVATION_CANCELLED", "this issuance was cancelled")
        answer = _stored_answer(current)
        if answer is None:
            raise KonbiniError("RESERVATION_EXPIRED", "this issuance expired")
        return answer

    return await centre.store.run(deliver, retries=HOT_RETRIES)


async def _cancel_reserved(centre: Centre, row: ledger.LedgerRow, reservation_id: str,
                           cause: str) -> None:
    now_us = to_micros(await centre.time.now())
    entry_id = centre.new_id()

    def cancel(tx: Tx) -> None:
        if ledger.set_state(tx, row.issuance_id, ledger.CANCELLED, now_us,
                            only_from=(ledger.REQUESTED,)):
            tx.execute("UPDATE ledger SET reservation_id = ? WHERE issuance_id = ?",
                       (reservation_id, row.issuance_id))
            enqueue(tx, entry_id=entry_id, issuance_id=row.issuance_id, action=CANCEL,
                    municipality_code=row.municipality_code, reservation_id=reservation_id,
                    prepare_request_id=row.prepare_request_id, now_us=now_us, cause=cause)

    await centre.store.run(cancel)
    await _relay_quietly(centre, row.issuance_id, CANCEL)


async def _relay_quietly(centre: Centre, issuance_id: str, action: str) -> None:
    try:
        await Relay(centre).send_now(issuance_id, action)
    except Exception:  # the background relay retries; the answer does not depend on it
        log.warning("relay of %s for %s deferred", action, issuance_id)


def _complete_response(state: str, charged: int) -> bytes:
    return kiosk_pb2.CompleteIssuanceResponse(
        state=_STATE[state], charged=types_pb2.Money(yen=charged)).SerializeToString()


async def complete_issuance(
    centre: Centre, identity: PeerIdentity, request: kiosk_pb2.CompleteIssuanceRequest
) -> kiosk_pb2.CompleteIssuanceResponse:
    """Printed → COMMITTED (relayed), failed → CANCELLED; past the expiry → EXPIRED."""
    outcome = request.outcome
    if outcome not in (kiosk_pb2.PRINT_OUTCOME_PRINTED, kiosk_pb2.PRINT_OUTCOME_FAILED):
        raise invalid([FieldViolation("outcome", "PRINTED or FAILED")])
    terminal = identity.uri
    now_us = to_micros(await centre.time.now())
    fingerprint = request_fingerprint(request)
    entry_id = centre.new_id()
    cause = kiosk_pb2.FailureCause.Name(request.failure_cause)
    relay: list[str] = []

    def effect(tx: Tx) -> bytes:
        relay.clear()
        stored = lookup(tx, "centre.CompleteIssuance", terminal, request.request_id, fingerprint)
        if stored is not None:
            return stored.replay()
        row = ledger.by_id(tx, request.issuance_id)
        # Another terminal's issuance does not exist for this one (XTALK-TERMINAL).
        if row is None or row.terminal != terminal or row.state == ledger.REQUESTED:
            raise KonbiniError("RESERVATION_NOT_FOUND", "no such issuance for this terminal")
        printed = outcome == kiosk_pb2.PRINT_OUTCOME_PRINTED
        if row.state == ledger.DELIVERED:
            if row.expires_at is not None and now_us > row.expires_at:
                state, action, note = ledger.EXPIRED, CANCEL, "expired"
            elif printed:
                state, action, note = ledger.COMMITTED, COMMIT, ""
            else:
                state, action, note = ledger.CANCELLED, CANCEL, cause
            ledger.set_state(tx, row.issuance_id, state, now_us, only_from=(ledger.DELIVERED,))
            enqueue(tx, entry_id=entry_id, issuance_id=row.issuance_id, action=action,
                    municipality_code=row.municipality_code, reservation_id=row.reservation_id,
                    prepare_request_id=row.prepare_request_id, now_us=now_us, cause=note)
            relay.append(action)
            centre.audit.append(tx, f"issuance.{state.lower()}", {
                "issuance_id": row.issuance_id, "municipality_code": row.municipality_code,
                "reservation_id": row.reservation_id or "", "cause": note})
        else:
            state = row.state
            if state == ledger.COMMITTED and not printed:
                raise KonbiniError("RESERVATION_COMMITTED", "this issuance was committed")
            if state == ledger.CANCELLED and printed:
                raise KonbiniError("RESERVATION_CANCELLED", "this issuance was cancelled")
        response = _complete_response(state, row.fee_yen if state == ledger.COMMITTED else 0)
        record(tx, "centre.CompleteIssuance", terminal, request.request_id, fingerprint,
               now=now_us, response=response)
        return response

    data = await centre.store.run(effect, retries=HOT_RETRIES)
    for action in relay:
        await _relay_quietly(centre, request.issuance_id, action)
    return kiosk_pb2.CompleteIssuanceResponse.FromString(data)


async def get_issuance(
    centre: Centre, identity: PeerIdentity, request: kiosk_pb2.GetIssuanceRequest
) -> kiosk_pb2.GetIssuanceResponse:
    """The state of an issuance this terminal requested, by id or by request_id."""
    terminal = identity.uri
    if not request.issuance_id and not request.request_id:
        raise invalid([FieldViolation("issuance_id", "issuance_id or request_id is required")])

    def read(tx: Tx) -> ledger.LedgerRow | None:
        if request.issuance_id:
            return ledger.by_id(tx, request.issuance_id)
        return ledger.by_request(tx, terminal, request.request_id)

    row = await centre.store.run(read, write=False)
    if row is None or row.terminal != terminal:
        raise KonbiniError("RESERVATION_NOT_FOUND", "no such issuance for this terminal")
    response = kiosk_pb2.GetIssuanceResponse(
        issuance_id=row.issuance_id, state=_STATE[row.state],
        fee=types_pb2.Money(yen=row.fee_yen))
    if row.expires_at is not None:
        response.expires_at.CopyFrom(timestamp(row.expires_at))
    return response
