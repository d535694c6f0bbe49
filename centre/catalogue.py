"""The menu: entries of the residence municipality and of register municipalities linked by
approved use registrations, with the hours enforced by the centre too (HOURS-*, USEREG-CATALOGUE).
"""

from __future__ import annotations

import datetime as dt
import logging

from centre.context import Centre
from centre.sessions import AuthenticatedSession
from centre.useregs import FAMILY_REGISTER_KINDS, approved_register_codes
from konbini.common.v1 import types_pb2
from konbini.contracts import reason_enum_value, reasons
from konbini.errors import KonbiniError
from konbini.hours import is_open_at
from konbini.issuing.v1 import issuing_pb2

log = logging.getLogger(__name__)


def apply_hours(entry: types_pb2.CatalogueEntry, at: dt.datetime) -> types_pb2.CatalogueEntry:
    """The entry with availability recomputed from its hours at ``at``. The centre only
    narrows: an entry the municipality marked unavailable stays unavailable."""
    out = types_pb2.CatalogueEntry()
    out.CopyFrom(entry)
    reason = is_open_at(at, entry.hours)
    if reason is not None:
        out.available_now = False
        out.unavailable_reason = reason_enum_value(reason)  # type: ignore[assignment]
    return out


def unavailable_reason(entry: types_pb2.CatalogueEntry) -> str | None:
    """The refusal reason of an unavailable entry (None when available)."""
    if entry.available_now:
        return None
    by_number = {r.number: name for name, r in reasons().items()}
    return by_number.get(entry.unavailable_reason, "OUTSIDE_SERVICE_HOURS")


async def municipality_entries(
    centre: Centre, code: str, card_serial: str, at: dt.datetime,
    time_remaining: float | None = None,
) -> list[types_pb2.CatalogueEntry]:
    """One municipality's entries for this card, hours applied."""
    response = await centre.router.call(code, "GetCatalogue", issuing_pb2.GetCatalogueRequest(
        municipality_code=types_pb2.MunicipalityCode(value=code),
        card=issuing_pb2.CardReference(certificate_serial=card_serial)),
        time_remaining=time_remaining)
    name = await centre.router.name_of(code)
    entries = []
    for entry in response.entries:
        fixed = apply_hours(entry, at)
        # A tenant answers for itself only (AUTHZ-TENANT): the code is ours, not its claim.
        fixed.municipality_code.value = code
        if not fixed.municipality_name:
            fixed.municipality_name = name
        entries.append(fixed)
    return entries


async def catalogue(
    centre: Centre, session: AuthenticatedSession, at: dt.datetime,
    time_remaining: float | None = None,
) -> list[types_pb2.CatalogueEntry]:
    """Residence entries first, then the family-register entries of linked municipalities.
    A register municipality that cannot be reached is left out; the residence must answer."""
    registers = await centre.store.run(
        lambda tx: approved_register_codes(tx, session.card_serial), write=False)
    entries = await municipality_entries(centre, session.residence_code, session.card_serial,
                                         at, time_remaining)
    for code in registers:
        if code == session.residence_code:
            continue
        try:
            linked = await municipality_entries(centre, code, session.card_serial, at,
                                                time_remaining)
        except KonbiniError as error:
            log.warning("register municipality %s left out of a catalogue: %s", code,
                        error.reason)
            continue
        entries += [e for e in linked if e.kind in FAMILY_REGISTER_KINDS]
    return entries


def find_entry(entries: list[types_pb2.CatalogueEntry], kind: int) -> types_pb2.CatalogueEntry:
    """The entry of ``kind``; KIND_NOT_OFFERED when the municipality does not offer it."""
    for entry in entries:
        if entry.kind == kind:
            return entry
    raise KonbiniError("KIND_NOT_OFFERED", "the municipality does not offer this kind")
