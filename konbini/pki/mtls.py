"""Mutual TLS for the gRPC hops and per-service authorization by the peer's role.

Identities come from the verified client certificate only (SAN URIs, see
:mod:`konbini.pki.identity`), never from request fields. :class:`AuthorizationInterceptor`
checks each call; servicers read the caller with :func:`peer_identity`.
"""

from __future__ import annotations

import contextvars
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import grpc
import grpc.aio
from cryptography import x509
from grpc_status import rpc_status

from konbini.errors import KonbiniError, to_status
from konbini.pki.identity import (
    InvalidIdentity,
    PeerIdentity,
    Role,
    identity_of,
    parse_identity_uri,
)

log = logging.getLogger(__name__)

DEV_IDENTITY_METADATA = "x-konbini-dev-identity"
REASON_CALLER_NOT_ALLOWED = "CALLER_NOT_ALLOWED"
REASON_CLIENT_CERTIFICATE_REQUIRED = "CLIENT_CERTIFICATE_REQUIRED"

# The identity the interceptor established for the call running in this task.
_current_identity: contextvars.ContextVar[PeerIdentity | None] = contextvars.ContextVar(
    "konbini_peer_identity", default=None
)


def server_credentials(
    cert_pem: bytes, key_pem: bytes, ca_pem: bytes, *, require_client_auth: bool = True
) -> grpc.ServerCredentials:
    """TLS server credentials that verify client certificates against the operator CA.

    With ``require_client_auth=False`` no client certificate is requested at all (gRPC Python
    offers no "optional" mode); use that only for a port serving public services.
    """
    return grpc.ssl_server_credentials(
        [(key_pem, cert_pem)], root_certificates=ca_pem, require_client_auth=require_client_auth
    )


def channel_credentials(
    ca_pem: bytes, cert_pem: bytes | None = None, key_pem: bytes | None = None
) -> grpc.ChannelCredentials:
    """TLS channel credentials trusting the operator CA, presenting a client certificate."""
    return grpc.ssl_channel_credentials(
        root_certificates=ca_pem, private_key=key_pem, certificate_chain=cert_pem
    )


def _identity_from_auth_context(context: grpc.aio.ServicerContext) -> PeerIdentity | None:
    auth = context.auth_context()
    pems = auth.get("x509_pem_cert") or []
    if not pems:
        return None
    # gRPC only fills x509_pem_cert after verifying the chain against the configured CA.
    return identity_of(x509.load_pem_x509_certificate(pems[0]))


def peer_identity(context: grpc.aio.ServicerContext) -> PeerIdentity:
    """The caller of the current RPC (as established by :class:`AuthorizationInterceptor`)."""
    identity = _current_identity.get()
    if identity is None:
        identity = _identity_from_auth_context(context)
    if identity is None:
        raise PermissionError("no authenticated peer for this call")
    return identity


def _error_status(reason: str, message: str) -> grpc.Status:
    # The catalogue fixes the code: CLIENT_CERTIFICATE_REQUIRED → UNAUTHENTICATED,
    # CALLER_NOT_ALLOWED → PERMISSION_DENIED.
    return rpc_status.to_status(to_status(KonbiniError(reason, message)))


class _Denied(Exception):
    def __init__(self, status: grpc.Status) -> None:
        super().__init__(status.details)
        self.status = status


class AuthorizationInterceptor(grpc.aio.ServerInterceptor):
    """Allows each call only to the roles mapped to its service.

    ``service_roles`` maps a full service name (``konbini.kiosk.v1.KioskService``) to the roles
    that may call it; services not in the map (health, reflection) are open to any peer with a
    verified certificate; ``public_services`` need no certificate at all. ``insecure_dev``
    (development only) also accepts an identity URI from the ``x-konbini-dev-identity``
    metadata when the connection has no certificate.
    """

    def __init__(
        self,
        service_roles: Mapping[str, frozenset[Role]],
        insecure_dev: bool = False,
        *,
        public_services: frozenset[str] = frozenset(),
    ) -> None:
        self._roles = dict(service_roles)
        self._insecure = insecure_dev
        self._public = public_services
        self._warned = False

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        service = handler_call_details.method.lstrip("/").split("/", 1)[0]
        if service in self._public:
            return handler
        return _wrap(handler, lambda ctx: self._authorize(ctx, service))

    def _dev_identity(self, context: grpc.aio.ServicerContext) -> PeerIdentity | None:
        for key, value in context.invocation_metadata() or ():
            if key == DEV_IDENTITY_METADATA:
                if not self._warned:
                    self._warned = True
                    log.warning(
                        "insecure development mode: caller identities are taken from "
                        "request metadata, not from certificates"
                    )
                return parse_identity_uri(str(value))
        return None

    def _authorize(self, context: grpc.aio.ServicerContext, service: str) -> PeerIdentity:
        try:
            identity = _identity_from_auth_context(context)
            if identity is None and self._insecure:
                identity = self._dev_identity(context)
        except InvalidIdentity:
            raise _Denied(
                _error_status(REASON_CALLER_NOT_ALLOWED, "no konbini identity in certificate")
            ) from None
        if identity is None:
            raise _Denied(
                _error_status(REASON_CLIENT_CERTIFICATE_REQUIRED, "a client certificate is needed")
            )
        allowed = self._roles.get(service)
        if allowed is not None and identity.role not in allowed:
            # Say as little as needed: not which roles would have been allowed.
            raise _Denied(
                _error_status(REASON_CALLER_NOT_ALLOWED, f"{service} does not accept this caller")
            )
        return identity


Check = Callable[[grpc.aio.ServicerContext], PeerIdentity]


async def _admit(check: Check, context: grpc.aio.ServicerContext) -> None:
    try:
        identity = check(context)
    except _Denied as denied:
        await context.abort_with_status(denied.status)
        raise AssertionError("abort_with_status returned") from None  # pragma: no cover
    _current_identity.set(identity)


async def _resolve(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


async def _stream(result: Any) -> AsyncIterator[Any]:
    # A streaming behaviour may be an async generator, a sync iterator, or a coroutine that
    # writes with context.write() and returns None.
    if hasattr(result, "__aiter__"):
        async for item in result:
            yield item
    elif inspect.isawaitable(result):
        await result
    elif result is not None:
        for item in result:
            yield item


def _wrap(handler: grpc.RpcMethodHandler, check: Check) -> grpc.RpcMethodHandler:
    """The same handler with ``check`` run inside every behaviour before the servicer."""
    des, ser = handler.request_deserializer, handler.response_serializer
    if handler.unary_unary is not None:
        inner_uu = handler.unary_unary

        async def unary_unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            await _admit(check, context)
            return await _resolve(inner_uu(request, context))

        return grpc.unary_unary_rpc_method_handler(unary_unary, des, ser)
    if handler.unary_stream is not None:
        inner_us = handler.unary_stream

        async def unary_stream(request: Any, context: grpc.aio.ServicerContext) -> Any:
            await _admit(check, context)
            async for item in _stream(inner_us(request, context)):
                yield item

        return grpc.unary_stream_rpc_method_handler(unary_stream, des, ser)
    if handler.stream_unary is not None:
        inner_su = handler.stream_unary

        async def stream_unary(requests: Any, context: grpc.aio.ServicerContext) -> Any:
            await _admit(check, context)
            return await _resolve(inner_su(requests, context))

        return grpc.stream_unary_rpc_method_handler(stream_unary, des, ser)
    inner_ss = handler.stream_stream

    async def stream_stream(requests: Any, context: grpc.aio.ServicerContext) -> Any:
        await _admit(check, context)
        async for item in _stream(inner_ss(requests, context)):
            yield item

    return grpc.stream_stream_rpc_method_handler(stream_stream, des, ser)
