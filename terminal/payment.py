"""The payment device: a simulated cash / e-money acceptor with an escrow, change and refunds.

Money put in waits in the escrow (the coins are still the resident's). ``take`` moves the fee to
the cash box and hands back the rest as change; ``refund`` pays a taken fee back; ``release``
returns the escrow untouched. The durable record of what was taken and refunded is the terminal
journal (:mod:`terminal.journal`), written in the same step, so a restart knows what is owed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


class PaymentError(Exception):
    """The device refused an operation (not enough money in the escrow, negative amounts)."""


@dataclass(frozen=True)
class Taken:
    """The result of taking a fee: what was kept and what was handed back as change."""

    kept: int
    change: int


class PaymentDevice(Protocol):
    """What the flow needs from a cash or e-money device."""

    def insert(self, yen: int) -> int:
        """Put money into the escrow; return the escrow total."""
        ...

    def escrow(self) -> int:
        """Money in the escrow now."""
        ...

    def take(self, fee: int) -> Taken:
        """Keep ``fee`` from the escrow and return the rest as change."""
        ...

    def release(self) -> int:
        """Give the whole escrow back (cancel before payment); return the amount."""
        ...

    def refund(self, yen: int) -> None:
        """Pay back money that was taken."""
        ...


@dataclass
class SimulatedCashDevice:
    """A cash device in memory: counts what went in, what it kept and what it gave back."""

    _escrow: int = 0
    kept_total: int = 0
    returned_total: int = 0
    refunded_total: int = 0
    events: list[tuple[str, int]] = field(default_factory=list)

    def insert(self, yen: int) -> int:
        """Accept coins or notes (or an e-money tap) into the escrow."""
        if yen <= 0:
            raise PaymentError("an amount put in must be positive")
        self._escrow += yen
        self.events.append(("insert", yen))
        return self._escrow

    def escrow(self) -> int:
        """Money in the escrow."""
        return self._escrow

    def take(self, fee: int) -> Taken:
        """Keep the fee, give change."""
        if fee < 0:
            raise PaymentError("a fee is never negative")
        if self._escrow < fee:
            raise PaymentError(f"{self._escrow} yen in the escrow, {fee} needed")
        change = self._escrow - fee
        self._escrow = 0
        self.kept_total += fee
        self.returned_total += change
        self.events.append(("take", fee))
        if change:
            self.events.append(("change", change))
        return Taken(kept=fee, change=change)

    def release(self) -> int:
        """Return the escrow."""
        amount, self._escrow = self._escrow, 0
        self.returned_total += amount
        if amount:
            self.events.append(("release", amount))
        return amount

    def refund(self, yen: int) -> None:
        """Pay back a taken fee."""
        if yen < 0:
            raise PaymentError("a refund is never negative")
        # After a restart the fee may have been kept by an earlier run: the box has a float.
        self.kept_total -= yen
        self.refunded_total += yen
        self.returned_total += yen
        self.events.append(("refund", yen))
