"""Whole visits: an issuance printed and completed, documents of one resident never printed
for the next, a PIN-less card refused, and a reservation that expires never printed."""

from __future__ import annotations

import time

from conformance.checks.terminal.context import (
    RESIDENCE,
    SEAL,
    S,
    TerminalContext,
    describe,
    reason_name,
)
from conformance.failures import CheckFailed, TargetMisbehaved
from conformance.fakes.centre import FakeIssuance
from conformance.registry import check
from konbini.testing.v1 import testing_pb2


def _judge_printed(ctx: TerminalContext, jobs: list[testing_pb2.PrintedJob],
                   issuance: FakeIssuance, earlier: list[FakeIssuance], sent: str) -> None:
    """Every printed document is one of ``issuance``'s, and every copy of it came out."""
    documents = [d.pdf for job in jobs for d in job.documents]
    marks: list[str] = []
    for pdf in documents:
        owner = ctx.owner(pdf)
        if owner is not None and owner.issuance_id != issuance.issuance_id and owner in earlier:
            raise CheckFailed("TERM-NO-PREVIOUS-USER", sent,
                              f"a document of issuance {owner.issuance_id}",
                              "a previous resident's document was printed for the next one")
        if owner is None or owner.issuance_id != issuance.issuance_id:
            raise CheckFailed("XTALK-SUBJECT", sent,
                              f"a document of {owner.issuance_id if owner else 'nobody known'}",
                              f"printed a document not delivered for issuance "
                              f"{issuance.issuance_id} of this session")
        marks.append(ctx.mark_of(pdf, owner))
    if sorted(marks) != sorted(issuance.marks):
        raise CheckFailed("XTALK-SUBJECT", sent, f"printed copies {sorted(marks)}",
                          f"expected exactly the copies {sorted(issuance.marks)}")


@check("MUST.terminal.flow.issue", covers=("XTALK-SUBJECT", "FEE-CATALOGUE", "TERM-COMPLETE"))
def issue(ctx: TerminalContext) -> None:
    """Two copies of a certificate: the fee asked is the catalogue's times two, change comes
    back, exactly the two delivered documents are printed in one job charged the fee, and the
    issuance is reported PRINTED."""
    menu = ctx.login()
    if not menu.menu:
        raise CheckFailed("FEE-CATALOGUE", "InsertCard → EnterPin", describe(menu),
                          "the menu shows no catalogue")
    screen, issuance = ctx.to_payment(SEAL, 2)
    done = ctx.pay(screen.fee.yen + 1000)
    steps = [f"Choose(SEAL_REGISTRATION x2) → {describe(screen)}",
             f"Pay({screen.fee.yen + 1000}) → {describe(done)}"]
    if done.id != S.SCREEN_ID_DONE or done.returned.yen != 1000:
        raise CheckFailed("FEE-CATALOGUE", ctx.sent(steps), describe(done),
                          "expected DONE with 1000 yen change")
    jobs, _ = ctx.printed()
    charged = sum(j.charged.yen for j in jobs)
    if charged != issuance.catalogue_fee:
        raise CheckFailed("FEE-CATALOGUE", ctx.sent([*steps, "ListPrinted"]),
                          f"charged {charged} yen", f"the catalogue fee is "
                          f"{issuance.catalogue_fee} yen for two copies")
    _judge_printed(ctx, jobs, issuance, [], ctx.sent([*steps, "ListPrinted"]))
    ctx.expect_completed(issuance, "PRINTED", "TERM-COMPLETE", ctx.sent(steps))


@check("MUST.terminal.sessions.previous_user",
       covers=("TERM-NO-PREVIOUS-USER", "XTALK-SUBJECT", "TERM-COMPLETE"))
def previous_user(ctx: TerminalContext) -> None:
    """A resident leaves at the payment screen, another's print jams; the next residents get
    exactly their own documents, and the start screen shows nothing of the one before."""
    earlier: list[FakeIssuance] = []
    for leave in ("cancel", "jam"):
        ctx.login()
        screen, left = ctx.to_payment(RESIDENCE, 1)
        earlier.append(left)
        if leave == "jam":
            ctx.jam_next()
            ctx.pay(screen.fee.yen)
        after = ctx.cancel(remove_card=True)
        steps = [f"resident A: Choose, {leave}, Cancel(remove_card) → {describe(after)}"]
        if after.id != S.SCREEN_ID_INSERT_CARD or after.menu or after.fee.yen:
            raise CheckFailed("TERM-NO-PREVIOUS-USER", ctx.sent(steps), describe(after),
                              "the start screen still shows the previous resident's session")
        ctx.expect_completed(left, "FAILED", "TERM-COMPLETE", ctx.sent(steps))

        ctx.login()
        copies = 2 if leave == "jam" else 1
        screen, mine = ctx.to_payment(RESIDENCE, copies)
        already = len(ctx.printed()[0])
        done = ctx.pay(screen.fee.yen)
        steps.append(f"resident B: Choose x{copies}, Pay → {describe(done)}")
        if done.id != S.SCREEN_ID_DONE:
            raise TargetMisbehaved(f"a paid issuance ended {describe(done)}")
        _judge_printed(ctx, ctx.printed()[0][already:], mine, earlier,
                       ctx.sent([*steps, "ListPrinted"]))
        ctx.home()
    for job in ctx.printed()[0]:
        for document in job.documents:
            owner = ctx.owner(document.pdf)
            if owner in earlier:
                raise CheckFailed("TERM-NO-PREVIOUS-USER", "two visits, each after a resident "
                                  "who left", f"a document of {owner.issuance_id}",
                                  "a document of a resident who left was printed")


@check("MUST.terminal.sessions.pin_less_card", covers=("ELIG-PIN-LESS",))
def pin_less_card(ctx: TerminalContext) -> None:
    """A face-only card without a PIN is refused with CARD_WITHOUT_PIN, before any centre
    authentication."""
    screen = ctx.insert(ctx.cards.pin_less_card())
    if screen.id != S.SCREEN_ID_REFUSED or reason_name(screen) != "CARD_WITHOUT_PIN":
        raise CheckFailed("ELIG-PIN-LESS", "InsertCard(PIN-less card)", describe(screen),
                          "expected REFUSED with CARD_WITHOUT_PIN")
    if ctx.centre.received("Authenticate"):
        raise CheckFailed("ELIG-PIN-LESS", "InsertCard(PIN-less card)",
                          ctx.calls_text("Authenticate"), "a PIN-less card was authenticated")


@check("MUST.terminal.sessions.expired_reservation",
       covers=("ISSUE-EXPIRY", "TERM-COMPLETE", "FEE-REFUND-ON-FAILURE"))
def expired_reservation(ctx: TerminalContext) -> None:
    """The fake delivers a reservation that expires in one second; paid after it expired, the
    terminal prints nothing, gives every yen back and reports the issuance FAILED."""
    ctx.login()
    with ctx.centre.lock:
        ctx.centre.faults.reservation_ttl = ctx.expiry_ttl
    before = {i.issuance_id for i in ctx.centre.issuance_list()}
    screen = ctx.choose(RESIDENCE, 1)
    steps = [f"Choose (reservation valid {ctx.expiry_ttl.total_seconds():g} s) → "
             f"{describe(screen)}"]
    [issuance] = [i for i in ctx.centre.issuance_list() if i.issuance_id not in before]
    if screen.id == S.SCREEN_ID_PAYMENT:
        # Wait until the reservation has expired at the centre, then pay.
        wait = (issuance.expires_at - ctx.centre.now()).total_seconds() + 0.2
        time.sleep(max(wait, 0))
        paid = screen.fee.yen
        screen = ctx.pay(paid)
        steps.append(f"Pay({paid}) after the expiry → {describe(screen)}")
        jobs, refunded = ctx.printed()
        if jobs or screen.id == S.SCREEN_ID_DONE:
            raise CheckFailed("ISSUE-EXPIRY", ctx.sent([*steps, "ListPrinted"]),
                              f"{describe(screen)}; {len(jobs)} job(s) printed",
                              "an expired reservation was printed")
        if screen.returned.yen != paid:
            raise CheckFailed("FEE-REFUND-ON-FAILURE", ctx.sent(steps),
                              f"{describe(screen)}; refunded {refunded}",
                              f"all {paid} yen must come back")
    ctx.expect_completed(issuance, "FAILED", "TERM-COMPLETE", ctx.sent(steps))
