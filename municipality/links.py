"""Use registrations (利用登録): link a card to a member of a family register held here.

The register municipality matches 本籍 and 筆頭者 as entered, then the card holder's name and
birth date as the residence municipality vouches for them, against its registers. A match
creates the RegisterLink (LINKED); none is REJECTED; a tenant that decides by hand records the
request as PENDING for an officer (:func:`decide_pending`). Idempotent on request_id.
"""

from __future__ import annotations

import datetime as dt
import unicodedata

from konbini.common.v1 import types_pb2
from konbini.errors import KonbiniError
from konbini.issuing.v1 import issuing_pb2
from konbini.register.v1 import register_pb2
from konbini.storage import Store, Tx, to_micros
from konbini.storage.idempotency import request_fingerprint
from municipality.issuance import execute_once_patiently
from municipality.registry import Registry

PENDING = issuing_pb2.LINK_DECISION_PENDING
LINKED = issuing_pb2.LINK_DECISION_LINKED
REJECTED = issuing_pb2.LINK_DECISION_REJECTED


def normalized(text: str) -> str:
    """For matching what a resident typed: NFKC, no spaces, no variation selectors (the typed
    text cannot carry the register's exact glyph)."""
    folded = unicodedata.normalize("NFKC", text)
    return "".join(
        c for c in folded
        if not c.isspace() and not (0xFE00 <= ord(c) <= 0xFE0F or 0xE0100 <= ord(c) <= 0xE01EF)
    )


def _same_date(a: types_pb2.Date, b: types_pb2.Date) -> bool:
    return (a.year, a.month, a.day) == (b.year, b.month, b.day)


def find_member(registry: Registry, request: issuing_pb2.LinkFamilyRegisterRequest
                ) -> tuple[str, str] | None:
    """(register id, member id) matching the request, or None."""
    domicile = normalized(request.registered_domicile)
    head = normalized(request.head_of_register)
    name = normalized(request.holder_name)
    rows = registry.tx.execute(
        "SELECT data FROM family_registers WHERE tenant = ? ORDER BY id", (registry.code,)
    ).fetchall()
    for row in rows:
        register = register_pb2.FamilyRegister.FromString(bytes(row["data"]))
        if normalized(register.registered_domicile) != domicile:
            continue
        if normalized(register.head_of_register) != head:
            continue
        for member in register.members:
            if member.removed or member.deceased:
                continue
            if normalized(member.name) == name and _same_date(
                member.birth_date, request.holder_birth_date
            ):
                return register.id, member.id
    return None


def link(store: Store, code: str, caller: str, request: issuing_pb2.LinkFamilyRegisterRequest,
         *, now: dt.datetime, manual: bool) -> issuing_pb2.LinkFamilyRegisterResponse:
    registration_id = request.registration_id or request.request_id

    def effect(tx: Tx) -> bytes:
        registry = Registry(tx, code)
        if registry.tenant() is None:
            raise KonbiniError("SUBJECT_NOT_FOUND", "no registers are held for this tenant")
        match = None if manual else find_member(registry, request)
        decision = PENDING if manual else (LINKED if match else REJECTED)
        register_id, member_id = match or ("", "")
        tx.execute(
            "INSERT INTO link_requests (tenant, registration_id, certificate_serial, decision,"
            " register_id, member_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (tenant, registration_id) DO UPDATE SET decision = excluded.decision,"
            " register_id = excluded.register_id, member_id = excluded.member_id",
            (code, registration_id, request.card.certificate_serial.lower(), decision,
             register_id, member_id, to_micros(now)),
        )
        if decision == LINKED:
            registry.put_register_link(register_pb2.RegisterLink(
                certificate_serial=request.card.certificate_serial, register_id=register_id,
                member_id=member_id))
        return issuing_pb2.LinkFamilyRegisterResponse(decision=decision).SerializeToString()

    data = execute_once_patiently(
        store, scope=f"municipality.LinkFamilyRegister/{code}", caller=caller,
        request_id=request.request_id, fingerprint=request_fingerprint(request),
        now=to_micros(now), effect=effect,
    )
    return issuing_pb2.LinkFamilyRegisterResponse.FromString(data)


def decision_of(store: Store, code: str, registration_id: str) -> int:
    row = store.run(lambda tx: tx.execute(
        "SELECT decision FROM link_requests WHERE tenant = ? AND registration_id = ?",
        (code, registration_id)).fetchone(), write=False)
    if row is None:
        raise KonbiniError("SUBJECT_NOT_FOUND", "no such use registration")
    return int(row["decision"])


def decide_pending(store: Store, code: str, registration_id: str, register_id: str,
                   member_id: str) -> None:
    """An officer's decision on a PENDING request: link it to that member (or reject it with an
    empty register_id)."""

    def effect(tx: Tx) -> None:
        row = tx.execute(
            "SELECT certificate_serial, decision FROM link_requests"
            " WHERE tenant = ? AND registration_id = ?", (code, registration_id)).fetchone()
        if row is None or int(row["decision"]) != PENDING:
            raise KonbiniError("SUBJECT_NOT_FOUND", "no pending use registration with that id")
        decision = LINKED if register_id else REJECTED
        tx.execute("UPDATE link_requests SET decision = ?, register_id = ?, member_id = ?"
                   " WHERE tenant = ? AND registration_id = ?",
                   (decision, register_id, member_id, code, registration_id))
        if decision == LINKED:
            Registry(tx, code).put_register_link(register_pb2.RegisterLink(
                certificate_serial=str(row["certificate_serial"]), register_id=register_id,
                member_id=member_id))

    store.run(effect)

