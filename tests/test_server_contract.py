"""Every service registered on a real loopback server: reflection, health, the error model."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import grpc.aio
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from konbini import contracts
from konbini.errors import KonbiniError, parse_rpc_error
from konbini.issuing.v1 import issuing_pb2, issuing_pb2_grpc
from konbini.kiosk.v1 import kiosk_pb2, kiosk_pb2_grpc
from konbini.server import ServerOptions, ServiceBinding, create_server, drain, start
from konbini.testing.v1 import testing_pb2, testing_pb2_grpc


class FailingKiosk(kiosk_pb2_grpc.KioskServiceServicer):
    """Answers CreateSession with a refusal and GetCatalogue with a crash."""

    async def CreateSession(self, request: Any, context: Any) -> Any:
        raise KonbiniError("UNDER_15", "card holder is under 15", metadata={"age": "14"})

    async def GetCatalogue(self, request: Any, context: Any) -> Any:
        resident = "".join(["山田", "太郎"])  # personal data arrives in values, not in code
        raise RuntimeError(f"secret internal detail: resident {resident}")


def every_binding(kiosk: Any = None) -> list[ServiceBinding]:
    """Each service of the contracts with its generated base servicer (UNIMPLEMENTED)."""
    bindings = []
    for _pb2, grpc_mod in contracts.SERVICE_MODULES:
        for name in _pb2.DESCRIPTOR.services_by_name:
            servicer = getattr(grpc_mod, f"{name}Servicer")()
            if name == "KioskService" and kiosk is not None:
                servicer = kiosk
            add = getattr(grpc_mod, f"add_{name}Servicer_to_server")
            full = _pb2.DESCRIPTOR.services_by_name[name].full_name
            bindings.append(ServiceBinding(add, servicer, full))
    return bindings


async def running(test_mode: bool = False) -> AsyncIterator[grpc.aio.Channel]:
    bindings = every_binding(FailingKiosk())
    server, port, health = create_server(
        bindings, ServerOptions(insecure_dev=True, test_mode=test_mode)
    )
    await start(server, health, [b.name for b in bindings])
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield channel
    finally:
        await drain(server, health, grace=1)


@pytest.fixture
async def channel() -> AsyncIterator[grpc.aio.Channel]:
    async for ch in running():
        yield ch


async def test_reflection_lists_every_contract_service(channel: grpc.aio.Channel) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)

    async def requests() -> AsyncIterator[reflection_pb2.ServerReflectionRequest]:
        yield reflection_pb2.ServerReflectionRequest(list_services="")

    names = set()
    async for response in stub.ServerReflectionInfo(requests()):
        names |= {s.name for s in response.list_services_response.service}
    assert set(contracts.service_roles()) <= names
    assert "grpc.health.v1.Health" in names


async def test_health_reports_each_service_serving(channel: grpc.aio.Channel) -> None:
    stub = health_pb2_grpc.HealthStub(channel)
    for service in ["", *contracts.service_roles()]:
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=service))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING, service


async def test_unimplemented_until_a_side_implements_it(channel: grpc.aio.Channel) -> None:
    stub = issuing_pb2_grpc.IssuingServiceStub(channel)
    request = issuing_pb2.GetReservationRequest(
        municipality_code={"value": "192015"}, reservation_id="r"
    )
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.GetReservation(request)
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_refusal_is_status_with_exactly_one_error_info(channel: grpc.aio.Channel) -> None:
    stub = kiosk_pb2_grpc.KioskServiceStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.CreateSession(kiosk_pb2.CreateSessionRequest(request_id="r-1"))
    parsed = parse_rpc_error(info.value)
    assert parsed.code == grpc.StatusCode.FAILED_PRECONDITION
    assert (parsed.reason, parsed.domain, parsed.error_info_count) == (
        "UNDER_15", "konbini-kofu.dev", 1)
    assert parsed.metadata == {"age": "14"}


async def test_bad_input_names_each_field_and_never_reaches_the_handler(
    channel: grpc.aio.Channel,
) -> None:
    stub = issuing_pb2_grpc.IssuingServiceStub(channel)
    request = issuing_pb2.PrepareIssuanceRequest(
        request_id="has space", municipality_code={"value": "192016"}, copies=1
    )
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.PrepareIssuance(request)
    parsed = parse_rpc_error(info.value)
    assert parsed.code == grpc.StatusCode.INVALID_ARGUMENT
    assert parsed.reason == "FIELD_INVALID"
    fields = {v.field for v in parsed.violations}
    assert fields == {"request_id", "municipality_code", "card", "kind"}


async def test_internal_errors_carry_no_text(channel: grpc.aio.Channel) -> None:
    stub = kiosk_pb2_grpc.KioskServiceStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.GetCatalogue(kiosk_pb2.GetCatalogueRequest(session_id="s"))
    parsed = parse_rpc_error(info.value)
    assert parsed.code == grpc.StatusCode.INTERNAL and parsed.reason == "INTERNAL"
    assert "secret" not in parsed.message and "山田" not in parsed.message


async def test_test_mode_services_are_refused_outside_test_mode(
    channel: grpc.aio.Channel,
) -> None:
    stub = testing_pb2_grpc.FixtureServiceStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Reset(testing_pb2.ResetRequest(request_id="r"))
    assert parse_rpc_error(info.value).reason == "TEST_MODE_DISABLED"


async def test_test_mode_lets_the_test_services_answer() -> None:
    async for ch in running(test_mode=True):
        stub = testing_pb2_grpc.FixtureServiceStub(ch)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Reset(testing_pb2.ResetRequest(request_id="r"))
        assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_tls_is_required_unless_insecure_dev_is_explicit() -> None:
    with pytest.raises(ValueError, match="TLS"):
        create_server([], ServerOptions())


async def test_internal_error_logs_carry_no_message(
    channel: grpc.aio.Channel, caplog: pytest.LogCaptureFixture
) -> None:
    stub = kiosk_pb2_grpc.KioskServiceStub(channel)
    with pytest.raises(grpc.aio.AioRpcError):
        await stub.GetCatalogue(kiosk_pb2.GetCatalogueRequest(session_id="s"))
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "RuntimeError" in logged and "GetCatalogue" in logged
    assert "山田" not in logged  # the value never reaches the log; code lines may
