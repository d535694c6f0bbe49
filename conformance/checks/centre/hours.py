"""Rules the centre enforces itself, before any municipality is asked: the year-end closure,
the standard hours, and the use registration a family register of another municipality
needs."""

from __future__ import annotations

import datetime as dt

from conformance.checks.centre.context import FAMILY_REGISTER, CentreContext
from conformance.failures import CheckFailed
from conformance.registry import check
from conformance.target import short_text
from konbini.clock import JST
from konbini.common.v1 import types_pb2


def _refused_here(ctx: CentreContext, at: dt.datetime, reason: str, requirement: str,
                  **kwargs: object) -> None:
    """At ``at``, a bound card's request is refused with ``reason`` and no prepare reaches
    the municipality."""
    card = ctx.bound_cards(1)[0]
    ctx.set_clock(at)
    session = ctx.open_session(card, "terminal", requirement)
    request = ctx.issuance_request(session, **kwargs)  # type: ignore[arg-type]
    answer = ctx.request(session, request)
    ctx.expect_refused(request, answer, {reason}, requirement,
                       f"asked at {at.astimezone(JST).isoformat()}")
    if ctx.fake.prepares_for(card.serial):
        raise CheckFailed(requirement, short_text(request),
                          "a PrepareIssuance reached the municipality",
                          "the centre must refuse this itself")


def _year_end(today: dt.date) -> dt.datetime:
    year = today.year if (today.month, today.day) <= (12, 30) else today.year + 1
    return dt.datetime(year, 12, 30, 10, 0, tzinfo=JST).astimezone(dt.UTC)


@check("MUST.centre.hours.year_end", covers=("HOURS-YEAR-END",))
def year_end(ctx: CentreContext) -> None:
    """On 30 December at 10:00 Japan time (a municipality that says it is open) a request is
    refused with SERVICE_CLOSED_DAY by the centre itself."""
    _refused_here(ctx, _year_end(ctx.today), "SERVICE_CLOSED_DAY", "HOURS-YEAR-END")


@check("MUST.centre.hours.standard", covers=("HOURS-STANDARD",))
def standard_hours(ctx: CentreContext) -> None:
    """At 05:00 and at 23:30 Japan time (standard hours 06:30-23:00) a request is refused with
    OUTSIDE_SERVICE_HOURS by the centre itself."""
    for hour, minute in ((5, 0), (23, 30)):
        at = dt.datetime(ctx.today.year, ctx.today.month, ctx.today.day, hour, minute,
                         tzinfo=JST).astimezone(dt.UTC)
        _refused_here(ctx, at, "OUTSIDE_SERVICE_HOURS", "HOURS-STANDARD")


@check("MUST.centre.userreg.required", covers=("USEREG-REQUIRED",))
def use_registration_required(ctx: CentreContext) -> None:
    """A family-register certificate from a municipality other than the card's residence,
    without any use registration, is refused with USE_REGISTRATION_REQUIRED and never asked
    of that municipality."""
    _refused_here(ctx, ctx.now, "USE_REGISTRATION_REQUIRED", "USEREG-REQUIRED",
                  code=ctx.other_code, kind=FAMILY_REGISTER,
                  options=types_pb2.CertificateOptions(
                      family_register=types_pb2.FamilyRegisterOptions()))
