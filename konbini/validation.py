"""Input checks every server applies before a handler runs (INPUT-INVALID-ARGUMENT).

What is checked comes from the contracts, not from per-method code: fields marked REQUIRED,
the format of every `request_id`, and the check digit of every MunicipalityCode, at any depth.
A side's own rules (a fiscal year on offer, copies within the maximum) stay in the side.
"""

from __future__ import annotations

import re

from google.protobuf import descriptor
from google.protobuf.message import Message

from konbini.contracts import required_fields
from konbini.errors import FieldViolation, KonbiniError, invalid
from konbini.municode import validate_municipality_code

REQUEST_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
MUNICIPALITY_CODE_TYPE = "konbini.common.v1.MunicipalityCode"
_MAX_DEPTH = 8  # the contracts nest a few levels; deeper is not ours


def violations(message: Message) -> list[FieldViolation]:
    """Every contract-level violation in a message, with dotted field paths."""
    found: list[FieldViolation] = []
    _walk(message, "", found, 0)
    return found


def check(message: Message) -> None:
    """Raise FIELD_INVALID listing every violation, or return."""
    found = violations(message)
    if found:
        raise invalid(found)


def check_request_id(value: str, field: str = "request_id") -> None:
    if not REQUEST_ID.fullmatch(value):
        raise invalid([FieldViolation(field, "must be 1 to 64 of A-Z a-z 0-9 _ -")])


def _walk(message: Message, prefix: str, found: list[FieldViolation], depth: int) -> None:
    if depth > _MAX_DEPTH:
        return
    desc = message.DESCRIPTOR
    if desc.full_name == MUNICIPALITY_CODE_TYPE:
        value = message.value  # type: ignore[attr-defined]
        if not validate_municipality_code(value):
            found.append(
                FieldViolation(
                    prefix.rstrip(".") or "value",
                    "must be six digits with a valid check digit",
                )
            )
        return
    for field in required_fields(desc):
        if not _is_set(message, field):
            found.append(FieldViolation(prefix + field.name, "is required"))
    for field, value in message.ListFields():
        path = prefix + field.name
        if field.name == "request_id" and not REQUEST_ID.fullmatch(str(value)):
            found.append(FieldViolation(path, "must be 1 to 64 of A-Z a-z 0-9 _ -"))
        if not _is_message(field):
            continue
        if _is_repeated(field):
            for i, item in enumerate(value):
                _walk(item, f"{path}[{i}].", found, depth + 1)
        else:
            _walk(value, path + ".", found, depth + 1)


def _is_message(field: descriptor.FieldDescriptor) -> bool:
    return (
        field.type == descriptor.FieldDescriptor.TYPE_MESSAGE
        and not field.message_type.GetOptions().map_entry
    )


def _is_repeated(field: descriptor.FieldDescriptor) -> bool:
    return bool(field.is_repeated)


def _is_set(message: Message, field: descriptor.FieldDescriptor) -> bool:
    if _is_repeated(field):
        return len(getattr(message, field.name)) > 0
    if field.type == descriptor.FieldDescriptor.TYPE_MESSAGE:
        return message.HasField(field.name)
    value = getattr(message, field.name)
    return value not in ("", b"", 0, False)


__all__ = ["REQUEST_ID", "KonbiniError", "check", "check_request_id", "violations"]
