"""Exactly once: after UNAVAILABLE or a lost answer the terminal sends the very same request
(same request_id, same signed intent), and one issuance is charged once."""

from __future__ import annotations

from conformance.checks.terminal.context import RESIDENCE, S, TerminalContext, describe
from conformance.failures import CheckFailed, CheckSkipped
from conformance.fakes.centre import ReceivedCall
from conformance.registry import check


def _same_request(calls: list[ReceivedCall], what: str, sent: str) -> None:
    ids = {c.request.request_id for c in calls}  # type: ignore[attr-defined]
    if len(ids) != 1:
        raise CheckFailed("ONCE-REQUEST-ID", sent, f"{what} request ids {sorted(ids)}",
                          f"a retried {what} came with a new request_id")
    if len({c.request_bytes for c in calls}) != 1:
        raise CheckFailed("ONCE-REQUEST-ID", sent, f"{len(calls)} {what} calls, contents differ",
                          f"a retried {what} reused the request_id with other content")


@check("MUST.terminal.once.retry_same_request", covers=("ONCE-REQUEST-ID",))
def retry_same_request(ctx: TerminalContext) -> None:
    """The fake answers UNAVAILABLE once to RequestIssuance and once to CompleteIssuance: the
    terminal retries each with the same request_id and content, and the issuance completes."""
    ctx.login()
    with ctx.centre.lock:
        ctx.centre.faults.unavailable_before.update({"RequestIssuance": 1, "CompleteIssuance": 1})
    screen = ctx.choose(RESIDENCE, 1)
    steps = [f"Choose (RequestIssuance answered UNAVAILABLE once) → {describe(screen)}"]
    requests = ctx.centre.received("RequestIssuance")
    if len(requests) < 2:
        raise CheckSkipped("the terminal did not retry RequestIssuance after UNAVAILABLE, so "
                           "the request_id of a retry cannot be judged")
    _same_request(requests, "RequestIssuance", ctx.sent(steps))
    if screen.id != S.SCREEN_ID_PAYMENT:
        raise CheckFailed("ONCE-REQUEST-ID", ctx.sent(steps), describe(screen),
                          "the retried request did not reach payment")
    done = ctx.pay(screen.fee.yen)
    steps.append(f"Pay (CompleteIssuance answered UNAVAILABLE once) → {describe(done)}")
    [issuance] = ctx.centre.issuance_list()
    ctx.wait_completed(issuance)
    completes = ctx.centre.received("CompleteIssuance")
    if len(completes) >= 2:
        _same_request(completes, "CompleteIssuance", ctx.sent(steps))
    ctx.expect_completed(issuance, "PRINTED", "ONCE-REQUEST-ID", ctx.sent(steps))


@check("MUST.terminal.once.lost_answers", covers=("ONCE-CHARGE", "ONCE-REQUEST-ID"))
def lost_answers(ctx: TerminalContext) -> None:
    """The fake does the work but loses its answer, once for RequestIssuance and once for
    CompleteIssuance: one issuance exists, it is committed once, one job is printed, and the
    resident pays the fee once."""
    ctx.login()
    with ctx.centre.lock:
        ctx.centre.faults.lose_answer.update({"RequestIssuance": 1, "CompleteIssuance": 1})
    screen = ctx.choose(RESIDENCE, 1)
    steps = [f"Choose (the RequestIssuance answer lost once) → {describe(screen)}"]
    issuances = ctx.centre.issuance_list()
    requests = ctx.centre.received("RequestIssuance")
    if len(requests) >= 2:
        _same_request(requests, "RequestIssuance", ctx.sent(steps))
    if len(issuances) > 1:
        raise CheckFailed("ONCE-REQUEST-ID", ctx.sent(steps),
                          f"{len(issuances)} issuances: {ctx.calls_text('RequestIssuance')}",
                          "a lost answer was retried as a new request")
    if screen.id != S.SCREEN_ID_PAYMENT:
        raise CheckSkipped(f"the terminal gave up after one lost answer ({describe(screen)})")
    fee = screen.fee.yen
    done = ctx.pay(fee + 100)
    steps.append(f"Pay({fee + 100}) (the CompleteIssuance answer lost once) → {describe(done)}")
    [issuance] = issuances
    ctx.wait_completed(issuance)
    completes = ctx.centre.received("CompleteIssuance")
    if len({c.request.request_id for c in completes}) > 1:  # type: ignore[attr-defined]
        raise CheckFailed("ONCE-CHARGE", ctx.sent(steps), ctx.calls_text("CompleteIssuance"),
                          "the issuance was completed under several request ids")
    jobs, refunded = ctx.printed()
    kept = sum(j.charged.yen for j in jobs) - refunded
    if len(jobs) != 1 or kept != fee or done.returned.yen != 100:
        raise CheckFailed("ONCE-CHARGE", ctx.sent([*steps, "ListPrinted"]),
                          f"{describe(done)}; {len(jobs)} job(s), {kept} yen kept",
                          f"expected one job and {fee} yen kept")
    ctx.expect_completed(issuance, "PRINTED", "ONCE-CHARGE", ctx.sent(steps))
