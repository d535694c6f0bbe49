"""Issuance end to end, judged at both ends: what the terminal is told and what reached the
(fake) municipality — one prepare per request, refusals passed through without state, exactly
one commit for a print, a cancel for a failure or an expiry, retries until acknowledged, and
nothing half done when the municipality is down."""

from __future__ import annotations

import datetime as dt
import socket
from concurrent.futures import ThreadPoolExecutor

from conformance.checks.centre.context import CentreContext, Session
from conformance.checks.centre.judge import judge_error_model
from conformance.failures import CheckFailed
from conformance.fakes.municipality import CANCELLED, COMMITTED, RESERVED
from conformance.registry import check
from conformance.target import attempt, short_text
from konbini.common.v1 import types_pb2
from konbini.kiosk.v1 import kiosk_pb2
from konbini.platform.v1 import platform_pb2

PRINTED = kiosk_pb2.PRINT_OUTCOME_PRINTED
FAILED = kiosk_pb2.PRINT_OUTCOME_FAILED
DUPLICATES = 4


def _session(ctx: CentreContext, requirement: str, **load: object) -> Session:
    card = ctx.bound_cards(1, **load)[0]  # type: ignore[arg-type]
    return ctx.open_session(card, "terminal", requirement)


def _documents_equal(a: kiosk_pb2.RequestIssuanceResponse,
                     b: kiosk_pb2.RequestIssuanceResponse) -> bool:
    return len(a.documents) == len(b.documents) and all(
        x.pdf == y.pdf and x.signed_metadata == y.signed_metadata and x.signature == y.signature
        for x, y in zip(a.documents, b.documents, strict=True))


def _one_reservation(ctx: CentreContext, serial: str, requirement: str, sent: str) -> None:
    reservations = ctx.fake.reservations_for(serial)
    prepare_ids = {p.request_id for p in ctx.fake.prepares_for(serial)}
    if len(reservations) != 1 or len(prepare_ids) != 1:
        raise CheckFailed(requirement, sent,
                          f"{len(reservations)} reservation(s), prepare request ids "
                          f"{sorted(prepare_ids)} at the municipality",
                          "one request must reach the municipality as one prepare")


@check("MUST.centre.idempotency.request_retry", covers=("ONCE-REQUEST-ID",))
def request_retry(ctx: CentreContext) -> None:
    """RequestIssuance sent again with the same bytes returns the same issuance and the same
    documents; sent 4 times at once, likewise; each leaves one prepare (one prepare request
    id, one reservation) at the municipality."""
    session = _session(ctx, "ONCE-REQUEST-ID")
    request, first = ctx.issue(session, "ONCE-REQUEST-ID", copies=2)
    again = ctx.request(session, request)
    if not again.ok or not isinstance(again.response, kiosk_pb2.RequestIssuanceResponse) \
            or again.response.issuance_id != first.issuance_id \
            or not _documents_equal(first, again.response):
        raise CheckFailed("ONCE-REQUEST-ID", short_text(request), again.describe(),
                          "a retry did not return the first answer (issuance or documents)",
                          expected={"outcome": "ok"})
    _one_reservation(ctx, session.card.serial, "ONCE-REQUEST-ID", short_text(request))
    # Concurrent duplicates of a fresh request (a terminal retrying on a timeout).
    second = ctx.issuance_request(session)
    ctx.fake.prepare_delay = 0.3
    with ThreadPoolExecutor(DUPLICATES) as pool:
        answers = list(pool.map(lambda _: ctx.request(session, second), range(DUPLICATES)))
    ctx.fake.prepare_delay = 0.0
    ids = {a.response.issuance_id for a in answers if a.ok and a.response is not None}
    if len(ids) != 1 or not all(a.ok for a in answers):
        raise CheckFailed("ONCE-REQUEST-ID", short_text(second),
                          "; ".join(a.describe()[:200] for a in answers),
                          "concurrent duplicates did not all get the one issuance",
                          expected={"outcome": "ok"})
    reservations = ctx.fake.reservations_for(session.card.serial)
    if len(reservations) != 2:
        raise CheckFailed("ONCE-REQUEST-ID", short_text(second),
                          f"{len(reservations)} reservations for 2 distinct requests",
                          "concurrent duplicates made more than one reservation")


@check("MUST.centre.idempotency.request_id_reused", covers=("ONCE-REUSE",))
def request_id_reused(ctx: CentreContext) -> None:
    """A request id reused with another intent (2 copies instead of 1) is REQUEST_ID_REUSED,
    reaches no municipality, and the first answer still stands."""
    session = _session(ctx, "ONCE-REUSE")
    request, first = ctx.issue(session, "ONCE-REUSE")
    reused = ctx.issuance_request(session, copies=2, request_id=request.request_id)
    answer = ctx.request(session, reused)
    ctx.expect_refused(reused, answer, {"REQUEST_ID_REUSED"}, "ONCE-REUSE",
                       "same request_id, other content")
    _one_reservation(ctx, session.card.serial, "ONCE-REUSE", short_text(reused))
    state = attempt(lambda: ctx.kiosk().GetIssuance(
        kiosk_pb2.GetIssuanceRequest(request_id=request.request_id)))
    if not state.ok or state.response.issuance_id != first.issuance_id:  # type: ignore[union-attr]
        raise CheckFailed("ONCE-REUSE", f"GetIssuance(request_id={request.request_id})",
                          state.describe(), "the reused request id changed the first issuance")


@check("MUST.centre.refusals.passed_through", covers=("REFUSE-TYPED", "REFUSE-NO-STATE"))
def refusal_passed_through(ctx: CentreContext) -> None:
    """A municipality refusal (UNDER_15, NOT_ENTITLED) reaches the terminal as that reason
    with its catalogue status, no documents; afterwards the issuance is unknown or cancelled,
    and no commit or cancel reaches the municipality."""
    for reason in ("UNDER_15", "NOT_ENTITLED"):
        session = _session(ctx, "REFUSE-TYPED")
        ctx.fake.refuse[session.card.serial] = reason
        request = ctx.issuance_request(session)
        answer = ctx.request(session, request)
        ctx.expect_refused(request, answer, {reason}, "REFUSE-TYPED",
                           "the municipality refused")
        judge_error_model(short_text(request), answer)
        state = attempt(lambda r=request: ctx.kiosk().GetIssuance(  # type: ignore[misc]
            kiosk_pb2.GetIssuanceRequest(request_id=r.request_id)))
        if state.ok and state.response.state != types_pb2.ISSUANCE_STATE_CANCELLED:  # type: ignore[union-attr]
            raise CheckFailed("REFUSE-NO-STATE", f"GetIssuance(request_id={request.request_id})",
                              state.describe(), "a refused request left a live issuance")
        printed = ctx.complete("terminal", state.response.issuance_id, PRINTED) \
            if state.ok else None  # type: ignore[union-attr]
        if printed is not None and printed.ok and \
                printed.response.state == types_pb2.ISSUANCE_STATE_COMMITTED:  # type: ignore[union-attr]
            raise CheckFailed("REFUSE-NO-STATE", "CompleteIssuance(PRINTED) after a refusal",
                              printed.describe(), "a refused request was charged")
        if ctx.wait_until(lambda: bool(ctx.fake.completions()), ctx.quiet_wait):
            raise CheckFailed("REFUSE-NO-STATE", short_text(request),
                              f"the municipality then got {ctx.fake.completions()}",
                              "a refusal was followed by a commit or cancel")


def _fee(response: kiosk_pb2.RequestIssuanceResponse) -> int:
    return int(response.fee.yen)


@check("MUST.centre.completion.commit_once", covers=("ONCE-CHARGE",))
def commit_once(ctx: CentreContext) -> None:
    """CompleteIssuance(PRINTED) sent twice with one request id and once more with another
    charges the fee once (every answer COMMITTED with the same charge) and the municipality
    gets the commit under one request id and makes one issue record."""
    session = _session(ctx, "ONCE-CHARGE")
    _, issued = ctx.issue(session, "ONCE-CHARGE")
    done_id = ctx.rid("done")
    answers = [ctx.complete("terminal", issued.issuance_id, PRINTED, request_id=done_id)
               for _ in range(2)]
    answers.append(ctx.complete("terminal", issued.issuance_id, PRINTED))
    for answer in answers:
        if not answer.ok or answer.response.state != types_pb2.ISSUANCE_STATE_COMMITTED \
                or answer.response.charged.yen != _fee(issued):  # type: ignore[union-attr]
            raise CheckFailed("ONCE-CHARGE", f"CompleteIssuance({issued.issuance_id}, PRINTED)",
                              answer.describe(),
                              f"expected COMMITTED charging {_fee(issued)} yen every time",
                              expected={"outcome": "ok"})
    serial = session.card.serial
    if not ctx.wait_until(lambda: any(r.state == COMMITTED
                                      for r in ctx.fake.reservations_for(serial)),
                          ctx.relay_wait):
        raise CheckFailed("ONCE-CHARGE", "CompleteIssuance(PRINTED)",
                          str(ctx.fake.reservations_for(serial)),
                          f"no commit reached the municipality in {ctx.relay_wait} s")
    ctx.wait_until(lambda: False, ctx.quiet_wait)  # let any duplicate relay arrive
    commits = {c[3] for c in ctx.fake.completions() if c[0] == "commit"}
    records = ctx.fake.reservations_for(serial)
    if len(commits) != 1 or sum(r.state == COMMITTED for r in records) != 1:
        raise CheckFailed("ONCE-CHARGE", "CompleteIssuance(PRINTED) x3",
                          f"commit request ids {sorted(commits)}",
                          "one print must be relayed as one commit")


@check("MUST.centre.completion.refund_on_failure", covers=("FEE-REFUND-ON-FAILURE",))
def refund_on_failure(ctx: CentreContext) -> None:
    """CompleteIssuance(FAILED, printer jam) answers CANCELLED charging nothing, the
    municipality gets a cancel and never a commit, and a later PRINTED cannot commit it."""
    session = _session(ctx, "FEE-REFUND-ON-FAILURE")
    _, issued = ctx.issue(session, "FEE-REFUND-ON-FAILURE")
    answer = ctx.complete("terminal", issued.issuance_id, FAILED,
                          cause=kiosk_pb2.FAILURE_CAUSE_PRINTER)
    if not answer.ok or answer.response.state != types_pb2.ISSUANCE_STATE_CANCELLED \
            or answer.response.charged.yen != 0:  # type: ignore[union-attr]
        raise CheckFailed("FEE-REFUND-ON-FAILURE", "CompleteIssuance(FAILED)", answer.describe(),
                          "a failed print must be CANCELLED with nothing charged",
                          expected={"outcome": "ok"})
    late = ctx.complete("terminal", issued.issuance_id, PRINTED)
    if late.ok and late.response.state == types_pb2.ISSUANCE_STATE_COMMITTED:  # type: ignore[union-attr]
        raise CheckFailed("FEE-REFUND-ON-FAILURE", "CompleteIssuance(PRINTED) after FAILED",
                          late.describe(), "a cancelled issuance was committed")
    serial = session.card.serial
    if not ctx.wait_until(lambda: any(r.state == CANCELLED
                                      for r in ctx.fake.reservations_for(serial)),
                          ctx.relay_wait):
        raise CheckFailed("FEE-REFUND-ON-FAILURE", "CompleteIssuance(FAILED)",
                          str(ctx.fake.completions()),
                          f"no cancel reached the municipality in {ctx.relay_wait} s")
    ctx.wait_until(lambda: False, ctx.quiet_wait)
    if any(c[0] == "commit" for c in ctx.fake.completions()):
        raise CheckFailed("FEE-REFUND-ON-FAILURE", "CompleteIssuance(FAILED)",
                          str(ctx.fake.completions()), "a failed print was committed")


@check("MUST.centre.completion.after_expiry", covers=("ISSUE-EXPIRY",))
def after_expiry(ctx: CentreContext) -> None:
    """With the centre's clock one second past the expires_at it gave the terminal (the
    municipality's reservation still open), CompleteIssuance(PRINTED) is EXPIRED (or refused
    RESERVATION_EXPIRED) charging nothing; the municipality gets a cancel, never a commit."""
    session = _session(ctx, "ISSUE-EXPIRY")
    _, issued = ctx.issue(session, "ISSUE-EXPIRY")
    ctx.set_clock(issued.expires_at.ToDatetime(tzinfo=dt.UTC) + dt.timedelta(seconds=1))
    answer = ctx.complete("terminal", issued.issuance_id, PRINTED)
    if answer.ok:
        response = answer.response
        if response.state != types_pb2.ISSUANCE_STATE_EXPIRED or response.charged.yen:  # type: ignore[union-attr]
            raise CheckFailed("ISSUE-EXPIRY", "CompleteIssuance(PRINTED) after expires_at",
                              answer.describe(), "an expired issuance was not reported EXPIRED",
                              expected={"outcome": "ok"})
    elif answer.error is None or answer.error.reason != "RESERVATION_EXPIRED":
        raise CheckFailed("ISSUE-EXPIRY", "CompleteIssuance(PRINTED) after expires_at",
                          answer.describe(), "expected EXPIRED or RESERVATION_EXPIRED")
    serial = session.card.serial
    if not ctx.wait_until(lambda: any(c[0] == "cancel" for c in ctx.fake.completions())
                          or any(r.state != RESERVED for r in ctx.fake.reservations_for(serial)),
                          ctx.relay_wait):
        raise CheckFailed("ISSUE-EXPIRY", "CompleteIssuance(PRINTED) after expires_at",
                          "no cancel at the municipality",
                          f"the expired reservation was not cancelled in {ctx.relay_wait} s")
    ctx.wait_until(lambda: False, ctx.quiet_wait)
    if any(c[0] == "commit" for c in ctx.fake.completions()):
        raise CheckFailed("ISSUE-EXPIRY", "CompleteIssuance(PRINTED) after expires_at",
                          str(ctx.fake.completions()), "an expired issuance was committed")


@check("MUST.centre.completion.outbox_retries", covers=("ISSUE-OUTBOX",))
def outbox_retries(ctx: CentreContext) -> None:
    """The municipality answers the first two commits UNAVAILABLE; the terminal still gets
    COMMITTED, and the centre retries until the municipality has committed."""
    session = _session(ctx, "ISSUE-OUTBOX")
    _, issued = ctx.issue(session, "ISSUE-OUTBOX")
    ctx.fake.fail_commits = 2
    answer = ctx.complete("terminal", issued.issuance_id, PRINTED)
    if not answer.ok or answer.response.state != types_pb2.ISSUANCE_STATE_COMMITTED:  # type: ignore[union-attr]
        raise CheckFailed("ISSUE-OUTBOX", "CompleteIssuance(PRINTED)", answer.describe(),
                          "a print must be COMMITTED even while the municipality is busy",
                          expected={"outcome": "ok"})
    serial = session.card.serial
    if not ctx.wait_until(lambda: any(r.state == COMMITTED
                                      for r in ctx.fake.reservations_for(serial)),
                          ctx.relay_wait):
        raise CheckFailed("ISSUE-OUTBOX", "CompleteIssuance(PRINTED)",
                          f"commit attempts {ctx.fake.completions()}",
                          f"the commit was not retried to success in {ctx.relay_wait} s")


def _dead_endpoint(host: str) -> str:
    """host:port where nothing listens (a port just freed)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"{host}:{port}"


@check("MUST.centre.routing.unavailable", covers=("ROUTE-UNAVAILABLE",))
def route_unavailable(ctx: CentreContext) -> None:
    """A municipality whose only endpoint is down is MUNICIPALITY_UNAVAILABLE; one that
    reserves and then loses the answer is MUNICIPALITY_UNAVAILABLE too, and its reservation is
    cancelled afterwards (nothing left half done)."""
    host = ctx.endpoint.endpoint.rsplit(":", 1)[0]
    session = _session(ctx, "ROUTE-UNAVAILABLE", routes={ctx.code: _dead_endpoint(host)})
    request = ctx.issuance_request(session)
    answer = ctx.request(session, request)
    ctx.expect_refused(request, answer, {"MUNICIPALITY_UNAVAILABLE"}, "ROUTE-UNAVAILABLE",
                       "the municipality's only endpoint is down")
    session = _session(ctx, "ROUTE-UNAVAILABLE")
    ctx.fake.lose_answer.add(session.card.serial)
    request = ctx.issuance_request(session)
    answer = ctx.request(session, request)
    ctx.expect_refused(request, answer, {"MUNICIPALITY_UNAVAILABLE"}, "ROUTE-UNAVAILABLE",
                       "the municipality went away after reserving")
    serial = session.card.serial
    if not ctx.fake.reservations_for(serial):
        raise CheckFailed("ROUTE-UNAVAILABLE", short_text(request), "no prepare arrived",
                          "the request never reached the municipality")
    if not ctx.wait_until(lambda: all(r.state != RESERVED
                                      for r in ctx.fake.reservations_for(serial)),
                          ctx.relay_wait):
        raise CheckFailed("ROUTE-UNAVAILABLE", short_text(request),
                          str([r.state for r in ctx.fake.reservations_for(serial)]),
                          f"the reservation stayed alive {ctx.relay_wait} s after the failure")


@check("MUST.centre.settlement.committed_only", covers=("SETTLE-COMMITTED-ONLY",))
def committed_only(ctx: CentreContext) -> None:
    """Of four requests — printed, failed, delivered and never completed, refused — the day's
    settlement report counts only the printed one, with its fee."""
    cards = ctx.bound_cards(4)
    sessions = [ctx.open_session(c, "terminal", "SETTLE-COMMITTED-ONLY") for c in cards]
    ctx.fake.refuse[cards[3].serial] = "UNDER_15"
    _, printed = ctx.issue(sessions[0], "SETTLE-COMMITTED-ONLY")
    _, failed = ctx.issue(sessions[1], "SETTLE-COMMITTED-ONLY")
    ctx.issue(sessions[2], "SETTLE-COMMITTED-ONLY")
    ctx.request(sessions[3], ctx.issuance_request(sessions[3]))
    ctx.complete("terminal", printed.issuance_id, PRINTED)
    ctx.complete("terminal", failed.issuance_id, FAILED, cause=kiosk_pb2.FAILURE_CAUSE_PAYMENT)
    ctx.wait_until(lambda: any(r.state == COMMITTED
                               for r in ctx.fake.reservations_for(cards[0].serial)),
                   ctx.relay_wait)
    request = platform_pb2.GetSettlementReportRequest(
        municipality_code=types_pb2.MunicipalityCode(value=ctx.code),
        day=types_pb2.Date(year=ctx.today.year, month=ctx.today.month, day=ctx.today.day))
    report = ctx.platform().GetSettlementReport(request)
    issuances = sum(line.issuances for line in report.lines)
    if issuances != 1 or report.total_fees.yen != _fee(printed):
        raise CheckFailed("SETTLE-COMMITTED-ONLY", short_text(request), short_text(report),
                          f"expected 1 issuance and {_fee(printed)} yen (one printed of four)")


@check("MUST.centre.completion.final_states",
       covers=("ISSUE-CANCELLED-FINAL", "ISSUE-COMMITTED-FINAL", "FEE-CATALOGUE"))
def final_states(ctx: CentreContext) -> None:
    """Two copies cost the catalogue fee twice; PRINTED after FAILED is RESERVATION_CANCELLED
    and FAILED after PRINTED is RESERVATION_COMMITTED (new request ids each time)."""
    cards = ctx.bound_cards(2)
    first, second = (ctx.open_session(c, "terminal", "ISSUE-CANCELLED-FINAL") for c in cards)
    request, cancelled = ctx.issue(first, "FEE-CATALOGUE", copies=2)
    if cancelled.fee.yen != 2 * ctx.fake.fee:
        raise CheckFailed("FEE-CATALOGUE", short_text(request), short_text(cancelled),
                          f"2 copies at {ctx.fake.fee} yen must cost {2 * ctx.fake.fee} yen")
    ctx.complete("terminal", cancelled.issuance_id, FAILED,
                 cause=kiosk_pb2.FAILURE_CAUSE_USER_CANCELLED)
    late = ctx.complete("terminal", cancelled.issuance_id, PRINTED)
    ctx.expect_refused(f"CompleteIssuance({cancelled.issuance_id}, PRINTED) after FAILED", late,
                       {"RESERVATION_CANCELLED"}, "ISSUE-CANCELLED-FINAL", "it was cancelled")
    _, committed = ctx.issue(second, "ISSUE-COMMITTED-FINAL")
    ctx.complete("terminal", committed.issuance_id, PRINTED)
    late = ctx.complete("terminal", committed.issuance_id, FAILED,
                        cause=kiosk_pb2.FAILURE_CAUSE_PRINTER)
    ctx.expect_refused(f"CompleteIssuance({committed.issuance_id}, FAILED) after PRINTED", late,
                       {"RESERVATION_COMMITTED"}, "ISSUE-COMMITTED-FINAL", "it was committed")
