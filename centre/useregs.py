"""Use registrations for family registers held by another municipality (利用登録, USEREG-*).

The card-signed UseRegistrationIntent is checked like an issuance intent; the residence
municipality vouches for the holder (GetCardHolder), the register municipality decides
(LinkFamilyRegister, later GetFamilyRegisterLink). An APPROVED registration adds that
municipality's entries to the catalogue and makes its family-register kinds requestable.
"""

from __future__ import annotations

from centre.context import Centre
from konbini.common.v1 import types_pb2
from konbini.errors import FieldViolation, KonbiniError, invalid
from konbini.issuing.v1 import issuing_pb2
from konbini.kiosk.v1 import kiosk_pb2
from konbini.storage import Tx, to_micros
from konbini.storage.idempotency import request_fingerprint

PENDING, APPROVED, REJECTED = "PENDING", "APPROVED", "REJECTED"
_STATUS = {
    PENDING: kiosk_pb2.USE_REGISTRATION_STATUS_PENDING,
    APPROVED: kiosk_pb2.USE_REGISTRATION_STATUS_APPROVED,
    REJECTED: kiosk_pb2.USE_REGISTRATION_STATUS_REJECTED,
}
_DECISION = {
    issuing_pb2.LINK_DECISION_PENDING: PENDING,
    issuing_pb2.LINK_DECISION_LINKED: APPROVED,
    issuing_pb2.LINK_DECISION_REJECTED: REJECTED,
}
FAMILY_REGISTER_KINDS = frozenset({
    types_pb2.CERTIFICATE_KIND_FAMILY_REGISTER_FULL,
    types_pb2.CERTIFICATE_KIND_FAMILY_REGISTER_INDIVIDUAL,
    types_pb2.CERTIFICATE_KIND_FAMILY_REGISTER_ADDRESS_HISTORY,
})


def approved_register_codes(tx: Tx, card_serial: str) -> list[str]:
    """Register municipalities this card is linked to (approved registrations), sorted."""
    rows = tx.execute(
        "SELECT DISTINCT register_code FROM use_registrations WHERE card_serial = ?"
        " AND status = ? ORDER BY register_code", (card_serial, APPROVED),
    ).fetchall()
    return [str(r["register_code"]) for r in rows]


def registration_status(tx: Tx, card_serial: str, register_code: str) -> str | None:
    """The best status this card has with this register municipality (None: never applied)."""
    rows = tx.execute(
        "SELECT status FROM use_registrations WHERE card_serial = ? AND register_code = ?",
        (card_serial, register_code),
    ).fetchall()
    statuses = {str(r["status"]) for r in rows}
    for status in (APPROVED, PENDING, REJECTED):
        if status in statuses:
            return status
    return None


def require_registration(tx: Tx, card_serial: str, residence: str, code: str,
                         kind: int) -> None:
    """Refuse a request to a municipality other than the residence unless an approved use
    registration covers it (USEREG-REQUIRED)."""
    if code == residence:
        return
    if kind not in FAMILY_REGISTER_KINDS:
        raise KonbiniError("KIND_NOT_OFFERED", "only family-register certificates are issued"
                           " by a municipality other than the residence")
    status = registration_status(tx, card_serial, code)
    if status == APPROVED:
        return
    if status == PENDING:
        raise KonbiniError("USE_REGISTRATION_PENDING", "the use registration is being decided")
    if status == REJECTED:
        raise KonbiniError("USE_REGISTRATION_REJECTED", "the use registration was rejected")
    raise KonbiniError("USE_REGISTRATION_REQUIRED", "a use registration is needed first")


async def register_use(
    centre: Centre, terminal: str, request: kiosk_pb2.RegisterFamilyRegisterUseRequest
) -> kiosk_pb2.RegisterFamilyRegisterUseResponse:
    """Forward a use registration; idempotent on the terminal's request_id."""
    from centre.sessions import authenticated, parse_intent

    intent = parse_intent(kiosk_pb2.UseRegistrationIntent, request.intent)
    now = await centre.time.now()
    now_us = to_micros(now)
    session = await authenticated(centre, request.session_id, terminal, now)
    if intent.session_id != request.session_id or intent.challenge != session.challenge:
        raise KonbiniError("CHALLENGE_MISMATCH", "the intent is for another session")
    if intent.request_id != request.request_id:
        raise invalid([FieldViolation("intent", "request_id differs from the request's")])
    register_code = intent.register_municipality_code.value
    if not intent.registered_domicile or not intent.head_of_register or not register_code:
        raise invalid([FieldViolation("intent", "register municipality, domicile and head of"
                                                " register are required")])
    await centre.cards.verify_at(now, session.certificate, request.intent, request.signature)
    fingerprint = request_fingerprint(request)
    new_id = centre.new_id()

    def find_or_insert(tx: Tx) -> tuple[str, str]:
        row = tx.execute(
            "SELECT registration_id, fingerprint, status FROM use_registrations"
            " WHERE terminal = ? AND request_id = ?", (terminal, request.request_id),
        ).fetchone()
        if row is not None:
            if bytes(row["fingerprint"]) != fingerprint:
                raise KonbiniError("REQUEST_ID_REUSED", "this request_id was used for another"
                                   " request", metadata={"request_id": request.request_id})
            return str(row["registration_id"]), str(row["status"])
        return new_id, ""

    registration_id, status = await centre.store.run(find_or_insert, write=False)
    if status in (APPROVED, REJECTED):
        return kiosk_pb2.RegisterFamilyRegisterUseResponse(
            registration_id=registration_id, status=_STATUS[status])
    holder = await centre.router.call(
        session.residence_code, "GetCardHolder", issuing_pb2.GetCardHolderRequest(
            municipality_code=types_pb2.MunicipalityCode(value=session.residence_code),
            card=issuing_pb2.CardReference(certificate_serial=session.card_serial)))
    decision = await centre.router.call(
        register_code, "LinkFamilyRegister", issuing_pb2.LinkFamilyRegisterRequest(
            request_id=f"link-{registration_id}",
            municipality_code=types_pb2.MunicipalityCode(value=register_code),
            card=issuing_pb2.CardReference(certificate_serial=session.card_serial),
            registered_domicile=intent.registered_domicile,
            head_of_register=intent.head_of_register,
            residence_municipality_code=types_pb2.MunicipalityCode(value=session.residence_code),
            holder_name=holder.name, holder_birth_date=holder.birth_date,
            registration_id=registration_id))
    new_status = _DECISION.get(decision.decision, PENDING)

    def store(tx: Tx) -> str:
        row = tx.execute("SELECT status FROM use_registrations WHERE registration_id = ?",
                         (registration_id,)).fetchone()
        if row is None:
            tx.execute(
                "INSERT INTO use_registrations (registration_id, terminal, request_id,"
                " fingerprint, card_serial, residence_code, register_code, status, created_at,"
                " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (registration_id, terminal, request.request_id, fingerprint, session.card_serial,
                 session.residence_code, register_code, new_status, now_us, now_us))
        else:
            tx.execute("UPDATE use_registrations SET status = ?, updated_at = ?"
                       " WHERE registration_id = ?", (new_status, now_us, registration_id))
        centre.audit.append(tx, "use_registration.forwarded", {
            "registration_id": registration_id, "municipality_code": register_code,
            "state": new_status})
        return new_status

    final = await centre.store.run(store)
    return kiosk_pb2.RegisterFamilyRegisterUseResponse(
        registration_id=registration_id, status=_STATUS[final])


async def get_registration(
    centre: Centre, request: kiosk_pb2.GetUseRegistrationRequest
) -> kiosk_pb2.GetUseRegistrationResponse:
    """The registration's status; a PENDING one is asked of the register municipality."""
    rid = request.registration_id
    row = await centre.store.run(lambda tx: tx.execute(
        "SELECT register_code, status FROM use_registrations WHERE registration_id = ?", (rid,)
    ).fetchone(), write=False)
    if row is None:
        raise KonbiniError("RESERVATION_NOT_FOUND", "no such use registration")
    code, status = str(row["register_code"]), str(row["status"])
    if status == PENDING:
        decision = await centre.router.call(
            code, "GetFamilyRegisterLink", issuing_pb2.GetFamilyRegisterLinkRequest(
                municipality_code=types_pb2.MunicipalityCode(value=code), registration_id=rid))
        status = _DECISION.get(decision.decision, PENDING)
        if status != PENDING:
            now_us = to_micros(await centre.time.now())

            def update(tx: Tx) -> None:
                tx.execute("UPDATE use_registrations SET status = ?, updated_at = ?"
                           " WHERE registration_id = ? AND status = ?",
                           (status, now_us, rid, PENDING))
                centre.audit.append(tx, "use_registration.decided", {
                    "registration_id": rid, "municipality_code": code, "state": status})

            await centre.store.run(update)
    return kiosk_pb2.GetUseRegistrationResponse(
        registration_id=rid, status=_STATUS[status],
        register_municipality_code=types_pb2.MunicipalityCode(value=code))
