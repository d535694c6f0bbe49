"""Person.ref values: opaque per card, so a catalogue never leaks resident or member ids.

A ref is HMAC-SHA256(server secret, card serial, kind of person, id) truncated to 128 bits and
base32-encoded. It resolves back only by recomputing it over the people the card holder may
choose (household or register members of this tenant), so a ref from another card, another
tenant or another server resolves to nobody.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable
from typing import TypeVar

T = TypeVar("T")

RESIDENT = "R"
MEMBER = "M"


class PersonRefs:
    """Refs for one card under one server secret."""

    def __init__(self, secret: bytes, certificate_serial: str) -> None:
        if len(secret) < 16:
            raise ValueError("the person-ref secret must be at least 16 bytes")
        self._secret = secret
        self._serial = certificate_serial

    def ref(self, person_kind: str, person_id: str) -> str:
        message = "\x1f".join((self._serial, person_kind, person_id)).encode()
        digest = hmac.new(self._secret, message, hashlib.sha256).digest()[:16]
        return base64.b32encode(digest).decode().rstrip("=").lower()

    def resident(self, resident_id: str) -> str:
        return self.ref(RESIDENT, resident_id)

    def member(self, register_id: str, member_id: str) -> str:
        return self.ref(MEMBER, f"{register_id}\x1e{member_id}")

    @staticmethod
    def resolve(ref: str, candidates: Iterable[tuple[str, T]]) -> T | None:
        """The candidate whose ref (first of each pair) equals ``ref``, else None."""
        for candidate_ref, value in candidates:
            if hmac.compare_digest(candidate_ref, ref):
                return value
        return None
