"""Who a peer is: identity URIs in certificates and the roles they carry.

Identities live in subjectAltName URIs, never in request fields:

- ``urn:konbini:terminal:<store_operator>:<terminal_id>``
- ``urn:konbini:centre:<centre_id>``
- ``urn:konbini:municipality:<6-digit code>`` (a multi-tenant server may carry several)
- ``urn:konbini:conformance:<name>``
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography import x509

from konbini.municode import validate_municipality_code
from konbini.pki.x509util import identity_uris

URI_PREFIX = "urn:konbini:"
# Operator, terminal, centre and suite names: short ASCII tokens, no ':' (the URI separator).
_TOKEN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")


class Role(enum.Enum):
    """The kind of party a certificate speaks for."""

    TERMINAL = "terminal"
    CENTRE = "centre"
    MUNICIPALITY = "municipality"
    CONFORMANCE = "conformance"


class InvalidIdentity(ValueError):
    """A certificate or URI does not carry exactly one well-formed konbini identity."""


@dataclass(frozen=True)
class PeerIdentity:
    """A verified peer. ``id`` is the terminal id, centre id, first municipality code or suite
    name; ``store_operator`` is set for terminals only; ``municipality_codes`` lists every
    tenant of a municipality certificate (one for a client certificate)."""

    role: Role
    id: str
    store_operator: str | None = None
    municipality_codes: tuple[str, ...] = ()

    @property
    def uri(self) -> str:
        """The (first) identity URI of this peer."""
        if self.role is Role.TERMINAL:
            return terminal_uri(self.store_operator or "", self.id)
        return f"{URI_PREFIX}{self.role.value}:{self.id}"


def _token(value: str, what: str) -> str:
    if not _TOKEN.match(value):
        raise InvalidIdentity(f"{what} {value!r} must match {_TOKEN.pattern}")
    return value


def _code(value: str) -> str:
    if not validate_municipality_code(value):
        raise InvalidIdentity(f"{value!r} is not a municipality code with a valid check digit")
    return value


def terminal_uri(store_operator: str, terminal_id: str) -> str:
    """``urn:konbini:terminal:<store_operator>:<terminal_id>``."""
    return (
        f"{URI_PREFIX}terminal:{_token(store_operator, 'store operator')}:"
        f"{_token(terminal_id, 'terminal id')}"
    )


def centre_uri(centre_id: str) -> str:
    """``urn:konbini:centre:<centre_id>``."""
    return f"{URI_PREFIX}centre:{_token(centre_id, 'centre id')}"


def municipality_uri(code: str) -> str:
    """``urn:konbini:municipality:<code>`` (the check digit is validated)."""
    return f"{URI_PREFIX}municipality:{_code(code)}"


def conformance_uri(name: str) -> str:
    """``urn:konbini:conformance:<name>``."""
    return f"{URI_PREFIX}conformance:{_token(name, 'conformance name')}"


def _parse_one(uri: str) -> PeerIdentity:
    if not uri.startswith(URI_PREFIX):
        raise InvalidIdentity(f"not a konbini identity URI: {uri!r}")
    parts = uri[len(URI_PREFIX):].split(":")
    try:
        role = Role(parts[0])
    except ValueError:
        raise InvalidIdentity(f"unknown role in {uri!r}") from None
    if role is Role.TERMINAL:
        if len(parts) != 3:
            raise InvalidIdentity(f"a terminal URI has operator and id: {uri!r}")
        return PeerIdentity(role, _token(parts[2], "terminal id"),
                            store_operator=_token(parts[1], "store operator"))
    if len(parts) != 2:
        raise InvalidIdentity(f"malformed identity URI {uri!r}")
    if role is Role.MUNICIPALITY:
        code = _code(parts[1])
        return PeerIdentity(role, code, municipality_codes=(code,))
    return PeerIdentity(role, _token(parts[1], f"{role.value} id"))


def parse_identity_uris(uris: Iterable[str]) -> PeerIdentity:
    """The one identity carried by ``uris`` (non-konbini URIs are ignored).

    Several municipality URIs merge into one identity with every code; any other mix of roles,
    or several identities of another role, is refused: a certificate speaks for one party.
    """
    parsed = [_parse_one(u) for u in uris if u.startswith(URI_PREFIX)]
    if not parsed:
        raise InvalidIdentity("no konbini identity URI in the certificate")
    roles = {p.role for p in parsed}
    if len(roles) != 1:
        raise InvalidIdentity("a certificate must carry identities of one role only")
    first = parsed[0]
    if first.role is Role.MUNICIPALITY:
        codes = tuple(dict.fromkeys(c for p in parsed for c in p.municipality_codes))
        return PeerIdentity(Role.MUNICIPALITY, codes[0], municipality_codes=codes)
    if len(set(parsed)) != 1:
        raise InvalidIdentity(f"a {first.role.value} certificate must carry one identity")
    return first


def identity_of(cert: x509.Certificate) -> PeerIdentity:
    """The identity carried by a certificate's SAN URIs."""
    return parse_identity_uris(identity_uris(cert))


def parse_identity_uri(uri: str) -> PeerIdentity:
    """The identity named by one URI (used by the development metadata identity)."""
    return parse_identity_uris([uri])
