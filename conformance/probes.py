"""Wire-level probes shared by the roles' checks: the error model of any answer, a message far
over any sane size limit, and a call that claims an identity in request metadata.

These calls go around :class:`conformance.target.Wire` recording on purpose: a 64 MiB request
does not belong in a replay script, and plain ``Wire`` calls cannot carry metadata.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import grpc
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from conformance.failures import CheckFailed
from conformance.target import Answer, Wire, attempt, method_types
from konbini.contracts import reasons

DOMAIN = "konbini-kofu.dev"
INTERNALS = re.compile(r"Traceback|File \"|line \d+, in |Exception:|Error\(|0x[0-9a-f]{8,}")
# Far over any sane limit for these messages (the reference bounds them at 32 MiB).
OVERSIZED_BYTES = 64 * 1024 * 1024 + 1024
# The metadata key an explicit local-development server reads identities from; a server with
# TLS must ignore it (AUTHZ-IDENTITY).
DEV_IDENTITY_METADATA = "x-konbini-dev-identity"


def judge_error(sent: str, answer: Answer, names: Sequence[str] = ()) -> None:
    """Raise CheckFailed when an error answer breaks ERR-MODEL (one ErrorInfo, the fixed domain,
    a catalogued reason with its status code) or ERR-NO-INTERNALS (internals or ``names``)."""
    e = answer.error
    if e is None:
        return
    catalogue = reasons()
    if e.error_info_count != 1:
        raise CheckFailed(
            "ERR-MODEL",
            sent,
            answer.describe(),
            f"{e.error_info_count} ErrorInfo details (exactly one required)",
        )
    if e.domain != DOMAIN:
        raise CheckFailed("ERR-MODEL", sent, answer.describe(), f"ErrorInfo domain {e.domain!r}")
    if e.reason not in catalogue:
        raise CheckFailed(
            "ERR-MODEL", sent, answer.describe(), f"reason {e.reason!r} not catalogued"
        )
    if e.code.value[0] != catalogue[e.reason].grpc_code:
        raise CheckFailed(
            "ERR-MODEL",
            sent,
            answer.describe(),
            f"reason {e.reason} came with {e.code.name}; the catalogue fixes "
            f"code {catalogue[e.reason].grpc_code}",
        )
    if INTERNALS.search(e.message) or any(n and n in e.message for n in names):
        raise CheckFailed(
            "ERR-NO-INTERNALS",
            sent,
            answer.describe(),
            "the error message carries internals or personal data",
        )


def _unlimited_channel(wire: Wire, identity: str) -> grpc.Channel:
    """A channel as ``identity`` that may send any size (the suite's own limit is 64 MiB)."""
    config = wire.config
    ident = config.identities[identity]
    creds = grpc.ssl_channel_credentials(
        root_certificates=config.ca_pem,
        private_key=ident.key_pem,
        certificate_chain=ident.cert_pem,
    )
    options: list[tuple[str, object]] = [("grpc.max_send_message_length", -1)]
    if config.tls_server_name:
        options.append(("grpc.ssl_target_name_override", config.tls_server_name))
    return grpc.secure_channel(config.address, creds, options=options)


def oversized_answer(wire: Wire, identity: str, path: str, request: Message) -> Answer:
    """Send ``request`` (already padded past the limit) as ``identity``; what came back."""
    _req, response_type = method_types(path)
    channel = _unlimited_channel(wire, identity)
    try:
        call = channel.unary_unary(
            path,
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=response_type.FromString,
        )
        return attempt(lambda: call(request, timeout=120))
    finally:
        channel.close()


def judge_oversized(sent: str, answer: Answer) -> None:
    """The answer to an oversized request must be RESOURCE_EXHAUSTED (LIMIT-SIZE)."""
    if answer.ok or answer.error is None:
        raise CheckFailed(
            "LIMIT-SIZE",
            sent,
            answer.describe(),
            "a request over 64 MiB was accepted: the server bounds no message size",
            expected={"outcome": "error"},
        )
    if answer.error.code is not grpc.StatusCode.RESOURCE_EXHAUSTED:
        raise CheckFailed(
            "LIMIT-SIZE",
            sent,
            answer.describe(),
            "a request over 64 MiB was not refused with RESOURCE_EXHAUSTED",
            expected={"outcome": "error"},
        )


def claimed_identity_answer(
    wire: Wire, identity: str, path: str, request: Message, claim: str
) -> Answer:
    """Call ``path`` as ``identity`` with metadata claiming the identity URI ``claim``."""
    _req, response_type = method_types(path)
    call = wire.channel(identity).unary_unary(
        path,
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=response_type.FromString,
    )
    metadata = ((DEV_IDENTITY_METADATA, claim),)
    return attempt(lambda: call(request, timeout=wire.config.call_timeout, metadata=metadata))


def expect_serving(channel: grpc.Channel, services: Sequence[str]) -> None:
    """OPS-HEALTH: grpc.health.v1.Health/Check answers SERVING for each service ('' = server)."""
    stub = health_pb2_grpc.HealthStub(channel)
    for service in services:
        try:
            status = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10).status
        except grpc.RpcError as error:
            raise CheckFailed("OPS-HEALTH", f"Health/Check({service!r})", str(error.code()),
                              "no standard health checking") from None
        if status != health_pb2.HealthCheckResponse.SERVING:
            raise CheckFailed("OPS-HEALTH", f"Health/Check({service!r})", str(status),
                              "not SERVING")


def expect_reflected(channel: grpc.Channel, service: str) -> None:
    """OPS-REFLECTION: server reflection lists ``service``."""
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    ask = reflection_pb2.ServerReflectionRequest(list_services="")
    try:
        responses = list(stub.ServerReflectionInfo(iter([ask]), timeout=10))
    except grpc.RpcError as error:
        raise CheckFailed("OPS-REFLECTION", "ServerReflectionInfo(list_services)",
                          str(error.code()), "no server reflection") from None
    names = [s.name for r in responses for s in r.list_services_response.service]
    if service not in names:
        raise CheckFailed("OPS-REFLECTION", "ServerReflectionInfo(list_services)", str(names),
                          f"{service.rsplit('.', 1)[-1]} is not listed")
