"""What the contracts say about themselves, read from the generated descriptors.

The protos carry their own rules as custom options (konbini/common/v1/spec.proto): which roles
may call a service, which methods mutate state, which requirements a method serves, which
fields are required. Servers, the conformance suite and the docs all read them from here, so
the .proto files stay the one place where each rule is stated.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from types import ModuleType

from google.protobuf import descriptor

from konbini.common.v1 import errors_pb2, requirements_pb2, spec_pb2
from konbini.issuing.v1 import issuing_pb2, issuing_pb2_grpc
from konbini.kiosk.v1 import kiosk_pb2, kiosk_pb2_grpc
from konbini.platform.v1 import platform_pb2, platform_pb2_grpc
from konbini.testing.v1 import testing_pb2, testing_pb2_grpc
from konbini.verification.v1 import verification_pb2, verification_pb2_grpc

# Every service of the contracts with the module of its message classes and of its stubs.
SERVICE_MODULES: tuple[tuple[ModuleType, ModuleType], ...] = (
    (kiosk_pb2, kiosk_pb2_grpc),
    (issuing_pb2, issuing_pb2_grpc),
    (platform_pb2, platform_pb2_grpc),
    (verification_pb2, verification_pb2_grpc),
    (testing_pb2, testing_pb2_grpc),
)


@dataclass(frozen=True)
class Requirement:
    """One normative requirement (konbini.common.v1.Requirement)."""

    id: str
    level: str  # "MUST" or "SHOULD"
    text: str
    roles: tuple[str, ...]  # "terminal", "centre", "municipality"
    number: int


@dataclass(frozen=True)
class Reason:
    """One entry of the error catalogue (konbini.common.v1.ErrorReason)."""

    name: str  # as sent in ErrorInfo.reason, e.g. "UNDER_15"
    number: int
    grpc_code: int
    refusal: bool
    message_ja: str
    message_en: str


@dataclass(frozen=True)
class Method:
    """One RPC with the options the contracts attach to it."""

    service: str  # full name, e.g. "konbini.kiosk.v1.KioskService"
    name: str
    descriptor: descriptor.MethodDescriptor
    mutating: bool
    requirements: tuple[str, ...]

    @property
    def path(self) -> str:
        return f"/{self.service}/{self.name}"


def _role_name(number: int) -> str:
    return spec_pb2.Role.Name(number).removeprefix("ROLE_").lower()


@cache
def requirements() -> tuple[Requirement, ...]:
    result = []
    for value in requirements_pb2.DESCRIPTOR.enum_types_by_name["Requirement"].values:
        if value.number == 0:
            continue
        spec = value.GetOptions().Extensions[spec_pb2.requirement]
        result.append(
            Requirement(
                id=spec.id,
                level=spec_pb2.RequirementLevel.Name(spec.level).removeprefix(
                    "REQUIREMENT_LEVEL_"
                ),
                text=spec.text,
                roles=tuple(_role_name(r) for r in spec.roles),
                number=value.number,
            )
        )
    return tuple(result)


@cache
def requirement_ids() -> frozenset[str]:
    return frozenset(r.id for r in requirements())


@cache
def reasons() -> dict[str, Reason]:
    result = {}
    for value in errors_pb2.DESCRIPTOR.enum_types_by_name["ErrorReason"].values:
        if value.number == 0:
            continue
        spec = value.GetOptions().Extensions[spec_pb2.reason]
        name = value.name.removeprefix("ERROR_REASON_")
        result[name] = Reason(
            name=name,
            number=value.number,
            grpc_code=spec.grpc_code,
            refusal=spec.refusal,
            message_ja=spec.message_ja,
            message_en=spec.message_en,
        )
    return result


def reason_enum_value(name: str) -> int:
    """The ErrorReason enum number of a catalogue name (for fields typed ErrorReason)."""
    return reasons()[name].number


def services() -> Iterator[descriptor.ServiceDescriptor]:
    for pb2, _grpc in SERVICE_MODULES:
        yield from pb2.DESCRIPTOR.services_by_name.values()


@cache
def service_roles() -> dict[str, frozenset[str]]:
    """Service full name -> the roles its contract accepts ("terminal", "public", ...)."""
    return {
        s.full_name: frozenset(_role_name(r) for r in s.GetOptions().Extensions[spec_pb2.callers])
        for s in services()
    }


@cache
def methods() -> tuple[Method, ...]:
    result = []
    for s in services():
        for m in s.methods:
            opts = m.GetOptions()
            result.append(
                Method(
                    service=s.full_name,
                    name=m.name,
                    descriptor=m,
                    mutating=opts.Extensions[spec_pb2.mutating],
                    requirements=tuple(opts.Extensions[spec_pb2.requirements]),
                )
            )
    return tuple(result)


def required_fields(message: descriptor.Descriptor) -> tuple[descriptor.FieldDescriptor, ...]:
    """Fields marked FIELD_BEHAVIOR_REQUIRED on a message type."""
    return tuple(
        f
        for f in message.fields
        if spec_pb2.FIELD_BEHAVIOR_REQUIRED in f.GetOptions().Extensions[spec_pb2.field_behavior]
    )
