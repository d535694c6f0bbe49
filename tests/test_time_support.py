"""Service-hours time for tests that run servers (imported by other test files; holds no
tests itself).

CI runs at any hour, but the sides refuse outside the kiosk service hours (06:30-23:00 JST,
closed 29 Dec-3 Jan; family registers at some municipalities: weekdays 09-17, closed on
national holidays). So a test pins every clock it depends on to :func:`service_instant` of the
real time: the last weekday noon in Japan, at or before now, when every kind is open. That
instant lies in the past, so a PKI (and cards, CRLs) made :data:`PKI_LEAD` before it is valid
both at the pinned time and at the real time that TLS checks certificates against.
"""

from __future__ import annotations

import datetime as dt

from konbini.clock import JST, OffsetClock
from konbini.hours import is_year_end, national_holidays

# How long before the pinned instant a test's PKI and cards are made.
PKI_LEAD = dt.timedelta(hours=1)


def service_instant(real_now: dt.datetime) -> dt.datetime:
    """The last weekday 12:00 JST at or before ``real_now`` that is neither in the year-end
    closure nor a national holiday (weekday-only family registers must be open)."""
    day = real_now.astimezone(JST).date()
    while True:
        noon = dt.datetime(day.year, day.month, day.day, 12, tzinfo=JST)
        if (noon <= real_now and day.weekday() < 5 and not is_year_end(day)
                and day not in national_holidays(day.year)):
            return noon.astimezone(dt.UTC)
        day -= dt.timedelta(days=1)


def pinned_now() -> dt.datetime:
    """:func:`service_instant` of the real time now."""
    return service_instant(dt.datetime.now(dt.UTC))


def pki_instant() -> dt.datetime:
    """When a test's PKI and cards should be made: :data:`PKI_LEAD` before the pinned time."""
    return pinned_now() - PKI_LEAD


def pinned_clock() -> OffsetClock:
    """A clock that runs at real speed from :func:`pinned_now` (inject it into a server)."""
    real = dt.datetime.now(dt.UTC)
    return OffsetClock(service_instant(real) - real)
