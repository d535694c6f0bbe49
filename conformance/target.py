"""Connections to the implementation under test, and a record of every call a check makes.

Checks call the target's services through :class:`Wire` proxies (``wire.service("caller",
"konbini.issuing.v1.IssuingService").PrepareIssuance(request)``). Every call is recorded as a
:class:`Call` (which identity, which method, the exact request bytes, what came back), so that a
failing check can be written out as a replay script.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import message_factory, text_format
from google.protobuf.message import Message

from konbini.contracts import methods
from konbini.errors import ParsedError, parse_rpc_error

DEFAULT_CALL_TIMEOUT = 30.0  # seconds; rendering a multi-copy document can take a while


@dataclass(frozen=True)
class Identity:
    """A TLS client identity: PEM certificate and key (both None: no client certificate)."""

    cert_pem: bytes | None
    key_pem: bytes | None
    cert_path: str = ""  # for replay scripts
    key_path: str = ""


@dataclass(frozen=True)
class TargetConfig:
    """Where the implementation under test listens and who the suite may be.

    ``identities`` maps a name to a client identity: "caller" is the role the suite plays
    (the centre against a municipality), "fixture" the conformance certificate for the
    test-mode services, "wrong_role" any other role's certificate (authorization checks) and
    "none" no client certificate.
    """

    address: str
    ca_pem: bytes
    identities: Mapping[str, Identity]
    tls_server_name: str = ""
    ca_path: str = ""
    call_timeout: float = DEFAULT_CALL_TIMEOUT


@dataclass
class Call:
    """One recorded call: who, which method, the exact request, and what came back."""

    identity: str
    path: str  # "/konbini.issuing.v1.IssuingService/PrepareIssuance"
    request: bytes
    request_text: str
    timeout: float | None
    outcome: str = "pending"  # "ok", an error "CODE REASON", "cancelled" or "pending"


@cache
def method_types(path: str) -> tuple[type[Message], type[Message]]:
    """(request class, response class) of a contract method path."""
    for m in methods():
        if m.path == path:
            return (
                message_factory.GetMessageClass(m.descriptor.input_type),
                message_factory.GetMessageClass(m.descriptor.output_type),
            )
    raise KeyError(f"no contract method {path}")


def _elide_bytes(message: Message) -> None:
    for fd, value in message.ListFields():
        if fd.type == fd.TYPE_BYTES:
            if fd.is_repeated:
                for i, item in enumerate(value):
                    if len(item) > 64:
                        value[i] = f"<{len(item)} bytes>".encode()
            elif len(value) > 64:
                setattr(message, fd.name, f"<{len(value)} bytes>".encode())
        elif fd.type == fd.TYPE_MESSAGE:
            if fd.message_type.GetOptions().map_entry:
                continue
            for item in value if fd.is_repeated else [value]:
                _elide_bytes(item)


def short_text(message: Message, limit: int = 3000) -> str:
    """A readable rendering of a message: bytes over 64 long become "<N bytes>"."""
    copy = type(message)()
    copy.CopyFrom(message)
    _elide_bytes(copy)
    text = text_format.MessageToString(copy, as_utf8=True, as_one_line=True)
    return text if len(text) <= limit else text[:limit] + f" …({len(text)} chars)"


def describe_error(error: grpc.RpcError) -> str:
    parsed = parse_rpc_error(error)
    return f"{parsed.code.name} {parsed.reason or '-'}: {parsed.message}"


class Wire:
    """Channels to the target, one per identity, and the calls made through them."""

    def __init__(self, config: TargetConfig) -> None:
        self.config = config
        self._channels: dict[str, grpc.Channel] = {}
        self._lock = threading.Lock()
        self.calls: list[Call] = []

    # -- channels ------------------------------------------------------------------------
    def channel(self, identity: str) -> grpc.Channel:
        with self._lock:
            if identity not in self._channels:
                self._channels[identity] = self._open(identity)
            return self._channels[identity]

    def has_identity(self, identity: str) -> bool:
        return identity in self.config.identities

    def _open(self, identity: str) -> grpc.Channel:
        ident = self.config.identities.get(identity)
        if ident is None:
            raise KeyError(f"no client identity {identity!r} configured")
        creds = grpc.ssl_channel_credentials(
            root_certificates=self.config.ca_pem,
            private_key=ident.key_pem,
            certificate_chain=ident.cert_pem,
        )
        options: list[tuple[str, Any]] = [
            ("grpc.max_receive_message_length", 64 * 1024 * 1024),
            ("grpc.max_send_message_length", 64 * 1024 * 1024),
        ]
        if self.config.tls_server_name:
            options.append(("grpc.ssl_target_name_override", self.config.tls_server_name))
        return grpc.secure_channel(self.config.address, creds, options=options)

    def close(self) -> None:
        with self._lock:
            for channel in self._channels.values():
                channel.close()
            self._channels.clear()

    # -- calls ---------------------------------------------------------------------------
    def start_example(self) -> None:
        """Forget the calls recorded so far (a property starts a new example; the replay of a
        shrunk failure needs only the calls of the last example)."""
        with self._lock:
            self.calls = []

    def take_calls(self) -> tuple[Call, ...]:
        with self._lock:
            calls, self.calls = tuple(self.calls), []
            return calls

    def _record(self, identity: str, path: str, request: Message, timeout: float | None) -> Call:
        call = Call(identity, path, request.SerializeToString(), short_text(request), timeout)
        with self._lock:
            self.calls.append(call)
        return call

    def _callable(self, identity: str, path: str) -> grpc.UnaryUnaryMultiCallable:
        _req, resp = method_types(path)
        return self.channel(identity).unary_unary(
            path,
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=resp.FromString,
        )

    def call(
        self, identity: str, path: str, request: Message, *, timeout: float | None = None
    ) -> Message:
        """A unary call; raises grpc.RpcError for an error status (recorded either way)."""
        timeout = self.config.call_timeout if timeout is None else timeout
        record = self._record(identity, path, request, timeout)
        try:
            response = self._callable(identity, path)(request, timeout=timeout)
        except grpc.RpcError as error:
            record.outcome = describe_error(error)
            raise
        record.outcome = "ok"
        return response

    def call_future(
        self, identity: str, path: str, request: Message, *, timeout: float | None = None
    ) -> grpc.Future:
        """A unary call started in the background (for concurrency and client cancellation)."""
        timeout = self.config.call_timeout if timeout is None else timeout
        record = self._record(identity, path, request, timeout)
        future = self._callable(identity, path).future(request, timeout=timeout)

        def done(f: grpc.Future) -> None:
            if f.cancelled():
                record.outcome = "cancelled"
            elif f.exception() is not None:
                exc = f.exception()
                record.outcome = describe_error(exc) if isinstance(exc, grpc.RpcError) else "?"
            else:
                record.outcome = "ok"

        future.add_done_callback(done)
        return future

    def service(self, identity: str, service: str) -> ServiceProxy:
        return ServiceProxy(self, identity, service)


@dataclass(frozen=True)
class ServiceProxy:
    """Stub-like access to one service as one identity: ``proxy.PrepareIssuance(request)``."""

    wire: Wire
    identity: str
    service: str

    def __getattr__(self, method: str) -> Callable[..., Message]:
        path = f"/{self.service}/{method}"
        method_types(path)  # fail loudly on a misspelt method

        def invoke(request: Message, *, timeout: float | None = None) -> Message:
            return self.wire.call(self.identity, path, request, timeout=timeout)

        return invoke

    def future(self, method: str, request: Message, *, timeout: float | None = None) -> Any:
        return self.wire.call_future(
            self.identity, f"/{self.service}/{method}", request, timeout=timeout
        )


@dataclass(frozen=True)
class Answer:
    """A call's result as a check judges it: a response or a parsed error."""

    response: Message | None = None
    error: ParsedError | None = None
    raw_error: grpc.RpcError | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return self.error is None

    def describe(self) -> str:
        if self.error is not None:
            e = self.error
            return f"error {e.code.name} reason={e.reason} domain={e.domain} message={e.message!r}"
        return "no answer" if self.response is None else short_text(self.response)


def attempt(invoke: Callable[[], Message]) -> Answer:
    """Run one call and return what came back, an error status included."""
    try:
        return Answer(response=invoke())
    except grpc.RpcError as error:
        return Answer(error=parse_rpc_error(error), raw_error=error)


def identity_from_files(cert: Path | str, key: Path | str) -> Identity:
    cert, key = Path(cert), Path(key)
    return Identity(cert.read_bytes(), key.read_bytes(), str(cert.resolve()), str(key.resolve()))
