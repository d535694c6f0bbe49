"""konbini.hours: which instants are open, per the standard and per a kind's own hours."""

from __future__ import annotations

import datetime as dt

import pytest

from konbini.clock import JST
from konbini.common.v1 import types_pb2
from konbini.errors import KonbiniError
from konbini.hours import (
    STANDARD_HOURS,
    check_open_at,
    effective_hours,
    is_open_at,
)

CLOSED = "SERVICE_CLOSED_DAY"
OUTSIDE = "OUTSIDE_SERVICE_HOURS"
EMPTY = types_pb2.ServiceHours()
WEEKDAYS_9_17 = types_pb2.ServiceHours(
    days=range(types_pb2.WEEKDAY_MONDAY, types_pb2.WEEKDAY_FRIDAY + 1),
    opens=types_pb2.TimeOfDay(hours=9),
    closes=types_pb2.TimeOfDay(hours=17),
    year_end_closure=True,
    closed_on_holidays=True,
)
LATE = types_pb2.ServiceHours(
    opens=types_pb2.TimeOfDay(hours=20), closes=types_pb2.TimeOfDay(hours=24)
)
MAINTENANCE = dt.date(2026, 5, 20)
HOLIDAY = dt.date(2026, 5, 5)  # こどもの日, a Tuesday


def jst(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=JST)  # type: ignore[misc]


CASES = [
    # (what, hours, instant, expected)
    ("standard opens at 06:30", EMPTY, jst(2026, 5, 13, 6, 30), None),
    ("standard before 06:30", EMPTY, jst(2026, 5, 13, 6, 29), OUTSIDE),
    ("standard 22:59", EMPTY, jst(2026, 5, 13, 22, 59), None),
    ("standard closes at 23:00 (exclusive)", EMPTY, jst(2026, 5, 13, 23, 0), OUTSIDE),
    ("standard Sunday", EMPTY, jst(2026, 5, 17, 12, 0), None),
    ("standard 28 Dec", EMPTY, jst(2026, 12, 28, 12, 0), None),
    ("year-end 29 Dec", EMPTY, jst(2026, 12, 29, 12, 0), CLOSED),
    ("year-end 1 Jan", EMPTY, jst(2027, 1, 1, 12, 0), CLOSED),
    ("year-end 3 Jan", EMPTY, jst(2027, 1, 3, 12, 0), CLOSED),
    ("4 Jan opens", EMPTY, jst(2027, 1, 4, 12, 0), None),
    ("year-end beats hours of the day", EMPTY, jst(2026, 12, 30, 3, 0), CLOSED),
    ("maintenance day", EMPTY, jst(2026, 5, 20, 12, 0), CLOSED),
    ("weekday kind on Monday", WEEKDAYS_9_17, jst(2026, 5, 18, 9, 0), None),
    ("weekday kind at 17:00", WEEKDAYS_9_17, jst(2026, 5, 18, 17, 0), OUTSIDE),
    ("weekday kind at 08:59", WEEKDAYS_9_17, jst(2026, 5, 18, 8, 59), OUTSIDE),
    ("weekday kind on Saturday", WEEKDAYS_9_17, jst(2026, 5, 16, 12, 0), CLOSED),
    ("weekday kind on a holiday", WEEKDAYS_9_17, jst(2026, 5, 5, 12, 0), CLOSED),
    ("standard on a holiday", EMPTY, jst(2026, 5, 5, 12, 0), None),
    ("until midnight", LATE, jst(2026, 5, 13, 23, 59), None),
    ("partial hours: no year-end closure asked", LATE, jst(2026, 12, 31, 21, 0), None),
    ("UTC instant read in JST", EMPTY,
     dt.datetime(2026, 5, 13, 21, 30, tzinfo=dt.UTC), None),  # 06:30 JST on the 14th
    ("UTC instant before opening in JST", EMPTY,
     dt.datetime(2026, 5, 13, 21, 29, tzinfo=dt.UTC), OUTSIDE),
]


@pytest.mark.parametrize(("what", "hours", "at", "expected"), CASES, ids=[c[0] for c in CASES])
def test_is_open_at(
    what: str, hours: types_pb2.ServiceHours, at: dt.datetime, expected: str | None
) -> None:
    assert is_open_at(at, hours, closed_dates=[MAINTENANCE], holidays={HOLIDAY}) == expected


def test_closed_dates_inside_the_hours_are_closed() -> None:
    hours = types_pb2.ServiceHours(closed_dates=[types_pb2.Date(year=2026, month=6, day=1)])
    assert is_open_at(jst(2026, 6, 1, 12), hours) == CLOSED
    assert is_open_at(jst(2026, 6, 2, 12), hours) is None


def test_check_open_at_raises_the_reason() -> None:
    with pytest.raises(KonbiniError) as info:
        check_open_at(jst(2026, 12, 31, 12), EMPTY)
    assert info.value.reason == CLOSED
    with pytest.raises(KonbiniError) as info:
        check_open_at(jst(2026, 5, 13, 5), EMPTY)
    assert info.value.reason == OUTSIDE
    check_open_at(jst(2026, 5, 13, 12), EMPTY)


def test_naive_instant_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        is_open_at(dt.datetime(2026, 5, 13, 12), EMPTY)


def test_effective_hours_fill_in_the_standard() -> None:
    assert effective_hours(EMPTY) == STANDARD_HOURS
    late = effective_hours(LATE)
    assert list(late.days) == list(STANDARD_HOURS.days)
    assert late.opens.hours == 20 and not late.year_end_closure


WEEKDAYS_ONLY = types_pb2.ServiceHours(
    days=[types_pb2.WEEKDAY_MONDAY + i for i in range(5)],
    opens=types_pb2.TimeOfDay(hours=9), closes=types_pb2.TimeOfDay(hours=17),
    year_end_closure=True, closed_on_holidays=True,
)


@pytest.mark.parametrize(
    ("day", "expected"),
    [
        ((2026, 11, 23), CLOSED),  # 勤労感謝の日, a Monday
        ((2026, 5, 6), CLOSED),    # 振替休日 for 憲法記念日 on a Sunday
        ((2026, 9, 22), CLOSED),   # 国民の休日 between 敬老の日 and 秋分の日
        ((2026, 11, 24), None),    # an ordinary Tuesday
    ],
)
def test_national_holidays_close_weekday_only_kinds(
    day: tuple[int, int, int], expected: str | None
) -> None:
    assert is_open_at(jst(*day, 12), WEEKDAYS_ONLY) == expected
    # Kinds with the standard hours stay open on holidays.
    assert is_open_at(jst(*day, 12), EMPTY) is None


def test_a_caller_may_give_its_own_holidays() -> None:
    assert is_open_at(jst(2026, 11, 23, 12), WEEKDAYS_ONLY, holidays=()) is None
