"""QR codes as vector squares.

The mask pattern is fixed: segno's automatic choice evaluates all eight masks and costs about 5×
more (ARCHITECTURE.md: 12 ms against 2.5 ms for a 300-byte payload); any mask decodes the same.
"""

from __future__ import annotations

import segno

QUIET_ZONE = 4  # modules of white the QR specification requires around the symbol
DEFAULT_MASK = 2


def qr_modules(content: str, *, error: str = "m", mask: int = DEFAULT_MASK) -> list[bytearray]:
    """The module matrix (1 = dark) of ``content``; segno picks the smallest mode (base45 text
    fits alphanumeric mode)."""
    code = segno.make_qr(content, error=error, mask=mask, boost_error=False)
    return [bytearray(row) for row in code.matrix]


def qr_runs(matrix: list[bytearray]) -> list[tuple[int, int, int]]:
    """Horizontal runs of dark modules as (row, first column, length): one rectangle each."""
    runs: list[tuple[int, int, int]] = []
    for r, row in enumerate(matrix):
        c, n = 0, len(row)
        while c < n:
            if row[c]:
                start = c
                while c < n and row[c]:
                    c += 1
                runs.append((r, start, c - start))
            else:
                c += 1
    return runs
