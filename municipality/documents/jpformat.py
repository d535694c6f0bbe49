"""How certificates print dates, money, sexes and numbers (Japanese era dates by default)."""

from __future__ import annotations

import datetime as dt

from konbini.common.v1 import types_pb2
from konbini.register.v1 import register_pb2

# (first day, era name), newest first. Dates before Meiji 6 (the solar calendar) print western.
_ERAS: tuple[tuple[dt.date, str], ...] = (
    (dt.date(2019, 5, 1), "令和"),
    (dt.date(1989, 1, 8), "平成"),
    (dt.date(1926, 12, 25), "昭和"),
    (dt.date(1912, 7, 30), "大正"),
    (dt.date(1873, 1, 1), "明治"),
)
_MEIJI_START_YEAR = 1868


def era_year(year: int, start: dt.date, name: str) -> str:
    number = year - start.year + 1
    return f"{name}{'元' if number == 1 else number}"


def era_date(day: dt.date) -> str:
    """``令和7年4月1日``; the western form for dates before the solar calendar."""
    for start, name in _ERAS:
        if day >= start:
            return f"{era_year(day.year, start, name)}年{day.month}月{day.day}日"
    return western_date(day)


def western_date(day: dt.date) -> str:
    """``2025年4月1日``."""
    return f"{day.year}年{day.month}月{day.day}日"


def fiscal_year_label(year: int) -> str:
    """``令和7年度`` for fiscal year 2025. A fiscal year takes the era in force by the end of its
    calendar year: FY2019 is 令和元年度 (era from May 2019), FY1988 stays 昭和63年度."""
    for start, name in _ERAS:
        if dt.date(year, 12, 31) >= start:
            return f"{era_year(year, start, name)}年度"
    return f"{year}年度"


def income_year_label(year: int) -> str:
    """``令和6年分``: the calendar year whose income a fiscal year's tax is assessed on."""
    for start, name in _ERAS:
        if dt.date(year, 12, 31) >= start:
            return f"{era_year(year, start, name)}年分"
    return f"{year}年分"


def proto_date(value: types_pb2.Date) -> dt.date | None:
    """The date, or None when unset or impossible."""
    try:
        return dt.date(value.year, value.month, value.day)
    except ValueError:
        return None


def print_date(value: types_pb2.Date, *, western: bool = False) -> str:
    """A register date as printed; an unset date prints empty."""
    day = proto_date(value)
    if day is None:
        return ""
    return western_date(day) if western else era_date(day)


def yen(amount: types_pb2.Money) -> str:
    """``1,234,000円``."""
    return f"{amount.yen:,}円"


SEX_LABELS = {register_pb2.SEX_MALE: "男", register_pb2.SEX_FEMALE: "女"}


def sex_label(sex: int) -> str:
    return SEX_LABELS.get(sex, "")


def individual_number(number: str) -> str:
    """12 digits in groups of four, as on the My Number Card."""
    digits = number.strip()
    if len(digits) == 12 and digits.isdigit():
        return f"{digits[:4]} {digits[4:8]} {digits[8:]}"
    return digits
