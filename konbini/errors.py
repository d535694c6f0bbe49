"""The error model shared by every side: typed exceptions in, google.rpc.Status out.

Every refusal or failure is a :class:`KonbiniError` subclass whose ``reason`` is one name of the
catalogue ``konbini.common.v1.ErrorReason`` (without its ``ERROR_REASON_`` prefix). On the wire it
becomes a google.rpc.Status carrying exactly one ErrorInfo (that reason, domain :data:`DOMAIN`,
dynamic values in its metadata) and, for bad input, one BadRequest with field violations.
:func:`to_status` is the only place that turns an exception into a status code.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from konbini.contracts import reasons

DOMAIN = "konbini-kofu.dev"


@dataclass(frozen=True)
class FieldViolation:
    """One bad field: its path in the request (``options.members[2]``) and what is wrong."""

    field: str
    description: str


class KonbiniError(Exception):
    """A typed refusal or failure. ``reason`` is a catalogue name such as ``"CARD_REVOKED"``.

    The gRPC status code of each reason is fixed in the catalogue (proto option ``grpc_code``),
    so raising code never chooses one. Subclasses group reasons for ``except`` clauses.
    """

    def __init__(
        self,
        reason: str,
        message: str = "",
        *,
        metadata: Mapping[str, str] | None = None,
        violations: Iterable[FieldViolation] = (),
    ) -> None:
        super().__init__(f"{reason}: {message}" if message else reason)
        self.reason = reason
        self.message = message or reason
        self.metadata: dict[str, str] = dict(metadata or {})
        self.violations: tuple[FieldViolation, ...] = tuple(violations)


def status_code_of(reason: str) -> grpc.StatusCode:
    """The gRPC status code the catalogue fixes for a reason."""
    entry = reasons().get(reason)
    number = entry.grpc_code if entry else grpc.StatusCode.INTERNAL.value[0]
    return next(c for c in grpc.StatusCode if c.value[0] == number)


def to_status(error: KonbiniError) -> status_pb2.Status:
    """The google.rpc.Status for an error: one ErrorInfo, plus BadRequest for bad fields."""
    reason = error.reason if error.reason in reasons() else "INTERNAL"
    info = error_details_pb2.ErrorInfo(reason=reason, domain=DOMAIN, metadata=error.metadata)
    details = [info]
    if error.violations:
        details.append(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(
                        field=v.field, description=v.description
                    )
                    for v in error.violations
                ]
            )
        )
    packed = []
    for detail in details:
        any_msg = any_pb2.Any()
        any_msg.Pack(detail)
        packed.append(any_msg)
    return status_pb2.Status(
        code=status_code_of(reason).value[0], message=error.message, details=packed
    )


def internal_error() -> KonbiniError:
    """What a client sees for an unexpected failure: no exception text (ERR-NO-INTERNALS)."""
    return KonbiniError("INTERNAL", "internal error")


def invalid(violations: Iterable[FieldViolation], message: str = "") -> KonbiniError:
    """A FIELD_INVALID error for bad input (INPUT-INVALID-ARGUMENT)."""
    violations = tuple(violations)
    return KonbiniError(
        "FIELD_INVALID",
        message or "; ".join(f"{v.field}: {v.description}" for v in violations),
        violations=violations,
    )


@dataclass(frozen=True)
class ParsedError:
    """An error as a client reads it back from a call's trailers."""

    code: grpc.StatusCode
    message: str
    reason: str | None
    domain: str | None
    metadata: dict[str, str]
    violations: tuple[FieldViolation, ...]
    error_info_count: int


def parse_rpc_error(error: grpc.RpcError | grpc.aio.AioRpcError) -> ParsedError:
    """Read the google.rpc.Status details of a failed call (sync or asyncio)."""
    status = rpc_status.from_call(error) if isinstance(error, grpc.Call) else None
    if status is None and isinstance(error, grpc.aio.AioRpcError):
        status = _status_from_metadata(error.trailing_metadata())
    code = error.code()
    infos: list[error_details_pb2.ErrorInfo] = []
    violations: list[FieldViolation] = []
    if status is not None:
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                infos.append(info)
            elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                violations += [
                    FieldViolation(v.field, v.description) for v in bad.field_violations
                ]
    first = infos[0] if infos else None
    return ParsedError(
        code=code,
        message=error.details() or "",
        reason=first.reason if first else None,
        domain=first.domain if first else None,
        metadata=dict(first.metadata) if first else {},
        violations=tuple(violations),
        error_info_count=len(infos),
    )


_STATUS_KEY = "grpc-status-details-bin"


def _status_from_metadata(metadata: object) -> status_pb2.Status | None:
    for key, value in metadata or ():  # type: ignore[attr-defined]
        if key == _STATUS_KEY:
            return status_pb2.Status.FromString(value)
    return None
