"""Sessions and card authentication (SESSION-*, CARD-*).

A session belongs to the terminal whose certificate opened it; its challenge is 32 random
bytes kept in the store, used at most once (the first successful Authenticate consumes it in
the same transaction that records the answer) and only until it expires. Authentication checks
the card (chain, validity, CRL, profile, signature over the exact AuthIntent bytes), then finds
the residence municipality through the card binding.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TypeVar

from google.protobuf.message import DecodeError, Message
from google.protobuf.timestamp_pb2 import Timestamp

from centre.audit import card_ref
from centre.bindings import lookup_binding, serial_hex
from centre.context import HOT_RETRIES, Centre
from centre.useregs import approved_register_codes
from konbini.common.v1 import types_pb2
from konbini.errors import FieldViolation, KonbiniError, invalid
from konbini.kiosk.v1 import kiosk_pb2
from konbini.storage import Tx, from_micros, to_micros
from konbini.storage.idempotency import lookup, record, request_fingerprint

M = TypeVar("M", bound=Message)

CHALLENGE_BYTES = 32
OPEN, AUTHENTICATED, ENDED = "OPEN", "AUTHENTICATED", "ENDED"


@dataclass(frozen=True)
class AuthenticatedSession:
    """An authenticated session as the issuance and catalogue calls need it."""

    session_id: str
    terminal: str
    challenge: bytes
    certificate: bytes
    card_serial: str
    residence_code: str


def timestamp(micros: int) -> Timestamp:
    """A protobuf Timestamp from microseconds since the epoch."""
    ts = Timestamp()
    ts.FromDatetime(from_micros(micros))
    return ts


async def create_session(
    centre: Centre, terminal: str, request: kiosk_pb2.CreateSessionRequest
) -> kiosk_pb2.CreateSessionResponse:
    """A new session with a fresh challenge; a retry of request_id returns the same one."""
    now = await centre.time.now()
    now_us = to_micros(now)
    expires_us = to_micros(now + centre.timing.challenge_ttl)
    session_id = centre.new_id()
    challenge = centre.random_bytes(CHALLENGE_BYTES)
    fingerprint = request_fingerprint(request)

    def effect(tx: Tx) -> bytes:
        stored = lookup(tx, "centre.CreateSession", terminal, request.request_id, fingerprint)
        if stored is not None:
            return stored.replay()
        tx.execute(
            "INSERT INTO sessions (session_id, terminal, challenge, created_at, expires_at,"
            " state) VALUES (?, ?, ?, ?, ?, ?)",
            (session_id, terminal, challenge, now_us, expires_us, OPEN),
        )
        response = kiosk_pb2.CreateSessionResponse(
            session_id=session_id, challenge=challenge, expires_at=timestamp(expires_us)
        ).SerializeToString()
        record(tx, "centre.CreateSession", terminal, request.request_id, fingerprint,
               now=now_us, response=response)
        centre.audit.append(tx, "session.created", {"session_id": session_id,
                                                    "caller": terminal})
        return response

    data = await centre.store.run(effect, retries=HOT_RETRIES)
    return kiosk_pb2.CreateSessionResponse.FromString(data)


def parse_intent(message_type: type[M], data: bytes, field: str = "intent") -> M:
    """The intent message from its exact signed bytes; FIELD_INVALID if they do not parse."""
    try:
        return message_type.FromString(data)
    except DecodeError:
        raise invalid([FieldViolation(field, "not a serialized " + message_type.__name__)]) \
            from None


def _session_row(tx: Tx, session_id: str, terminal: str) -> dict:
    row = tx.execute(
        "SELECT session_id, terminal, challenge, expires_at, state, challenge_used, certificate,"
        " card_serial, residence_code, authenticated_until FROM sessions WHERE session_id = ?",
        (session_id,),
    ).fetchone()
    # Another terminal's session is indistinguishable from none (SESSION-TERMINAL-BOUND).
    if row is None or row["terminal"] != terminal or row["state"] == ENDED:
        raise KonbiniError("SESSION_UNKNOWN", "no such session for this terminal")
    return dict(row)


async def authenticate(
    centre: Centre, terminal: str, request: kiosk_pb2.AuthenticateRequest
) -> kiosk_pb2.AuthenticateResponse:
    """Check the card and the challenge-bound intent; bind the session to the card."""
    intent = parse_intent(kiosk_pb2.AuthIntent, request.intent)
    now = await centre.time.now()
    now_us = to_micros(now)
    # Card checks first (CPU only, no state): a refused card consumes nothing.
    card = await centre.cards.verify_at(now, request.auth_certificate_der, request.intent,
                                        request.signature)
    serial = serial_hex(card.serial)
    fingerprint = request_fingerprint(request)
    session_until = now + centre.timing.session_ttl
    until_us = to_micros(min(session_until, card.not_after))

    def effect(tx: Tx) -> bytes:
        stored = lookup(tx, "centre.Authenticate", terminal, request.request_id, fingerprint)
        if stored is not None:
            return stored.replay()
        row = _session_row(tx, request.session_id, terminal)
        if intent.session_id != request.session_id or intent.challenge != bytes(row["challenge"]):
            raise KonbiniError("CHALLENGE_MISMATCH", "the intent is for another challenge")
        if now_us > int(row["expires_at"]):
            raise KonbiniError("CHALLENGE_EXPIRED", "the challenge has expired")
        if int(row["challenge_used"]) or row["state"] != OPEN:
            raise KonbiniError("CHALLENGE_REPLAYED", "the challenge was already used")
        residence = lookup_binding(tx, serial)
        if residence is None:
            raise KonbiniError("CARD_NOT_BOUND", "the card is not bound to a municipality")
        registers = approved_register_codes(tx, serial)
        # Consume the challenge only if nobody did meanwhile (the WHERE makes it atomic).
        updated = tx.execute(
            "UPDATE sessions SET challenge_used = 1, state = ?, certificate = ?, card_serial = ?,"
            " residence_code = ?, authenticated_until = ? WHERE session_id = ?"
            " AND challenge_used = 0",
            (AUTHENTICATED, request.auth_certificate_der, serial, residence, until_us,
             request.session_id),
        )
        if updated.rowcount != 1:
            raise KonbiniError("CHALLENGE_REPLAYED", "the challenge was already used")
        name = centre.router.name_in(tx, residence)
        response = kiosk_pb2.AuthenticateResponse(
            residence_municipality_code=types_pb2.MunicipalityCode(value=residence),
            residence_municipality_name=name,
            register_municipality_codes=[types_pb2.MunicipalityCode(value=c) for c in registers],
            expires_at=timestamp(until_us),
        ).SerializeToString()
        record(tx, "centre.Authenticate", terminal, request.request_id, fingerprint,
               now=now_us, response=response)
        centre.audit.append(tx, "session.authenticated", {
            "session_id": request.session_id, "caller": terminal, "card_ref": card_ref(serial),
            "municipality_code": residence})
        return response

    data = await centre.store.run(effect, retries=HOT_RETRIES)
    return kiosk_pb2.AuthenticateResponse.FromString(data)


def require_authenticated(tx: Tx, session_id: str, terminal: str, now_us: int) -> (
    AuthenticatedSession
):
    """The authenticated session, or SESSION_UNKNOWN / _NOT_AUTHENTICATED / _EXPIRED."""
    row = _session_row(tx, session_id, terminal)
    if row["state"] != AUTHENTICATED:
        if now_us > int(row["expires_at"]):
            raise KonbiniError("SESSION_EXPIRED", "the session has expired")
        raise KonbiniError("SESSION_NOT_AUTHENTICATED", "authenticate the card first")
    if now_us > int(row["authenticated_until"]):
        raise KonbiniError("SESSION_EXPIRED", "the session has expired")
    return AuthenticatedSession(
        session_id=session_id,
        terminal=terminal,
        challenge=bytes(row["challenge"]),
        certificate=bytes(row["certificate"]),
        card_serial=str(row["card_serial"]),
        residence_code=str(row["residence_code"]),
    )


async def authenticated(centre: Centre, session_id: str, terminal: str,
                        now: dt.datetime) -> AuthenticatedSession:
    """:func:`require_authenticated` in its own read transaction."""
    now_us = to_micros(now)
    return await centre.store.run(
        lambda tx: require_authenticated(tx, session_id, terminal, now_us), write=False
    )


async def end_session(centre: Centre, terminal: str,
                      request: kiosk_pb2.EndSessionRequest) -> kiosk_pb2.EndSessionResponse:
    """End the session: its challenge and authentication can no longer be used. Ending an
    already ended session succeeds (idempotent)."""

    def effect(tx: Tx) -> None:
        row = tx.execute("SELECT terminal, state FROM sessions WHERE session_id = ?",
                         (request.session_id,)).fetchone()
        if row is None or row["terminal"] != terminal:
            raise KonbiniError("SESSION_UNKNOWN", "no such session for this terminal")
        if row["state"] != ENDED:
            tx.execute("UPDATE sessions SET state = ?, challenge_used = 1 WHERE session_id = ?",
                       (ENDED, request.session_id))
            centre.audit.append(tx, "session.ended", {"session_id": request.session_id,
                                                      "caller": terminal})

    await centre.store.run(effect, retries=HOT_RETRIES)
    return kiosk_pb2.EndSessionResponse()
