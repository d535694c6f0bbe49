"""Service hours: is a certificate kind open at a given instant (Japan time)?

Shared by the centre (catalogue, routing) and the municipality (eligibility), so both refuse
with the same reasons: SERVICE_CLOSED_DAY for a whole closed day (29 Dec to 3 Jan, maintenance
days, holidays of weekday-only kinds, weekdays the kind does not open), OUTSIDE_SERVICE_HOURS
for a time of day outside opening hours (HOURS-STANDARD, HOURS-YEAR-END, HOURS-CLOSED-DATES,
HOURS-PER-KIND).

Holidays are Japan's national holidays (the ``holidays`` package's calendar, which follows the
law's substitute and sandwiched-day rules) unless a caller gives its own list.

An empty ``ServiceHours`` means the standard: 06:30-23:00 every day with the year-end closure.
A partly filled one takes the standard for what it leaves out (no days = every day, no opening
or closing time = 06:30 / 23:00); the year-end closure then applies only if it asks for it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterable
from functools import cache

import holidays as holiday_calendars

from konbini.clock import JST
from konbini.common.v1 import types_pb2
from konbini.errors import KonbiniError

SERVICE_CLOSED_DAY = "SERVICE_CLOSED_DAY"
OUTSIDE_SERVICE_HOURS = "OUTSIDE_SERVICE_HOURS"

STANDARD_OPENS = (6, 30)
STANDARD_CLOSES = (23, 0)
EVERY_DAY = tuple(range(types_pb2.WEEKDAY_MONDAY, types_pb2.WEEKDAY_SUNDAY + 1))

STANDARD_HOURS = types_pb2.ServiceHours(
    days=EVERY_DAY,
    opens=types_pb2.TimeOfDay(hours=STANDARD_OPENS[0], minutes=STANDARD_OPENS[1]),
    closes=types_pb2.TimeOfDay(hours=STANDARD_CLOSES[0], minutes=STANDARD_CLOSES[1]),
    year_end_closure=True,
)


def is_standard(hours: types_pb2.ServiceHours) -> bool:
    """True when ``hours`` sets nothing of its own (days, times): the standard applies."""
    return not hours.days and not hours.HasField("opens") and not hours.HasField("closes")


def effective_hours(hours: types_pb2.ServiceHours) -> types_pb2.ServiceHours:
    """``hours`` with the standard filled in for what it leaves out (what a catalogue shows)."""
    result = types_pb2.ServiceHours()
    result.CopyFrom(hours)
    if is_standard(hours):
        result.year_end_closure = True
    if not result.days:
        result.days.extend(EVERY_DAY)
    if not result.HasField("opens"):
        result.opens.CopyFrom(STANDARD_HOURS.opens)
    if not result.HasField("closes"):
        result.closes.CopyFrom(STANDARD_HOURS.closes)
    return result


def is_year_end(day: dt.date) -> bool:
    """29 December to 3 January."""
    return (day.month == 12 and day.day >= 29) or (day.month == 1 and day.day <= 3)


def to_date(value: types_pb2.Date) -> dt.date:
    """A wire Date as a ``datetime.date`` (ValueError if it is not a real day)."""
    return dt.date(value.year, value.month, value.day)


def _dates(values: Iterable[types_pb2.Date | dt.date]) -> set[dt.date]:
    return {v if isinstance(v, dt.date) else to_date(v) for v in values}


def _minutes(value: types_pb2.TimeOfDay) -> int:
    return value.hours * 60 + value.minutes


def is_open_at(
    at: dt.datetime,
    hours: types_pb2.ServiceHours,
    *,
    closed_dates: Iterable[types_pb2.Date | dt.date] = (),
    holidays: Collection[dt.date] | None = None,
) -> str | None:
    """None if open at ``at``, else the reason: SERVICE_CLOSED_DAY or OUTSIDE_SERVICE_HOURS.

    ``closed_dates`` adds days closed for every kind (a tenant's maintenance days); ``holidays``
    are the days closed for hours with ``closed_on_holidays`` (None: Japan's national holidays).
    """
    if at.tzinfo is None:
        raise ValueError("is_open_at needs an aware datetime")
    local = at.astimezone(JST)
    day = local.date()
    full = effective_hours(hours)
    if full.year_end_closure and is_year_end(day):
        return SERVICE_CLOSED_DAY
    if day in _dates(full.closed_dates) or day in _dates(closed_dates):
        return SERVICE_CLOSED_DAY
    if full.closed_on_holidays and day in (
        national_holidays(day.year) if holidays is None else holidays
    ):
        return SERVICE_CLOSED_DAY
    if day.isoweekday() not in set(full.days):
        return SERVICE_CLOSED_DAY
    minute = local.hour * 60 + local.minute
    if not _minutes(full.opens) <= minute < _minutes(full.closes):
        return OUTSIDE_SERVICE_HOURS
    return None


@cache
def national_holidays(year: int) -> frozenset[dt.date]:
    """Japan's national holidays (国民の祝日, substitute and citizens' holidays) in ``year``."""
    return frozenset(holiday_calendars.country_holidays("JP", years=year))


def check_open_at(
    at: dt.datetime,
    hours: types_pb2.ServiceHours,
    *,
    closed_dates: Iterable[types_pb2.Date | dt.date] = (),
    holidays: Collection[dt.date] | None = None,
) -> None:
    """Raise ``KonbiniError`` with the reason of :func:`is_open_at` when closed."""
    reason = is_open_at(at, hours, closed_dates=closed_dates, holidays=holidays)
    if reason is not None:
        raise KonbiniError(reason, f"closed at {at.astimezone(JST):%Y-%m-%d %H:%M} JST")
