"""A tenant's own closures: its maintenance days (SERVICE_CLOSED_DAY) and per-kind hours (a
weekday-only kind refused on a Saturday and after its closing time, while another kind of the
same tenant is issued at that moment)."""

from __future__ import annotations

import datetime as dt

from conformance import fixtures as fx
from conformance.checks.municipality import scenarios
from conformance.checks.municipality.context import MunicipalityContext
from conformance.registry import check
from conformance.target import Answer, short_text
from konbini.common.v1 import types_pb2
from konbini.issuing.v1 import issuing_pb2

K = types_pb2
RESIDENCE = K.CERTIFICATE_KIND_RESIDENCE_RECORD
SEAL = K.CERTIFICATE_KIND_SEAL_REGISTRATION
JST = dt.timezone(dt.timedelta(hours=9))
WEEKDAYS = (
    K.WEEKDAY_MONDAY,
    K.WEEKDAY_TUESDAY,
    K.WEEKDAY_WEDNESDAY,
    K.WEEKDAY_THURSDAY,
    K.WEEKDAY_FRIDAY,
)


def _year_end(day: dt.date) -> bool:
    return (day.month, day.day) >= (12, 29) or (day.month, day.day) <= (1, 3)


def _next_day(start: dt.date, wanted: set[int]) -> dt.date:
    """The first day from ``start`` whose ISO weekday is in ``wanted``, outside 29 Dec–3 Jan."""
    day = start
    while day.isoweekday() not in wanted or _year_end(day):
        day += dt.timedelta(days=1)
    return day


def at_jst(day: dt.date, hour: int) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, hour, 0, tzinfo=JST).astimezone(dt.UTC)


def _ask(
    ctx: MunicipalityContext, person: scenarios.Person, kind: int
) -> tuple[issuing_pb2.PrepareIssuanceRequest, Answer]:
    request = ctx.prepare_request(person.serial, kind, fx.request_options(kind))
    return request, ctx.prepare(request)


@check("MUST.municipality.hours.maintenance_day", covers=("HOURS-CLOSED-DATES",))
def maintenance_day(ctx: MunicipalityContext) -> None:
    """On the tenant's maintenance day a request is SERVICE_CLOSED_DAY and reserves nothing;
    the next open day the same request is issued."""
    data, people = scenarios.population(ctx, 1)
    data.tenant.maintenance_days.append(fx.date_pb(ctx.today))
    ctx.load(fx.dataset_of(data))
    request, answer = _ask(ctx, people[0], RESIDENCE)
    ctx.expect_refused(
        request, answer, {"SERVICE_CLOSED_DAY"}, "HOURS-CLOSED-DATES", "a maintenance day"
    )
    ctx.expect_nothing_reserved(request.request_id, "HOURS-CLOSED-DATES", short_text(request))
    ctx.set_clock(at_jst(_next_day(ctx.today + dt.timedelta(days=1), set(range(1, 8))), 10))
    request, answer = _ask(ctx, people[0], RESIDENCE)
    ctx.expect_issued(request, answer, "HOURS-CLOSED-DATES", "the day after a maintenance day")


@check("MUST.municipality.hours.per_kind", covers=("HOURS-PER-KIND",))
def per_kind_hours(ctx: MunicipalityContext) -> None:
    """Residence records offered weekdays 09:00–17:00 only: refused on a Saturday at 10:00
    (the seal certificate, standard hours, is issued then) and on a weekday at 18:00; issued on
    a weekday at 10:00."""
    data, people = scenarios.population(ctx, 1)
    for offer in data.tenant.offers:
        if offer.kind == RESIDENCE:
            offer.hours.CopyFrom(
                K.ServiceHours(
                    days=WEEKDAYS,
                    opens=K.TimeOfDay(hours=9),
                    closes=K.TimeOfDay(hours=17),
                    year_end_closure=True,
                )
            )
    person = people[0]
    saturday = _next_day(ctx.today, {6})
    weekday = _next_day(ctx.today, {1, 2, 3, 4, 5})
    ctx.load(fx.dataset_of(data), at=at_jst(saturday, 10))
    request, answer = _ask(ctx, person, RESIDENCE)
    ctx.expect_refused(
        request,
        answer,
        {"SERVICE_CLOSED_DAY", "OUTSIDE_SERVICE_HOURS"},
        "HOURS-PER-KIND",
        f"a weekday-only kind on Saturday {saturday}",
    )
    ctx.expect_nothing_reserved(request.request_id, "HOURS-PER-KIND", short_text(request))
    request, answer = _ask(ctx, person, SEAL)
    ctx.expect_issued(request, answer, "HOURS-PER-KIND", "a kind with standard hours, Saturday")
    ctx.set_clock(at_jst(weekday, 18))
    request, answer = _ask(ctx, person, RESIDENCE)
    ctx.expect_refused(
        request, answer, {"OUTSIDE_SERVICE_HOURS"}, "HOURS-PER-KIND", f"18:00 on {weekday}"
    )
    ctx.set_clock(at_jst(weekday, 10))
    request, answer = _ask(ctx, person, RESIDENCE)
    ctx.expect_issued(request, answer, "HOURS-PER-KIND", f"10:00 on weekday {weekday}")
