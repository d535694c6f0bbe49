"""Routing: municipality code → replicas of its issuing server, with failover (ROUTE-*).

Routes come from the configuration and, in test mode, from FixtureService.LoadDataset (stored,
so every worker sees them; a stored route overrides a configured one). Channels use the
centre's client certificate and trust the operator CA; ``tls_server_name`` overrides the
name checked in the server certificate.

A call tries the endpoints in order, skipping those that failed in the last few seconds; it
moves on when an endpoint is UNAVAILABLE or times out without an answer from the contract
(no ErrorInfo). An answer with a reason passes through as that reason. When no endpoint
answers the call raises MUNICIPALITY_UNAVAILABLE; an unknown code MUNICIPALITY_UNKNOWN.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import grpc.aio

from centre.config import RouteConfig
from konbini.errors import KonbiniError, parse_rpc_error
from konbini.issuing.v1 import issuing_pb2_grpc
from konbini.storage import AsyncStore, Tx

log = logging.getLogger(__name__)

FAILED_ENDPOINT_MEMORY_S = 5.0
# Status codes after which another replica may answer (the request may not have arrived, or
# the replica is going away). Mutating calls are idempotent on their request_id, and replicas
# share their storage, so trying again elsewhere is safe.
FAILOVER_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})


@dataclass(frozen=True)
class Route:
    """Where a municipality is served."""

    code: str
    name: str
    endpoints: tuple[str, ...]
    tls_server_name: str = ""


def stored_routes(tx: Tx) -> dict[str, Route]:
    """The routes FixtureService loaded."""
    return {
        str(r["code"]): Route(str(r["code"]), str(r["name"]), tuple(json.loads(r["endpoints"])),
                              str(r["tls_server_name"]))
        for r in tx.execute(
            "SELECT code, name, endpoints, tls_server_name FROM fixture_routes"
        ).fetchall()
    }


def store_route(tx: Tx, route: Route) -> None:
    """Add or replace a test-mode route."""
    tx.execute(
        "INSERT INTO fixture_routes (code, name, endpoints, tls_server_name) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (code) DO UPDATE SET name = excluded.name,"
        " endpoints = excluded.endpoints, tls_server_name = excluded.tls_server_name",
        (route.code, route.name, json.dumps(list(route.endpoints)), route.tls_server_name),
    )


class Router:
    """Calls IssuingService methods on the right municipality server."""

    def __init__(
        self,
        configured: tuple[RouteConfig, ...],
        credentials: grpc.ChannelCredentials | None,
        store: AsyncStore,
        *,
        use_stored: bool,
        default_timeout_s: float,
        max_message_bytes: int = 32 * 1024 * 1024,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._configured = {
            r.code: Route(r.code, r.name, r.endpoints, r.tls_server_name) for r in configured
        }
        self._credentials = credentials
        self._store = store
        self._use_stored = use_stored
        self._timeout = default_timeout_s
        self._max_bytes = max_message_bytes
        self._monotonic = monotonic
        self._channels: dict[tuple[str, str], grpc.aio.Channel] = {}
        self._failed_until: dict[str, float] = {}

    async def route(self, code: str) -> Route:
        """The route of ``code``; MUNICIPALITY_UNKNOWN if there is none."""
        if self._use_stored:
            stored = await self._store.run(stored_routes, write=False)
            if code in stored:
                return stored[code]
        if code in self._configured:
            return self._configured[code]
        raise KonbiniError("MUNICIPALITY_UNKNOWN", "no route to this municipality",
                           metadata={"municipality_code": code})

    def name_in(self, tx: Tx, code: str) -> str:
        """The municipality's display name, read inside the caller's transaction."""
        if self._use_stored:
            stored = stored_routes(tx)
            if code in stored:
                return stored[code].name
        route = self._configured.get(code)
        return route.name if route else ""

    async def name_of(self, code: str) -> str:
        """The municipality's display name from its route ('' if unknown)."""
        try:
            return (await self.route(code)).name
        except KonbiniError:
            return ""

    def _channel(self, endpoint: str, tls_name: str) -> grpc.aio.Channel:
        key = (endpoint, tls_name)
        channel = self._channels.get(key)
        if channel is None:
            options: list[tuple[str, Any]] = [
                ("grpc.max_receive_message_length", self._max_bytes),
                ("grpc.max_send_message_length", self._max_bytes),
            ]
            if self._credentials is None:
                channel = grpc.aio.insecure_channel(endpoint, options=options)
            else:
                if tls_name:
                    options.append(("grpc.ssl_target_name_override", tls_name))
                channel = grpc.aio.secure_channel(endpoint, self._credentials, options=options)
            self._channels[key] = channel
        return channel

    def _ordered(self, endpoints: tuple[str, ...]) -> list[str]:
        now = self._monotonic()
        healthy = [e for e in endpoints if self._failed_until.get(e, 0.0) <= now]
        failed = [e for e in endpoints if e not in healthy]
        return healthy + failed  # recently failed ones last, still tried when all are down

    async def call(
        self,
        code: str,
        method: str,
        request: Any,
        *,
        time_remaining: float | None = None,
        metadata: tuple[tuple[str, str], ...] = (),
    ) -> Any:
        """``IssuingService.<method>(request)`` on municipality ``code``.

        ``time_remaining`` is the caller's remaining deadline (ROUTE-DEADLINE); the whole call,
        failover included, stays within it.
        """
        route = await self.route(code)
        budget = self._timeout if time_remaining is None else min(self._timeout, time_remaining)
        deadline = self._monotonic() + max(budget, 0.0)
        last: str = "no endpoint"
        for endpoint in self._ordered(route.endpoints):
            left = deadline - self._monotonic()
            if left <= 0:
                break
            stub = issuing_pb2_grpc.IssuingServiceStub(
                self._channel(endpoint, route.tls_server_name)
            )
            rpc: Callable[..., Awaitable[Any]] = getattr(stub, method)
            try:
                response = await rpc(request, timeout=left, metadata=metadata or None)
            except grpc.aio.AioRpcError as error:
                parsed = parse_rpc_error(error)
                if parsed.reason is not None and parsed.reason != "INTERNAL":
                    self._failed_until.pop(endpoint, None)
                    raise KonbiniError(parsed.reason, parsed.message,
                                       metadata=parsed.metadata) from None
                if error.code() in FAILOVER_CODES or parsed.reason == "INTERNAL":
                    self._failed_until[endpoint] = self._monotonic() + FAILED_ENDPOINT_MEMORY_S
                    last = error.code().name
                    log.warning("municipality %s endpoint %s failed: %s", code, endpoint, last)
                    continue
                # Another status without a contract reason (UNIMPLEMENTED, ...): not retryable.
                raise KonbiniError("MUNICIPALITY_UNAVAILABLE", "the municipality failed",
                                   metadata={"municipality_code": code}) from None
            self._failed_until.pop(endpoint, None)
            return response
        raise KonbiniError("MUNICIPALITY_UNAVAILABLE", f"no replica answered ({last})",
                           metadata={"municipality_code": code})

    async def close(self) -> None:
        """Close every channel."""
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()
