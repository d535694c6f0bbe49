"""Japanese municipality codes (全国地方公共団体コード): 5 digits plus a check digit.

The check digit: multiply the five digits by 6, 5, 4, 3, 2, sum, r = sum mod 11,
digit = (11 - r) mod 10.
"""

from __future__ import annotations

_WEIGHTS = (6, 5, 4, 3, 2)


def check_digit(five: str) -> str:
    """The check digit of a 5-digit municipality code (``"13101"`` → ``"6"``)."""
    if len(five) != 5 or not five.isascii() or not five.isdigit():
        raise ValueError(f"a municipality code body is 5 ASCII digits, got {five!r}")
    total = sum(int(d) * w for d, w in zip(five, _WEIGHTS, strict=True))
    return str((11 - total % 11) % 10)


def validate_municipality_code(code: str) -> bool:
    """True if ``code`` is 6 ASCII digits whose last digit is the check digit of the first five."""
    if len(code) != 6 or not code.isascii() or not code.isdigit():
        return False
    return check_digit(code[:5]) == code[5]
