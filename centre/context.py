"""What the centre's domain modules share: store, time, routing, card trust, audit, keys.

Servicers translate wire messages and call the domain modules with a :class:`Centre`; the
domain modules hold the rules and can be driven without gRPC.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from centre.cardtrust import CardTrust
from centre.routing import Router
from centre.timesource import TimeSource
from konbini.pki import ScrambleKeySet
from konbini.storage import AsyncStore, Tx

# On PostgreSQL (SERIALIZABLE, page-level predicate locks on indexes) concurrent sessions make
# false-positive conflicts on the hot tables; a conflicting transaction is simply rerun.
HOT_RETRIES = 40


class AuditSink(Protocol):
    """The audit log (centre.audit.AuditLog): ids, codes, kinds, states, reasons; no PII."""

    def append(self, tx: Tx, event: str, fields: dict[str, str]) -> object:
        """Append one entry in the caller's transaction."""
        ...


# add_back_sides(front_pdf, keys, at) -> front pages each followed by its back (centre.backside)
BackSides = Callable[[bytes, ScrambleKeySet, dt.datetime], bytes]


@dataclass(frozen=True)
class Timing:
    """The centre's time limits, in seconds."""

    challenge_ttl_s: float = 300.0
    session_ttl_s: float = 900.0
    reservation_margin_s: float = 60.0
    requested_timeout_s: float = 120.0

    @property
    def challenge_ttl(self) -> dt.timedelta:
        """How long a challenge (and an unauthenticated session) lives."""
        return dt.timedelta(seconds=self.challenge_ttl_s)

    @property
    def session_ttl(self) -> dt.timedelta:
        """How long an authenticated session lives."""
        return dt.timedelta(seconds=self.session_ttl_s)

    @property
    def reservation_margin(self) -> dt.timedelta:
        """Subtracted from the municipality's expiry in what the terminal is told."""
        return dt.timedelta(seconds=self.reservation_margin_s)

    @property
    def requested_timeout(self) -> dt.timedelta:
        """A request with no answer from the municipality after this is given up."""
        return dt.timedelta(seconds=self.requested_timeout_s)


@dataclass
class Centre:
    """The centre's collaborators, built once per worker process."""

    store: AsyncStore
    time: TimeSource
    router: Router
    cards: CardTrust
    audit: AuditSink
    scramble_keys: Callable[[], ScrambleKeySet]
    back_sides: BackSides
    timing: Timing
    random_bytes: Callable[[int], bytes]
    new_id: Callable[[], str]
