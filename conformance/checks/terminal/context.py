"""What the terminal-role checks work with: the suite plays the centre (its fake KioskService,
which the terminal under test is configured to call) and drives the kiosk through the
terminal's TerminalDriverService with the conformance certificate."""

from __future__ import annotations

import datetime as dt
import itertools
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from conformance.checks.terminal.cards import CardFactory, SuiteCard
from conformance.failures import CheckFailed, TargetMisbehaved
from conformance.fakes.centre import KOFU, CentreState, FakeIssuance
from conformance.fakes.centre_documents import read_mark
from conformance.target import ServiceProxy, Wire, attempt, short_text
from konbini.common.v1 import types_pb2
from konbini.contracts import reasons
from konbini.testing.v1 import testing_pb2

DRIVER = "konbini.testing.v1.TerminalDriverService"
S = testing_pb2
K = types_pb2
RESIDENCE = K.CERTIFICATE_KIND_RESIDENCE_RECORD
SEAL = K.CERTIFICATE_KIND_SEAL_REGISTRATION
INCOME_TAX = K.CERTIFICATE_KIND_INCOME_TAX


def screen_name(screen_id: int) -> str:
    return S.ScreenId.Name(screen_id).removeprefix("SCREEN_ID_")


def reason_name(screen: testing_pb2.Screen) -> str:
    """The reason shown, as a catalogue name ("" when none)."""
    by_number = {r.number: name for name, r in reasons().items()}
    return by_number.get(screen.reason, "")


def describe(screen: testing_pb2.Screen) -> str:
    """A short readable screen: id, reason, tries, money."""
    parts = [screen_name(screen.id)]
    if screen.reason:
        parts.append(f"reason={reason_name(screen) or screen.reason}")
    if screen.id == S.SCREEN_ID_ENTER_PIN or screen.pin_tries_left:
        parts.append(f"tries={screen.pin_tries_left}")
    for name in ("fee", "paid", "returned"):
        value = getattr(screen, name).yen
        if value:
            parts.append(f"{name}={value}")
    if screen.menu:
        parts.append(f"menu={len(screen.menu)} entries")
    return " ".join(parts)


@dataclass
class TerminalContext:
    """One run against a terminal (through its driver service)."""

    wire: Wire
    centre: CentreState
    cards: CardFactory
    centre_address: str  # where the fake centre listens (the terminal must be set to it)
    seed: int
    examples: int
    fiscal_year: int
    expiry_ttl: dt.timedelta = dt.timedelta(seconds=1)  # the short-lived reservation
    quiet_wait: float = 0.3  # seconds to watch for anything the terminal does by itself
    complete_wait: float = 5.0  # seconds a completion may take to reach the centre
    role: str = "terminal"
    on_close: Callable[[], None] | None = None
    cache: dict[str, Any] = field(default_factory=dict)
    _ids: itertools.count = field(default_factory=itertools.count)
    # Request ids differ between runs: a terminal remembers the ids it answered.
    _run: str = field(default_factory=lambda: secrets.token_hex(3))
    _baseline_jobs: int = 0
    _baseline_refunded: int = 0

    @property
    def target(self) -> str:
        return self.wire.config.address

    # -- engine hooks ----------------------------------------------------------------------
    def before_check(self) -> None:
        """Card out, back to the start screen, a clean fake centre, the printed baseline."""
        self.wire.start_example()
        self.home()
        self.centre.reset()
        printed = self.driver.ListPrinted(S.ListPrintedRequest())
        self._baseline_jobs = len(printed.jobs)
        self._baseline_refunded = printed.refunded.yen

    def take_calls(self) -> tuple[Any, ...]:
        return self.wire.take_calls()

    def close(self) -> None:
        """Stop the fake centre (the CLI and tests call this once the run is over)."""
        if self.on_close is not None:
            self.on_close()
            self.on_close = None

    # -- the driver ------------------------------------------------------------------------
    @property
    def driver(self) -> ServiceProxy:
        return self.wire.service("caller", DRIVER)

    def rid(self, prefix: str = "t") -> str:
        return f"{prefix}-{self._run}-{next(self._ids)}"

    def home(self) -> None:
        """Remove the card and cancel whatever is going on."""
        attempt(lambda: self.driver.Cancel(S.CancelRequest(request_id=self.rid("home"),
                                                           remove_card=True)))
        screen = self.screen()
        if screen.id != S.SCREEN_ID_INSERT_CARD:
            raise TargetMisbehaved(
                f"after Cancel(remove_card) the terminal shows {describe(screen)}, not INSERT_CARD")

    def screen(self) -> testing_pb2.Screen:
        return self.driver.GetScreen(S.GetScreenRequest()).screen

    def insert(self, card: SuiteCard) -> testing_pb2.Screen:
        return self.driver.InsertCard(
            S.InsertCardRequest(request_id=self.rid("card"), card=card.spec)).screen

    def enter_pin(self, pin: str) -> testing_pb2.Screen:
        return self.driver.EnterPin(S.EnterPinRequest(request_id=self.rid("pin"), pin=pin)).screen

    def choose(self, kind: int = RESIDENCE, copies: int = 1) -> testing_pb2.Screen:
        return self.driver.Choose(S.ChooseRequest(
            request_id=self.rid("choose"), municipality_code=K.MunicipalityCode(value=KOFU),
            kind=kind, options=self.options(kind), copies=copies)).screen

    def options(self, kind: int) -> types_pb2.CertificateOptions:
        if kind == RESIDENCE:
            return K.CertificateOptions(residence_record=K.ResidenceRecordOptions(
                scope=K.HOUSEHOLD_SCOPE_SELF))
        if kind == INCOME_TAX:
            return K.CertificateOptions(income_tax=K.IncomeTaxOptions(
                fiscal_year=self.fiscal_year))
        return K.CertificateOptions()

    def pay(self, yen: int) -> testing_pb2.Screen:
        return self.driver.Pay(S.PayRequest(request_id=self.rid("pay"),
                                            amount=K.Money(yen=yen))).screen

    def jam_next(self) -> None:
        self.driver.SetPrinter(S.SetPrinterRequest(request_id=self.rid("printer"),
                                                   behaviour=S.PRINTER_BEHAVIOUR_JAM))

    def cancel(self, *, remove_card: bool = False) -> testing_pb2.Screen:
        return self.driver.Cancel(S.CancelRequest(request_id=self.rid("cancel"),
                                                  remove_card=remove_card)).screen

    # -- cards and sessions ----------------------------------------------------------------
    def new_card(self, *, tries: int = 3) -> SuiteCard:
        """A card bound at the fake centre to the municipality behind it."""
        card = self.cards.card(tries=tries)
        if card.serial is not None:
            with self.centre.lock:
                self.centre.bindings[card.serial] = KOFU
        return card

    def login(self, card: SuiteCard | None = None) -> testing_pb2.Screen:
        """Insert a (new) card and type its PIN: the menu, or TargetMisbehaved."""
        card = card or self.new_card()
        inserted = self.insert(card)
        if inserted.id != S.SCREEN_ID_ENTER_PIN:
            raise TargetMisbehaved(f"a valid card gave {describe(inserted)}, not ENTER_PIN")
        menu = self.enter_pin(card.pin)
        if menu.id != S.SCREEN_ID_MENU:
            raise TargetMisbehaved(f"the right PIN of a valid card gave {describe(menu)}"
                                   f"{self.centre_refusals()}")
        return menu

    def centre_refusals(self) -> str:
        refused = [f"{c.method}: {c.outcome}" for c in self.centre.received()
                   if c.outcome not in ("ok", "pending")]
        return f" (the fake centre refused: {'; '.join(refused)})" if refused else ""

    def to_payment(self, kind: int = RESIDENCE, copies: int = 1) -> tuple[
            testing_pb2.Screen, FakeIssuance]:
        """From the menu: choose; the PAYMENT screen and the issuance the fake delivered."""
        before = {i.issuance_id for i in self.centre.issuance_list()}
        screen = self.choose(kind, copies)
        new = [i for i in self.centre.issuance_list() if i.issuance_id not in before]
        if screen.id != S.SCREEN_ID_PAYMENT or len(new) != 1:
            raise TargetMisbehaved(
                f"choosing {K.CertificateKind.Name(kind)} x{copies} gave {describe(screen)} with "
                f"{len(new)} issuance(s) at the centre{self.centre_refusals()}")
        return screen, new[0]

    # -- what came out ---------------------------------------------------------------------
    def printed(self) -> tuple[list[testing_pb2.PrintedJob], int]:
        """(jobs printed since the check began, money refunded since then)."""
        response = self.driver.ListPrinted(S.ListPrintedRequest())
        return list(response.jobs)[self._baseline_jobs:], \
            response.refunded.yen - self._baseline_refunded

    def owner(self, pdf: bytes) -> FakeIssuance | None:
        """The issuance a printed document belongs to (by bytes, else by its QR mark)."""
        found = self.centre.by_pdf(pdf)
        if found is not None:
            return found
        mark = read_mark(pdf)
        return self.centre.by_mark(mark) if mark else None

    @staticmethod
    def mark_of(pdf: bytes, owner: FakeIssuance) -> str:
        """Which copy of ``owner`` a printed document is."""
        if pdf in owner.documents:
            return owner.marks[owner.documents.index(pdf)]
        return read_mark(pdf) or "?"

    def wait_for(self, condition: Callable[[], bool], seconds: float) -> bool:
        """Poll ``condition`` until it holds or ``seconds`` pass."""
        deadline = time.monotonic() + seconds
        while True:
            if condition():
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)

    def wait_completed(self, issuance: FakeIssuance) -> bool:
        """Wait until the fake has a final state for ``issuance`` (the terminal completed)."""
        return self.wait_for(lambda: issuance.state != "DELIVERED", self.complete_wait)

    # -- judging ---------------------------------------------------------------------------
    @staticmethod
    def sent(steps: Iterable[str]) -> str:
        return " → ".join(steps)

    def expect_completed(self, issuance: FakeIssuance, outcome: str, requirement: str,
                         sent: str, *, causes: tuple[str, ...] = ()) -> None:
        """The terminal reported ``issuance`` with ``outcome`` (and one of ``causes``)."""
        self.wait_completed(issuance)
        completions = list(issuance.completions)
        outcomes = {c.outcome for c in completions}
        detail = ", ".join(f"{c.outcome}/{c.cause}" for c in completions) or "none"
        if not completions:
            raise CheckFailed("TERM-COMPLETE", sent, f"completions: {detail}",
                              f"issuance {issuance.issuance_id} was never completed")
        if outcomes != {outcome}:
            raise CheckFailed(requirement, sent, f"completions: {detail}",
                              f"expected the issuance reported {outcome} only")
        if outcome == "FAILED" and any(c.cause == "UNSPECIFIED" for c in completions):
            raise CheckFailed("TERM-COMPLETE", sent, f"completions: {detail}",
                              "a FAILED completion without a failure cause")
        if causes and not any(c.cause in causes for c in completions):
            raise CheckFailed("TERM-COMPLETE", sent, f"completions: {detail}",
                              f"a FAILED completion without its cause ({'/'.join(causes)})")

    def calls_text(self, method: str) -> str:
        return "; ".join(short_text(c.request, 300) for c in self.centre.received(method))
