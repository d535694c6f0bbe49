"""The life of an issuance beyond one request: the sweeper that cancels what nobody completed,
routing over replicas within the caller's deadline, the day's settlement, and identities taken
from certificates (a terminal completes only its own issuances)."""

from __future__ import annotations

import datetime as dt
from collections import Counter

from cryptography import x509

from conformance.checks.centre.catalogue import FAMILY_OPTIONS
from conformance.checks.centre.context import FAMILY_REGISTER, RESIDENCE, CentreContext, Session
from conformance.checks.centre.issuance import FAILED, PRINTED, _dead_endpoint
from conformance.failures import CheckFailed, CheckSkipped
from conformance.fakes.municipality import COMMITTED
from conformance.registry import check
from conformance.target import attempt, short_text
from konbini.common.v1 import types_pb2
from konbini.kiosk.v1 import kiosk_pb2
from konbini.pki.identity import identity_of
from konbini.platform.v1 import platform_pb2

TERMINAL_DEADLINE = 8.0  # seconds the suite's terminal gives a RequestIssuance (ROUTE-DEADLINE)
# gRPC sends timeouts rounded up to its wire units; two hops may add a few milliseconds.
DEADLINE_SLACK = 0.1


def _session(ctx: CentreContext, requirement: str, **load: object) -> Session:
    card = ctx.bound_cards(1, **load)[0]  # type: ignore[arg-type]
    return ctx.open_session(card, "terminal", requirement)


@check("MUST.centre.completion.sweeper", covers=("ISSUE-SWEEPER",))
def sweeper(ctx: CentreContext) -> None:
    """A delivered issuance nobody completes: with the clock set past the expires_at the centre
    gave, the municipality gets a CancelIssuance for its reservation within --relay-wait (and
    never a commit), and GetIssuance no longer shows it open."""
    session = _session(ctx, "ISSUE-SWEEPER")
    request, issued = ctx.issue(session, "ISSUE-SWEEPER")
    reservation = ctx.fake.reservations_for(session.card.serial)[0].reservation_id
    ctx.set_clock(issued.expires_at.ToDatetime(dt.UTC) + dt.timedelta(seconds=1))

    def cancelled() -> bool:
        return any(c[0] == "cancel" and c[2] == reservation for c in ctx.fake.completions())

    if not ctx.wait_until(cancelled, ctx.relay_wait):
        raise CheckFailed("ISSUE-SWEEPER", f"{short_text(request)}, then SetClock past "
                          f"expires_at and nothing", str(ctx.fake.completions()),
                          f"the expired reservation was not cancelled in {ctx.relay_wait} s")
    if any(c[0] == "commit" for c in ctx.fake.completions()):
        raise CheckFailed("ISSUE-SWEEPER", short_text(request), str(ctx.fake.completions()),
                          "an uncompleted issuance was committed")
    state = attempt(lambda: ctx.kiosk().GetIssuance(
        kiosk_pb2.GetIssuanceRequest(issuance_id=issued.issuance_id)))
    if state.ok and state.response.state in (  # type: ignore[union-attr]
            types_pb2.ISSUANCE_STATE_RESERVED, types_pb2.ISSUANCE_STATE_COMMITTED):
        raise CheckFailed("ISSUE-SWEEPER", f"GetIssuance({issued.issuance_id})",
                          state.describe(), "a swept issuance is still shown open or committed")


@check("SHOULD.centre.routing.failover", covers=("ROUTE-FAILOVER",))
def failover(ctx: CentreContext) -> None:
    """The main tenant's route lists a dead endpoint first and the fake second: requests are
    issued through the second (twice, so a centre that remembers the dead one passes too)."""
    host = ctx.endpoint.endpoint.rsplit(":", 1)[0]
    cards = ctx.bound_cards(2, routes={ctx.code: [_dead_endpoint(host), ctx.endpoint.endpoint]})
    for card in cards:
        session = ctx.open_session(card, "terminal", "ROUTE-FAILOVER")
        request = ctx.issuance_request(session)
        answer = ctx.request(session, request, timeout=30)
        if not answer.ok or not ctx.fake.prepares_for(card.serial):
            raise CheckFailed("ROUTE-FAILOVER", short_text(request), answer.describe(),
                              "the first endpoint is down, the second healthy: the request "
                              "must go through the second", expected={"outcome": "ok"})


@check("SHOULD.centre.routing.deadline", covers=("ROUTE-DEADLINE",))
def deadline(ctx: CentreContext) -> None:
    """RequestIssuance sent with an 8 s deadline reaches the municipality as a PrepareIssuance
    carrying a deadline of at most 8 s (0.1 s allowed for gRPC's rounding of timeouts)."""
    session = _session(ctx, "ROUTE-DEADLINE")
    request = ctx.issuance_request(session)
    answer = ctx.request(session, request, timeout=TERMINAL_DEADLINE)
    if not answer.ok:
        raise CheckFailed("ROUTE-DEADLINE", short_text(request), answer.describe(),
                          "the request failed", expected={"outcome": "ok"})
    deadlines = ctx.fake.prepare_deadlines
    if not deadlines or deadlines[0] is None \
            or deadlines[0] > TERMINAL_DEADLINE + DEADLINE_SLACK:
        raise CheckFailed("ROUTE-DEADLINE", f"{short_text(request)} (timeout "
                          f"{TERMINAL_DEADLINE} s)",
                          f"PrepareIssuance deadline(s) seen: {deadlines}",
                          f"the municipality must get a deadline of at most "
                          f"{TERMINAL_DEADLINE} s")


def _day(day: dt.date) -> types_pb2.Date:
    return types_pb2.Date(year=day.year, month=day.month, day=day.day)


def _terminal_identity(ctx: CentreContext, name: str) -> tuple[str, str]:
    """(store operator, terminal id) the certificate of ``name`` carries."""
    pem = ctx.wire.config.identities[name].cert_pem
    if pem is None:
        raise CheckSkipped(f"no certificate for {name}")
    peer = identity_of(x509.load_pem_x509_certificate(pem))
    return peer.store_operator or "", peer.id


@check("MUST.centre.settlement.per_day", covers=("SETTLE-PER-DAY",))
def per_day(ctx: CentreContext) -> None:
    """Printed today: a residence record (1 copy) and a family register (2 copies). The day's
    report has one line per kind for the terminal's store operator with its issuances, copies
    and fees (catalogue fee x copies), commissions adding up to the total, totals equal to the
    lines; the reports of the day before and after are empty."""
    if not ctx.wire.has_identity("municipality"):
        raise CheckSkipped("no municipality certificate configured")
    cards = ctx.bound_cards(2)
    sessions = [ctx.open_session(c, "terminal", "SETTLE-PER-DAY") for c in cards]
    _, one = ctx.issue(sessions[0], "SETTLE-PER-DAY")
    _, two = ctx.issue(sessions[1], "SETTLE-PER-DAY", kind=FAMILY_REGISTER, copies=2,
                       options=FAMILY_OPTIONS)
    for issued in (one, two):
        ctx.complete("terminal", issued.issuance_id, PRINTED)
    ctx.wait_until(lambda: sum(r.state == COMMITTED for r in ctx.fake.snapshot()) == 2,
                   ctx.relay_wait)
    operator, _ = _terminal_identity(ctx, "terminal")
    request = platform_pb2.GetSettlementReportRequest(
        municipality_code=types_pb2.MunicipalityCode(value=ctx.code), day=_day(ctx.today))
    report = ctx.platform().GetSettlementReport(request)
    got: Counter[tuple[int, str, str]] = Counter()
    for line in report.lines:
        got[(line.kind, line.store_operator, "n")] += line.issuances
        got[(line.kind, line.store_operator, "copies")] += line.copies
        got[(line.kind, line.store_operator, "fees")] += line.fees.yen
    fee = ctx.fake.fee
    expected = {
        (RESIDENCE, operator, "n"): 1, (RESIDENCE, operator, "copies"): 1,
        (RESIDENCE, operator, "fees"): fee,
        (FAMILY_REGISTER, operator, "n"): 1, (FAMILY_REGISTER, operator, "copies"): 2,
        (FAMILY_REGISTER, operator, "fees"): 2 * fee,
    }
    wrong = {k: got.get(k, 0) for k, v in expected.items() if got.get(k, 0) != v}
    if wrong:
        raise CheckFailed("SETTLE-PER-DAY", short_text(request), short_text(report),
                          f"lines by (kind, store operator) differ from what was committed: "
                          f"{wrong} (expected {expected})")
    commissions = sum(line.commissions.yen for line in report.lines)
    fees = sum(line.fees.yen for line in report.lines)
    if report.total_fees.yen != fees or report.total_commissions.yen != commissions \
            or fees != 3 * fee or any(line.commissions.yen < 0 for line in report.lines) \
            or (report.lines and commissions <= 0):
        raise CheckFailed("SETTLE-PER-DAY", short_text(request), short_text(report),
                          f"totals must equal the lines ({fees} yen fees, {commissions} yen "
                          f"commissions; fees {3 * fee} yen committed) and a commission is paid")
    for other in (ctx.today - dt.timedelta(days=1), ctx.today + dt.timedelta(days=1)):
        asked = platform_pb2.GetSettlementReportRequest(
            municipality_code=types_pb2.MunicipalityCode(value=ctx.code), day=_day(other))
        answer = ctx.platform().GetSettlementReport(asked)
        if any(line.issuances for line in answer.lines) or answer.total_fees.yen:
            raise CheckFailed("SETTLE-PER-DAY", short_text(asked), short_text(answer),
                              f"{other} had no issuance: its report must be empty")


@check("MUST.centre.authz.identity", covers=("AUTHZ-IDENTITY",))
def identity(ctx: CentreContext) -> None:
    """The prepare the municipality gets names the store operator and terminal of the calling
    certificate (requests carry no identity fields); another terminal's CompleteIssuance of that
    issuance is refused and nothing is committed; the owner then completes it."""
    session = _session(ctx, "AUTHZ-IDENTITY")
    request, issued = ctx.issue(session, "AUTHZ-IDENTITY")
    operator, terminal_id = _terminal_identity(ctx, "terminal")
    prepares = ctx.fake.prepares_for(session.card.serial)
    origin = prepares[0].origin if prepares else None
    if origin is None or (origin.store_operator, origin.terminal_id) != (operator, terminal_id):
        raise CheckFailed("AUTHZ-IDENTITY", short_text(request),
                          short_text(origin) if origin is not None else "no prepare",
                          f"the origin must be the caller's certificate: {operator}:"
                          f"{terminal_id}")
    stolen = ctx.complete("terminal_b", issued.issuance_id, PRINTED)
    if stolen.ok:
        raise CheckFailed("AUTHZ-IDENTITY",
                          f"CompleteIssuance({issued.issuance_id}, PRINTED) as terminal_b",
                          stolen.describe(), "a terminal completed another terminal's issuance",
                          expected={"outcome": "error"})
    if ctx.wait_until(lambda: any(c[0] == "commit" for c in ctx.fake.completions()),
                      ctx.quiet_wait):
        raise CheckFailed("AUTHZ-IDENTITY", "CompleteIssuance(PRINTED) as terminal_b",
                          str(ctx.fake.completions()),
                          "another terminal's completion reached the municipality")
    own = ctx.complete("terminal", issued.issuance_id, FAILED,
                       cause=kiosk_pb2.FAILURE_CAUSE_USER_CANCELLED)
    if not own.ok:
        raise CheckFailed("AUTHZ-IDENTITY", "CompleteIssuance(FAILED) by the owner",
                          own.describe(), "the owner could not complete after the refusal",
                          expected={"outcome": "ok"})
