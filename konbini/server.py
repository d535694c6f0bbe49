"""Building and running a konbini gRPC server; the same for every side.

`create_server` only builds (so tests bind port 0 and use the port they get back); `serve`
runs one until SIGTERM or SIGINT, then drains: health goes NOT_SERVING, in-flight calls get a
grace period, a second signal exits at once. `run_workers` starts several processes on one
port (SO_REUSEPORT) so a side scales over cores.

Every server gets the same contract layer (:class:`ContractInterceptor`): requests are checked
against the contracts before a handler runs, a `KonbiniError` becomes a google.rpc.Status, any
other exception becomes INTERNAL without its text, and the test-mode services answer
TEST_MODE_DISABLED unless the server was started in test mode.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import multiprocessing
import os
import signal
import socket
import traceback
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
import grpc.aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from grpc_status import rpc_status

from konbini import validation
from konbini.contracts import service_roles
from konbini.errors import KonbiniError, internal_error, to_status
from konbini.pki.identity import Role
from konbini.pki.mtls import AuthorizationInterceptor

log = logging.getLogger(__name__)

TESTING_PACKAGE = "konbini.testing.v1."
DEFAULT_MAX_MESSAGE_BYTES = 32 * 1024 * 1024  # a few copies of a multi-page A4 certificate


@dataclass(frozen=True)
class ServiceBinding:
    """One servicer to register: the generated add_XServicer_to_server and its service name."""

    add: Callable[[Any, Any], None]
    servicer: Any
    name: str  # full service name, e.g. "konbini.kiosk.v1.KioskService"


@dataclass(frozen=True)
class ServerOptions:
    """How a server listens. Safe defaults: loopback, TLS expected, test mode off."""

    bind: str = "127.0.0.1:0"
    # TLS server credentials; None only with insecure_dev (local development, never production).
    credentials: grpc.ServerCredentials | None = None
    insecure_dev: bool = False
    # Test mode registers nothing new; it lets the konbini.testing services answer.
    test_mode: bool = False
    # LIMIT-SIZE: the largest request or response accepted.
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    # Extra interceptors (authorization first), run before the contract layer.
    interceptors: Sequence[grpc.aio.ServerInterceptor] = field(default_factory=tuple)
    # Several processes may listen on one port (run_workers).
    reuse_port: bool = True


class ContractInterceptor(grpc.aio.ServerInterceptor):
    """Contract checks and the error mapping around every konbini handler (unary calls)."""

    def __init__(self, *, test_mode: bool) -> None:
        self._test_mode = test_mode

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(details)
        method: str = details.method
        if handler is None or not method.startswith("/konbini.") or handler.unary_unary is None:
            return handler
        inner = handler.unary_unary
        gated = method.startswith("/" + TESTING_PACKAGE) and not self._test_mode

        async def behaviour(request: Any, context: grpc.aio.ServicerContext) -> Any:
            try:
                if gated:
                    raise KonbiniError("TEST_MODE_DISABLED", "the server is not in test mode")
                validation.check(request)
                result = inner(request, context)
                return await result if inspect.isawaitable(result) else result
            except NotImplementedError:
                # The generated base servicer: the side has not implemented this call.
                await context.abort(grpc.StatusCode.UNIMPLEMENTED, "not implemented")
            except KonbiniError as error:
                await context.abort_with_status(rpc_status.to_status(to_status(error)))
            except (grpc.aio.AbortError, asyncio.CancelledError):
                raise
            except Exception as error:
                # The message may hold personal data (AUDIT-NO-PII): log the type and where it
                # happened, never the message; send the client nothing of it (ERR-NO-INTERNALS).
                log.error("unhandled %s in %s\n%s", type(error).__name__, method,
                          "".join(traceback.format_tb(error.__traceback__)))
                await context.abort_with_status(rpc_status.to_status(to_status(internal_error())))

        return grpc.unary_unary_rpc_method_handler(
            behaviour, handler.request_deserializer, handler.response_serializer
        )


def create_server(
    bindings: Sequence[ServiceBinding], options: ServerOptions
) -> tuple[grpc.aio.Server, int, health.aio.HealthServicer]:
    """Build a server with the bindings, health checking and reflection; return its port."""
    if options.credentials is None and not options.insecure_dev:
        raise ValueError("TLS credentials are required; insecure mode needs insecure_dev=True")
    server = grpc.aio.server(
        interceptors=[*options.interceptors, ContractInterceptor(test_mode=options.test_mode)],
        options=[
            ("grpc.max_receive_message_length", options.max_message_bytes),
            ("grpc.max_send_message_length", options.max_message_bytes),
            ("grpc.so_reuseport", 1 if options.reuse_port else 0),
        ],
    )
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for binding in bindings:
        binding.add(binding.servicer, server)
    names = [b.name for b in bindings]
    reflection.enable_server_reflection(
        [*names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
         reflection.SERVICE_NAME],
        server,
    )
    if options.credentials is not None:
        port = server.add_secure_port(options.bind, options.credentials)
    else:
        log.warning("serving WITHOUT TLS on %s (insecure development mode)", options.bind)
        port = server.add_insecure_port(options.bind)
    if port == 0:
        raise OSError(f"could not bind {options.bind}")
    return server, port, health_servicer


async def start(
    server: grpc.aio.Server, health_servicer: health.aio.HealthServicer, names: Sequence[str]
) -> None:
    """Start serving and mark every service SERVING."""
    await server.start()
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    for name in names:
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)


async def drain(
    server: grpc.aio.Server, health_servicer: health.aio.HealthServicer, grace: float
) -> None:
    """Stop taking work: NOT_SERVING first (so balancers move away), then finish in-flight calls."""
    await health_servicer.enter_graceful_shutdown()
    await server.stop(grace)


def stop_on_signals() -> asyncio.Event:
    """An event set by the first SIGTERM or SIGINT (drain); a second one exits at once."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        if stop.is_set():
            os._exit(1)  # second signal: the operator wants out now
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    return stop


async def serve(
    server: grpc.aio.Server,
    health_servicer: health.aio.HealthServicer,
    names: Sequence[str],
    *,
    grace: float = 10.0,
    on_started: Callable[[], None] | None = None,
    background: Sequence[Callable[[], Awaitable[None]]] = (),
) -> None:
    """Run until SIGTERM/SIGINT, then drain; a second signal exits immediately."""
    await start(server, health_servicer, names)
    stop = stop_on_signals()
    tasks = [asyncio.create_task(job()) for job in background]
    if on_started:
        on_started()
    try:
        await stop.wait()
    finally:
        for task in tasks:
            task.cancel()
        await drain(server, health_servicer, grace)


def reserve_port(host: str, port: int) -> tuple[socket.socket, int]:
    """Bind (without listening) with SO_REUSEPORT so workers can share the port we got."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock, sock.getsockname()[1]


def run_workers(
    workers: int, target: Callable[..., None], args: tuple[Any, ...] = ()
) -> int:
    """Run target(*args) in `workers` spawned processes; forward signals; return an exit code.

    gRPC must not be forked after it started threads, so workers are spawned, not forked.
    """
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=target, args=args, daemon=False) for _ in range(workers)]
    for proc in procs:
        proc.start()

    def forward(signum: int, _frame: object) -> None:
        for proc in procs:
            if proc.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for proc in procs:
        proc.join()
    return max((proc.exitcode or 0) for proc in procs)


def contract_authorization(*, insecure_dev: bool = False) -> grpc.aio.ServerInterceptor:
    """The authorization interceptor configured from the contracts' `callers` options.

    Services whose callers are ROLE_PUBLIC need no client certificate; gRPC Python cannot make
    a client certificate optional on one port, so a side serves them on a port of their own.
    """
    roles = {
        service: frozenset(Role(r) for r in allowed if r != "public")
        for service, allowed in service_roles().items()
    }
    public = frozenset(s for s, allowed in service_roles().items() if "public" in allowed)
    return AuthorizationInterceptor(roles, insecure_dev, public_services=public)
