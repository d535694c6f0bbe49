"""The terminal's view of the centre: a small interface the flow calls, and its gRPC client.

The flow (:mod:`terminal.flow`) only sees :class:`Centre`; :class:`GrpcCentre` is the one place
that speaks gRPC. Every mutating call carries a request_id chosen by the flow, so a retry after
UNAVAILABLE or DEADLINE_EXCEEDED sends the very same request (ONCE-REQUEST-ID).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

import grpc

from konbini.contracts import reasons
from konbini.errors import KonbiniError, parse_rpc_error
from konbini.kiosk.v1 import kiosk_pb2, kiosk_pb2_grpc
from konbini.pki import PkiDir
from konbini.pki.identity import terminal_uri
from konbini.pki.mtls import DEV_IDENTITY_METADATA, channel_credentials

# Transient failures: the request may or may not have arrived, so it is sent again unchanged.
RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})

Request = TypeVar("Request")
Response = TypeVar("Response")


class CentreUnreachable(KonbiniError):
    """The centre did not answer after every retry (the transaction state is unknown)."""

    def __init__(self, method: str, code: str) -> None:
        super().__init__(
            "INTERNAL",
            f"{method}: centre unreachable ({code})",
            metadata={"method": method, "code": code},
        )
        self.method = method
        self.code = code


class Centre(Protocol):
    """The KioskService calls the flow makes (requests and responses are the wire messages)."""

    def create_session(self, req: kiosk_pb2.CreateSessionRequest
                       ) -> kiosk_pb2.CreateSessionResponse: ...
    def authenticate(self, req: kiosk_pb2.AuthenticateRequest
                     ) -> kiosk_pb2.AuthenticateResponse: ...
    def get_catalogue(self, req: kiosk_pb2.GetCatalogueRequest
                      ) -> kiosk_pb2.GetCatalogueResponse: ...
    def request_issuance(self, req: kiosk_pb2.RequestIssuanceRequest
                         ) -> kiosk_pb2.RequestIssuanceResponse: ...
    def complete_issuance(self, req: kiosk_pb2.CompleteIssuanceRequest
                          ) -> kiosk_pb2.CompleteIssuanceResponse: ...
    def get_issuance(self, req: kiosk_pb2.GetIssuanceRequest
                     ) -> kiosk_pb2.GetIssuanceResponse: ...
    def end_session(self, req: kiosk_pb2.EndSessionRequest) -> kiosk_pb2.EndSessionResponse: ...
    def register_family_register_use(self, req: kiosk_pb2.RegisterFamilyRegisterUseRequest
                                     ) -> kiosk_pb2.RegisterFamilyRegisterUseResponse: ...
    def get_use_registration(self, req: kiosk_pb2.GetUseRegistrationRequest
                             ) -> kiosk_pb2.GetUseRegistrationResponse: ...


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a transient failure is retried (same request each time)."""

    attempts: int = 4
    first_backoff_s: float = 0.2
    max_backoff_s: float = 2.0
    deadline_s: float = 15.0


@dataclass(frozen=True)
class CentreEndpoint:
    """Where the centre is and how the terminal proves who it is."""

    target: str  # host:port
    pki: PkiDir | None  # None only with insecure_dev
    store_operator: str
    terminal_id: str
    insecure_dev: bool = False
    tls_server_name: str = ""


def open_channel(endpoint: CentreEndpoint) -> grpc.Channel:
    """A channel to the centre: mTLS with the terminal's client certificate."""
    options = [("grpc.max_receive_message_length", 64 * 1024 * 1024)]
    if endpoint.tls_server_name:
        options.append(("grpc.ssl_target_name_override", endpoint.tls_server_name))
    if endpoint.insecure_dev:
        return grpc.insecure_channel(endpoint.target, options=options)
    if endpoint.pki is None:
        raise ValueError("a PKI directory is required unless insecure_dev is set")
    cert, key = endpoint.pki.terminal_client(endpoint.store_operator, endpoint.terminal_id).read()
    ca = endpoint.pki.network_ca_cert.read_bytes()
    return grpc.secure_channel(endpoint.target, channel_credentials(ca, cert, key), options)


class GrpcCentre:
    """:class:`Centre` over a gRPC channel, retrying transient failures with the same request."""

    def __init__(
        self,
        channel: grpc.Channel,
        *,
        policy: RetryPolicy | None = None,
        dev_identity: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._stub = kiosk_pb2_grpc.KioskServiceStub(channel)
        self._channel = channel
        self._policy = policy or RetryPolicy()
        self._metadata = ((DEV_IDENTITY_METADATA, dev_identity),) if dev_identity else ()
        self._sleep = sleep

    @classmethod
    def connect(cls, endpoint: CentreEndpoint, *, policy: RetryPolicy | None = None
                ) -> GrpcCentre:
        """Open a channel to ``endpoint``."""
        dev = (terminal_uri(endpoint.store_operator, endpoint.terminal_id)
               if endpoint.insecure_dev else None)
        return cls(open_channel(endpoint), policy=policy, dev_identity=dev)

    def close(self) -> None:
        """Close the channel."""
        self._channel.close()

    def _call(self, name: str, method: Callable[..., Response], request: object) -> Response:
        backoff = self._policy.first_backoff_s
        last_code = "UNKNOWN"
        for attempt in range(self._policy.attempts):
            try:
                return method(request, timeout=self._policy.deadline_s,
                              metadata=self._metadata)
            except grpc.RpcError as exc:
                parsed = parse_rpc_error(exc)
                typed = reasons().get(parsed.reason or "")
                # A typed refusal (MUNICIPALITY_UNAVAILABLE too) is an answer, not a lost call.
                if parsed.code not in RETRYABLE or (typed is not None and typed.refusal):
                    raise KonbiniError(parsed.reason or "INTERNAL", parsed.message,
                                       metadata=parsed.metadata) from None
                last_code = parsed.code.name
            if attempt + 1 < self._policy.attempts:
                self._sleep(backoff)
                backoff = min(backoff * 2, self._policy.max_backoff_s)
        raise CentreUnreachable(name, last_code)

    def create_session(self, req: kiosk_pb2.CreateSessionRequest
                       ) -> kiosk_pb2.CreateSessionResponse:
        """KioskService.CreateSession."""
        return self._call("CreateSession", self._stub.CreateSession, req)

    def authenticate(self, req: kiosk_pb2.AuthenticateRequest
                     ) -> kiosk_pb2.AuthenticateResponse:
        """KioskService.Authenticate."""
        return self._call("Authenticate", self._stub.Authenticate, req)

    def get_catalogue(self, req: kiosk_pb2.GetCatalogueRequest
                      ) -> kiosk_pb2.GetCatalogueResponse:
        """KioskService.GetCatalogue."""
        return self._call("GetCatalogue", self._stub.GetCatalogue, req)

    def request_issuance(self, req: kiosk_pb2.RequestIssuanceRequest
                         ) -> kiosk_pb2.RequestIssuanceResponse:
        """KioskService.RequestIssuance."""
        return self._call("RequestIssuance", self._stub.RequestIssuance, req)

    def complete_issuance(self, req: kiosk_pb2.CompleteIssuanceRequest
                          ) -> kiosk_pb2.CompleteIssuanceResponse:
        """KioskService.CompleteIssuance."""
        return self._call("CompleteIssuance", self._stub.CompleteIssuance, req)

    def get_issuance(self, req: kiosk_pb2.GetIssuanceRequest) -> kiosk_pb2.GetIssuanceResponse:
        """KioskService.GetIssuance."""
        return self._call("GetIssuance", self._stub.GetIssuance, req)

    def end_session(self, req: kiosk_pb2.EndSessionRequest) -> kiosk_pb2.EndSessionResponse:
        """KioskService.EndSession."""
        return self._call("EndSession", self._stub.EndSession, req)

    def register_family_register_use(self, req: kiosk_pb2.RegisterFamilyRegisterUseRequest
                                     ) -> kiosk_pb2.RegisterFamilyRegisterUseResponse:
        """KioskService.RegisterFamilyRegisterUse."""
        return self._call("RegisterFamilyRegisterUse", self._stub.RegisterFamilyRegisterUse,
                          req)

    def get_use_registration(self, req: kiosk_pb2.GetUseRegistrationRequest
                             ) -> kiosk_pb2.GetUseRegistrationResponse:
        """KioskService.GetUseRegistration."""
        return self._call("GetUseRegistration", self._stub.GetUseRegistration, req)
