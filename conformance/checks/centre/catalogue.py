"""What the centre reads from the municipality's catalogue and must enforce itself: the kinds
offered, the maximum copies, a kind's own hours and the maintenance days; and a card that
cannot authenticate (no PIN, no certificate) gets nothing. The fake's catalogue always says
"available now", so a refusal here is the centre's own."""

from __future__ import annotations

import datetime as dt

from conformance.checks.centre.cardkit import SuiteCard
from conformance.checks.centre.context import (
    FAMILY_REGISTER,
    RESIDENCE,
    CentreContext,
    Session,
)
from conformance.failures import CheckFailed
from conformance.registry import check
from conformance.seal_meta import metadata_of
from conformance.target import Answer, attempt, short_text
from konbini.clock import JST
from konbini.common.v1 import types_pb2
from konbini.hours import STANDARD_HOURS, is_year_end, national_holidays
from konbini.kiosk.v1 import kiosk_pb2

FAMILY_OPTIONS = types_pb2.CertificateOptions(family_register=types_pb2.FamilyRegisterOptions())
WEEKDAYS_9_TO_5 = types_pb2.ServiceHours(
    days=range(types_pb2.WEEKDAY_MONDAY, types_pb2.WEEKDAY_FRIDAY + 1),
    opens=types_pb2.TimeOfDay(hours=9), closes=types_pb2.TimeOfDay(hours=17),
    year_end_closure=True)


def _at(day: dt.date, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=JST).astimezone(dt.UTC)


def _next_day(start: dt.date, weekday: bool) -> dt.date:
    """The first day from ``start`` that is (not) a working weekday: no holiday, no year end."""
    day = start
    while True:
        working = day.isoweekday() <= 5 and day not in national_holidays(day.year)
        if working == weekday and not is_year_end(day):
            return day
        day += dt.timedelta(days=1)


def _cards(ctx: CentreContext, n: int) -> list[SuiteCard]:
    """``n`` cards bound to the main tenant, loaded (this resets the fake: set its catalogue
    afterwards); each ``_ask`` takes one."""
    cards = ctx.bound_cards(n)
    ctx.cache["catalogue_cards"] = list(cards)
    return cards


def _ask(ctx: CentreContext, at: dt.datetime, *, kind: int = RESIDENCE, copies: int = 1,
         requirement: str) -> tuple[kiosk_pb2.RequestIssuanceRequest, Answer, str]:
    """The next loaded card asks for ``kind`` at ``at`` (the fake's catalogue as set);
    returns (request, answer, card serial)."""
    card = ctx.cache["catalogue_cards"].pop(0)
    ctx.set_clock(at)
    session = ctx.open_session(card, "terminal", requirement)
    options = FAMILY_OPTIONS if kind == FAMILY_REGISTER else None
    request = ctx.issuance_request(session, kind=kind, copies=copies, options=options)
    return request, ctx.request(session, request), card.serial


def _refused_unasked(ctx: CentreContext, at: dt.datetime, reasons: set[str], requirement: str,
                     why: str, **kwargs: object) -> None:
    request, answer, serial = _ask(ctx, at, requirement=requirement, **kwargs)  # type: ignore[arg-type]
    ctx.expect_refused(request, answer, reasons, requirement, why)
    if ctx.fake.prepares_for(serial):
        raise CheckFailed(requirement, short_text(request),
                          "a PrepareIssuance reached the municipality",
                          "the centre must refuse this itself, from the catalogue")


def _accepted(ctx: CentreContext, at: dt.datetime, requirement: str, why: str,
              **kwargs: object) -> kiosk_pb2.RequestIssuanceResponse:
    request, answer, _ = _ask(ctx, at, requirement=requirement, **kwargs)  # type: ignore[arg-type]
    if not answer.ok or not answer.response.documents:  # type: ignore[union-attr]
        raise CheckFailed(requirement, short_text(request), answer.describe(),
                          f"the twin request was refused ({why})", expected={"outcome": "ok"})
    return answer.response  # type: ignore[return-value]


@check("MUST.centre.catalogue.kind_offered", covers=("KIND-OFFERED",))
def kind_offered(ctx: CentreContext) -> None:
    """The fake's catalogue lists the residence record only: a family-register request is
    KIND_NOT_OFFERED from the centre and no prepare reaches the municipality; the residence
    record (the twin) is issued."""
    _cards(ctx, 2)
    ctx.fake.offered = {RESIDENCE}
    _refused_unasked(ctx, ctx.now, {"KIND_NOT_OFFERED"}, "KIND-OFFERED",
                     "the catalogue does not list the kind", kind=FAMILY_REGISTER)
    _accepted(ctx, ctx.now, "KIND-OFFERED", "the catalogue lists the residence record")


@check("MUST.centre.catalogue.copies", covers=("OPT-COPIES",))
def copies(ctx: CentreContext) -> None:
    """With a catalogue maximum of 3: 4 copies are refused (TOO_MANY_COPIES or FIELD_INVALID)
    by the centre without a prepare; 3 copies give 3 documents, each signed with its own copy
    index and issue number, at 3 times the fee."""
    _cards(ctx, 2)
    limit = ctx.fake.max_copies
    _refused_unasked(ctx, ctx.now, {"TOO_MANY_COPIES", "FIELD_INVALID"}, "OPT-COPIES",
                     f"the catalogue allows {limit} copies", copies=limit + 1)
    request, answer, _ = _ask(ctx, ctx.now, copies=limit, requirement="OPT-COPIES")
    response = answer.response if answer.ok else None
    if not isinstance(response, kiosk_pb2.RequestIssuanceResponse) \
            or len(response.documents) != limit:
        raise CheckFailed("OPT-COPIES", short_text(request), answer.describe(),
                          f"{limit} copies must be {limit} documents",
                          expected={"outcome": "ok"})
    metas = [metadata_of(d) for d in response.documents]
    indexes = sorted(m.copy_index for m in metas)
    numbers = {m.issue_number for m in metas}
    if indexes != list(range(1, limit + 1)) or len(numbers) != limit:
        raise CheckFailed("OPT-COPIES", short_text(request),
                          f"copy indexes {indexes}, issue numbers {sorted(numbers)}",
                          "each copy must be its own document with its own issue number")
    if response.fee.yen != limit * ctx.fake.fee:
        raise CheckFailed("OPT-COPIES", short_text(request), short_text(response),
                          f"{limit} copies at {ctx.fake.fee} yen must cost "
                          f"{limit * ctx.fake.fee} yen")


@check("MUST.centre.hours.per_kind", covers=("HOURS-PER-KIND",))
def hours_per_kind(ctx: CentreContext) -> None:
    """The fake's catalogue gives family registers weekdays 09:00-17:00 (still saying
    "available now"): on a weekday at 18:00 Japan time the centre refuses one with
    OUTSIDE_SERVICE_HOURS and on a Saturday-or-holiday at 10:00 with SERVICE_CLOSED_DAY, without
    asking the municipality; the residence record at 18:00 and the family register on a weekday
    at 10:00 are issued."""
    weekday = _next_day(ctx.today, weekday=True)
    closed = _next_day(ctx.today, weekday=False)
    _cards(ctx, 4)
    ctx.fake.hours = {FAMILY_REGISTER: WEEKDAYS_9_TO_5}
    _refused_unasked(ctx, _at(weekday, 18), {"OUTSIDE_SERVICE_HOURS"}, "HOURS-PER-KIND",
                     f"family registers close at 17:00 ({weekday})", kind=FAMILY_REGISTER)
    _refused_unasked(ctx, _at(closed, 10), {"SERVICE_CLOSED_DAY"}, "HOURS-PER-KIND",
                     f"family registers are weekdays only ({closed})", kind=FAMILY_REGISTER)
    _accepted(ctx, _at(weekday, 18), "HOURS-PER-KIND", "the residence record keeps the standard")
    _accepted(ctx, _at(weekday, 10), "HOURS-PER-KIND", "family registers open 09:00-17:00",
              kind=FAMILY_REGISTER)


@check("MUST.centre.hours.closed_dates", covers=("HOURS-CLOSED-DATES",))
def closed_dates(ctx: CentreContext) -> None:
    """The fake's catalogue names today as a maintenance day for every kind (still saying
    "available now"): the centre refuses with SERVICE_CLOSED_DAY without asking the
    municipality; tomorrow at 10:00 the same request is issued."""
    day = types_pb2.Date(year=ctx.today.year, month=ctx.today.month, day=ctx.today.day)
    hours = types_pb2.ServiceHours()
    hours.CopyFrom(STANDARD_HOURS)
    hours.closed_dates.append(day)
    _cards(ctx, 2)
    ctx.fake.hours = {RESIDENCE: hours, FAMILY_REGISTER: hours}
    _refused_unasked(ctx, ctx.now, {"SERVICE_CLOSED_DAY"}, "HOURS-CLOSED-DATES",
                     f"{ctx.today} is a maintenance day")
    tomorrow = ctx.today + dt.timedelta(days=1)
    if not is_year_end(tomorrow):
        _accepted(ctx, _at(tomorrow, 10), "HOURS-CLOSED-DATES",
                  "the day after a maintenance day is open")


@check("MUST.centre.cards.pin_less", covers=("ELIG-PIN-LESS",))
def pin_less(ctx: CentreContext) -> None:
    """A face-only card has no user-authentication certificate, so a terminal can only send an
    Authenticate without one: it is refused (CARD_WITHOUT_PIN, FIELD_INVALID or
    CARD_PROFILE_INVALID), the session stays unauthenticated (a request on it is refused) and
    no municipality is asked."""
    card = ctx.bound_cards(1)[0]
    created = ctx.create_session()
    request = ctx.auth_request(card, created.session_id, created.challenge)
    request.auth_certificate_der = b""
    request.signature = b""
    answer = attempt(lambda: ctx.kiosk().Authenticate(request))
    ctx.expect_refused(request, answer, {"CARD_WITHOUT_PIN", "FIELD_INVALID",
                                         "CARD_PROFILE_INVALID"}, "ELIG-PIN-LESS",
                       "no authentication certificate")
    unauthenticated = Session("terminal", card, created.session_id, created.challenge)
    issue = ctx.issuance_request(unauthenticated)
    answer = ctx.request(unauthenticated, issue)
    if answer.ok:
        raise CheckFailed("ELIG-PIN-LESS", short_text(issue), answer.describe(),
                          "a session whose card never authenticated was issued a certificate",
                          expected={"outcome": "error"})
    if ctx.fake.prepares_for(card.serial):
        raise CheckFailed("ELIG-PIN-LESS", short_text(issue),
                          "a PrepareIssuance reached the municipality",
                          "an unauthenticated session must reach no municipality")
