"""The PIN: format checked before the card, tries shown, never retried by the terminal, a
locked card stops, and the PIN never leaves the terminal.

The card's real state is read back by arithmetic on tries the suite chose: a card with one
try left is locked by a single wrong VERIFY, so if the right PIN still opens it afterwards,
nothing else was sent to it; the fake centre shows whether the card then signed.
"""

from __future__ import annotations

import time

from conformance.checks.terminal.context import (
    S,
    TerminalContext,
    describe,
    reason_name,
)
from conformance.failures import CheckFailed, TargetMisbehaved
from conformance.fakes.centre import ReceivedCall
from conformance.registry import check
from conformance.target import attempt

# Malformed PINs; the four-character ones would spend a try if they reached the card.
MALFORMED = ("12a4", "abcd", "12 4", "123", "12345", "１２３４")


def _authenticated(ctx: TerminalContext) -> int:
    return sum(1 for c in ctx.centre.received("Authenticate") if c.outcome == "ok")


@check("MUST.terminal.pin.format", covers=("PIN-FORMAT",))
def pin_format(ctx: TerminalContext) -> None:
    """Malformed PINs are refused as PIN_FORMAT_INVALID on the PIN screen and never reach the
    card: on a card with one try left, the right PIN still opens it afterwards."""
    card = ctx.new_card(tries=1)
    steps = [f"InsertCard(tries=1) → {describe(ctx.insert(card))}"]
    for pin in MALFORMED:
        screen = ctx.enter_pin(pin)
        steps.append(f"EnterPin({pin!r}) → {describe(screen)}")
        if screen.id != S.SCREEN_ID_ENTER_PIN or reason_name(screen) != "PIN_FORMAT_INVALID":
            raise CheckFailed("PIN-FORMAT", ctx.sent(steps), describe(screen),
                              f"the malformed PIN {pin!r} was not refused as PIN_FORMAT_INVALID "
                              "with the PIN screen still shown")
    screen = ctx.enter_pin(card.pin)
    steps.append(f"EnterPin(right PIN) → {describe(screen)}")
    if screen.id != S.SCREEN_ID_MENU or _authenticated(ctx) != 1:
        raise CheckFailed("PIN-FORMAT", ctx.sent(steps), describe(screen) +
                          ctx.centre_refusals(),
                          "the right PIN no longer opened a one-try card: a malformed PIN "
                          "reached the card")


@check("MUST.terminal.pin.tries_shown", covers=("PIN-TRIES-SHOWN", "PIN-NO-AUTO-RETRY"))
def tries_shown(ctx: TerminalContext) -> None:
    """Each wrong PIN shows PIN_WRONG and the tries left (3 → 2 → 1), on the screen answered
    and on GetScreen; the right PIN then opens the card (so the count shown was the card's)."""
    card = ctx.new_card(tries=3)
    steps = [f"InsertCard(tries=3) → {describe(ctx.insert(card))}"]
    for expected, offset in ((2, 1), (1, 2)):
        screen = ctx.enter_pin(card.wrong_pin(offset))
        steps.append(f"EnterPin(wrong) → {describe(screen)}")
        if (screen.id == S.SCREEN_ID_ENTER_PIN and screen.pin_tries_left == expected - 1) or \
                reason_name(screen) == "PIN_LOCKED":
            raise CheckFailed("PIN-NO-AUTO-RETRY", ctx.sent(steps), describe(screen),
                              "one wrong PIN cost the card two tries: the terminal sent a PIN "
                              "the resident did not type")
        if screen.id != S.SCREEN_ID_ENTER_PIN or reason_name(screen) != "PIN_WRONG" or \
                screen.pin_tries_left != expected:
            raise CheckFailed("PIN-TRIES-SHOWN", ctx.sent(steps), describe(screen),
                              f"expected the PIN screen with PIN_WRONG and {expected} tries left")
        shown = ctx.screen()
        if shown.pin_tries_left != expected:
            raise CheckFailed("PIN-TRIES-SHOWN", ctx.sent([*steps, "GetScreen"]),
                              describe(shown), f"GetScreen does not show {expected} tries left")
    screen = ctx.enter_pin(card.pin)
    steps.append(f"EnterPin(right PIN) → {describe(screen)}")
    if screen.id != S.SCREEN_ID_MENU:
        raise CheckFailed("PIN-TRIES-SHOWN", ctx.sent(steps), describe(screen),
                          "the card had fewer tries than the terminal showed")


@check("MUST.terminal.pin.no_auto_retry", covers=("PIN-NO-AUTO-RETRY",))
def no_auto_retry(ctx: TerminalContext) -> None:
    """One wrong PIN spends exactly one try: 3 → 2 (and on a two-try card 2 → 1, after which
    the right PIN still opens it); nothing is tried while the terminal waits."""
    for tries in (3, 2):
        ctx.home()
        opened_before = _authenticated(ctx)
        card = ctx.new_card(tries=tries)
        steps = [f"InsertCard(tries={tries}) → {describe(ctx.insert(card))}"]
        screen = ctx.enter_pin(card.wrong_pin())
        steps.append(f"EnterPin(wrong) → {describe(screen)}")
        if screen.id != S.SCREEN_ID_ENTER_PIN or screen.pin_tries_left != tries - 1:
            raise CheckFailed("PIN-NO-AUTO-RETRY", ctx.sent(steps), describe(screen),
                              f"after one wrong PIN the card should have {tries - 1} tries left "
                              "and the PIN screen should still show")
        time.sleep(ctx.quiet_wait)  # anything the terminal does by itself happens now
        shown = ctx.screen()
        steps.append(f"GetScreen → {describe(shown)}")
        if shown.id != S.SCREEN_ID_ENTER_PIN or shown.pin_tries_left != tries - 1:
            raise CheckFailed("PIN-NO-AUTO-RETRY", ctx.sent(steps), describe(shown),
                              "the card's tries changed while the resident typed nothing")
        screen = ctx.enter_pin(card.pin)
        steps.append(f"EnterPin(right PIN) → {describe(screen)}")
        if screen.id != S.SCREEN_ID_MENU or _authenticated(ctx) != opened_before + 1:
            raise CheckFailed("PIN-NO-AUTO-RETRY", ctx.sent(steps), describe(screen) +
                              ctx.centre_refusals(),
                              "the right PIN no longer opened the card: the terminal spent a "
                              "try the resident did not")


def _stays_locked(ctx: TerminalContext, card_pin: str, steps: list[str]) -> None:
    answer = attempt(lambda: ctx.enter_pin(card_pin))
    steps.append(f"EnterPin(right PIN) → {answer.describe()}")
    opened = answer.ok and answer.response is not None and \
        answer.response.id == S.SCREEN_ID_MENU  # type: ignore[attr-defined]
    if opened or ctx.centre.received("Authenticate"):
        raise CheckFailed("PIN-LOCKED", ctx.sent(steps), answer.describe(),
                          "a locked card was used afterwards")


@check("MUST.terminal.pin.locked", covers=("PIN-LOCKED",))
def locked(ctx: TerminalContext) -> None:
    """A card with no tries left is refused as PIN_LOCKED on insertion, and the last wrong PIN
    of a one-try card shows PIN_LOCKED; nothing is sent to the card or the centre after."""
    card = ctx.new_card(tries=0)
    screen = ctx.insert(card)
    steps = [f"InsertCard(tries=0) → {describe(screen)}"]
    if screen.id != S.SCREEN_ID_REFUSED or reason_name(screen) != "PIN_LOCKED":
        raise CheckFailed("PIN-LOCKED", ctx.sent(steps), describe(screen),
                          "a locked card was not refused as PIN_LOCKED")
    _stays_locked(ctx, card.pin, steps)

    ctx.home()
    card = ctx.new_card(tries=1)
    steps = [f"InsertCard(tries=1) → {describe(ctx.insert(card))}"]
    screen = ctx.enter_pin(card.wrong_pin())
    steps.append(f"EnterPin(wrong) → {describe(screen)}")
    if screen.id != S.SCREEN_ID_REFUSED or reason_name(screen) != "PIN_LOCKED":
        raise CheckFailed("PIN-LOCKED", ctx.sent(steps), describe(screen),
                          "the wrong PIN that locked the card was not reported as PIN_LOCKED")
    _stays_locked(ctx, card.pin, steps)


def _encodings(pin: str) -> list[bytes]:
    """The ways a PIN could travel: text and UTF-16."""
    return [pin.encode(), pin.encode("utf-16-le"), pin.encode("utf-16-be")]


def _scrubbed(ctx: TerminalContext, call: ReceivedCall) -> list[bytes]:
    """The call's request and metadata without the bytes the card and the centre made
    (signature, certificate, challenge), where four digits can occur by chance."""
    known = [getattr(call.request, name, b"") for name in ("signature", "auth_certificate_der")]
    known += [s.challenge for s in ctx.centre.sessions.values()]
    blob = call.request_bytes
    for value in known:
        if value:
            blob = blob.replace(value, b"")
    return [blob] + [value if isinstance(value, bytes) else f"{key}={value}".encode()
                     for key, value in call.metadata]


@check("MUST.terminal.pin.local", covers=("CARD-PIN-LOCAL",))
def pin_local(ctx: TerminalContext) -> None:
    """Through a whole issuance (a wrong PIN, then the right one) no request or metadata the
    centre receives contains either PIN, as text or UTF-16."""
    card = ctx.new_card(tries=3)
    wrong = card.wrong_pin(4321)
    ctx.insert(card)
    ctx.enter_pin(wrong)
    if ctx.enter_pin(card.pin).id != S.SCREEN_ID_MENU:
        raise TargetMisbehaved("the right PIN did not open a card with 2 tries left "
                               f"({describe(ctx.screen())})")
    screen, _issuance = ctx.to_payment()
    ctx.pay(screen.fee.yen)
    for call in ctx.centre.received():
        blobs = _scrubbed(ctx, call)
        for pin in (card.pin, wrong):
            for encoded in _encodings(pin):
                if any(encoded in blob for blob in blobs):
                    raise CheckFailed(
                        "CARD-PIN-LOCAL", f"KioskService.{call.method} received by the centre",
                        f"{len(call.request_bytes)} request bytes containing {encoded!r}",
                        "a PIN the resident typed reached the centre")
