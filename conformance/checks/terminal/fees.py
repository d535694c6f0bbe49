"""Money: the fee is the catalogue's per copy times the copies, taken before anything is
printed, and given back when printing fails or the resident cancels."""

from __future__ import annotations

import random

from conformance.checks.terminal.context import (
    INCOME_TAX,
    RESIDENCE,
    SEAL,
    S,
    TerminalContext,
    describe,
)
from conformance.failures import CheckFailed, TargetMisbehaved
from conformance.registry import check
from konbini.common.v1 import types_pb2


def _entry(ctx: TerminalContext, kind: int) -> types_pb2.CatalogueEntry:
    return next(e for e in ctx.centre.catalogue if e.kind == kind)


@check("MUST.terminal.fees.catalogue", covers=("FEE-CATALOGUE", "TERM-COMPLETE"))
def catalogue_fee(ctx: TerminalContext) -> None:
    """For kinds and copy counts drawn from the catalogue the fee asked is the catalogue fee
    times the copies; a delivery whose fee disagrees with the catalogue is not charged (and is
    reported FAILED)."""
    rng = random.Random(ctx.seed)  # noqa: S311 - reproducible from the run seed
    ctx.login()
    kinds = (RESIDENCE, SEAL, INCOME_TAX)
    picks = [(kind, rng.randint(1, _entry(ctx, kind).max_copies)) for kind in kinds]
    for kind, copies in picks:
        entry = _entry(ctx, kind)
        screen, issuance = ctx.to_payment(kind, copies)
        sent = f"Choose({types_pb2.CertificateKind.Name(kind)}, copies={copies})"
        if screen.fee.yen != entry.fee.yen * copies:
            raise CheckFailed("FEE-CATALOGUE", sent, describe(screen),
                              f"the catalogue says {entry.fee.yen} yen per copy")
        after = ctx.cancel()
        if after.id != S.SCREEN_ID_MENU:
            raise TargetMisbehaved(f"Cancel at payment gave {describe(after)}, not the menu")
        ctx.expect_completed(issuance, "FAILED", "TERM-COMPLETE", f"{sent} → Cancel",
                             causes=("USER_CANCELLED",))

    # The centre now asks for more than the catalogue: the terminal must not take it.
    entry = _entry(ctx, RESIDENCE)
    with ctx.centre.lock:
        ctx.centre.faults.fee_delta = entry.fee.yen
    before = {i.issuance_id for i in ctx.centre.issuance_list()}
    screen = ctx.choose(RESIDENCE, 1)
    steps = [f"Choose(RESIDENCE_RECORD) with a delivered fee of {2 * entry.fee.yen} yen → "
             f"{describe(screen)}"]
    if screen.id == S.SCREEN_ID_PAYMENT:
        if screen.fee.yen != entry.fee.yen:
            raise CheckFailed("FEE-CATALOGUE", ctx.sent(steps), describe(screen),
                              f"the terminal asked a fee other than the catalogue's "
                              f"{entry.fee.yen} yen")
        done = ctx.pay(screen.fee.yen)
        steps.append(f"Pay({screen.fee.yen}) → {describe(done)}")
        jobs, _refunded = ctx.printed()
        charged = sum(j.charged.yen for j in jobs)
        if charged not in (0, entry.fee.yen):
            raise CheckFailed("FEE-CATALOGUE", ctx.sent(steps), f"charged {charged} yen",
                              f"the catalogue fee is {entry.fee.yen} yen")
        return
    delivered = [i for i in ctx.centre.issuance_list() if i.issuance_id not in before]
    for issuance in delivered:
        ctx.expect_completed(issuance, "FAILED", "TERM-COMPLETE", ctx.sent(steps))


@check("MUST.terminal.fees.paid_before_print", covers=("FEE-PAID-BEFORE-PRINT",))
def paid_before_print(ctx: TerminalContext) -> None:
    """Nothing is printed at the payment screen, nor after part of the fee; once the fee is
    paid the job comes out with the fee charged."""
    ctx.login()
    screen, issuance = ctx.to_payment(RESIDENCE, 1)
    fee = screen.fee.yen
    steps = [f"Choose → {describe(screen)}"]
    jobs, _ = ctx.printed()
    if jobs:
        raise CheckFailed("FEE-PAID-BEFORE-PRINT", ctx.sent([*steps, "ListPrinted"]),
                          f"{len(jobs)} job(s) printed", "printed before any money was paid")
    part = fee // 2
    screen = ctx.pay(part)
    steps.append(f"Pay({part}) → {describe(screen)}")
    jobs, _ = ctx.printed()
    if jobs or screen.id != S.SCREEN_ID_PAYMENT:
        raise CheckFailed("FEE-PAID-BEFORE-PRINT", ctx.sent([*steps, "ListPrinted"]),
                          f"{describe(screen)}; {len(jobs)} job(s) printed",
                          "printed (or left the payment screen) with part of the fee paid")
    screen = ctx.pay(fee - part)
    steps.append(f"Pay({fee - part}) → {describe(screen)}")
    jobs, _ = ctx.printed()
    if screen.id != S.SCREEN_ID_DONE or len(jobs) != 1 or jobs[0].charged.yen != fee:
        raise CheckFailed("FEE-PAID-BEFORE-PRINT", ctx.sent([*steps, "ListPrinted"]),
                          f"{describe(screen)}; jobs charged "
                          f"{[j.charged.yen for j in jobs]}",
                          f"expected DONE and one job charged {fee} yen")
    ctx.expect_completed(issuance, "PRINTED", "TERM-COMPLETE", ctx.sent(steps))


@check("MUST.terminal.fees.refund_on_jam", covers=("FEE-REFUND-ON-FAILURE", "TERM-COMPLETE"))
def refund_on_jam(ctx: TerminalContext) -> None:
    """A printer jam: nothing is handed out as printed, the fee is refunded and every yen paid
    comes back, and the issuance is reported FAILED with cause PRINTER, never PRINTED."""
    ctx.login()
    screen, issuance = ctx.to_payment(RESIDENCE, 1)
    fee = screen.fee.yen
    ctx.jam_next()
    paid = fee + 300
    screen = ctx.pay(paid)
    steps = ["Choose", "SetPrinter(JAM)", f"Pay({paid}) → {describe(screen)}"]
    jobs, refunded = ctx.printed()
    if screen.id == S.SCREEN_ID_DONE or any(j.charged.yen for j in jobs):
        raise CheckFailed("FEE-REFUND-ON-FAILURE", ctx.sent(steps),
                          f"{describe(screen)}; charged {[j.charged.yen for j in jobs]}",
                          "a jammed print ended as done or charged")
    if refunded != fee or screen.returned.yen != paid:
        raise CheckFailed("FEE-REFUND-ON-FAILURE", ctx.sent([*steps, "ListPrinted"]),
                          f"{describe(screen)}; refunded {refunded} yen",
                          f"the fee of {fee} yen taken before printing must be refunded and "
                          f"all {paid} yen given back")
    ctx.expect_completed(issuance, "FAILED", "FEE-REFUND-ON-FAILURE", ctx.sent(steps),
                         causes=("PRINTER",))
    if issuance.charged:
        raise CheckFailed("FEE-REFUND-ON-FAILURE", ctx.sent(steps),
                          f"the centre charged {issuance.charged} yen", "a failed print charged")


@check("MUST.terminal.fees.cancel_at_payment", covers=("FEE-REFUND-ON-FAILURE", "TERM-COMPLETE"))
def cancel_at_payment(ctx: TerminalContext) -> None:
    """Cancel after paying part of the fee: the money comes back, nothing is printed, and the
    issuance is reported FAILED with cause USER_CANCELLED."""
    ctx.login()
    screen, issuance = ctx.to_payment(SEAL, 1)
    part = max(screen.fee.yen - 50, 10)
    ctx.pay(part)
    after = ctx.cancel()
    steps = ["Choose", f"Pay({part})", f"Cancel → {describe(after)}"]
    jobs, _ = ctx.printed()
    if jobs or after.returned.yen != part:
        raise CheckFailed("FEE-REFUND-ON-FAILURE", ctx.sent(steps),
                          f"{describe(after)}; {len(jobs)} job(s) printed",
                          f"the {part} yen paid must come back and nothing be printed")
    ctx.expect_completed(issuance, "FAILED", "TERM-COMPLETE", ctx.sent(steps),
                         causes=("USER_CANCELLED", "PAYMENT"))
