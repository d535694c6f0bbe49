"""A 3 × 5 pixel bitmap font of our own, so the back side needs no font file and no PDF text.

It covers what a key id and a page label need: digits, A–Z (lower case is drawn as upper case),
space and ``- . _ : /``.
"""

from __future__ import annotations

import numpy as np

GLYPH_WIDTH = 3
GLYPH_HEIGHT = 5
_GLYPHS = {
    "0": "111 101 101 101 111", "1": "010 110 010 010 111", "2": "111 001 111 100 111",
    "3": "111 001 111 001 111", "4": "101 101 111 001 001", "5": "111 100 111 001 111",
    "6": "111 100 111 101 111", "7": "111 001 010 010 010", "8": "111 101 111 101 111",
    "9": "111 101 111 001 111", "A": "010 101 111 101 101", "B": "110 101 110 101 110",
    "C": "011 100 100 100 011", "D": "110 101 101 101 110", "E": "111 100 110 100 111",
    "F": "111 100 110 100 100", "G": "011 100 101 101 011", "H": "101 101 111 101 101",
    "I": "111 010 010 010 111", "J": "001 001 001 101 010", "K": "101 101 110 101 101",
    "L": "100 100 100 100 111", "M": "101 111 111 101 101", "N": "110 101 101 101 101",
    "O": "010 101 101 101 010", "P": "110 101 110 100 100", "Q": "010 101 101 110 011",
    "R": "110 101 110 101 101", "S": "011 100 010 001 110", "T": "111 010 010 010 010",
    "U": "101 101 101 101 111", "V": "101 101 101 101 010", "W": "101 101 111 111 101",
    "X": "101 101 010 101 101", "Y": "101 101 010 010 010", "Z": "111 001 010 100 111",
    " ": "000 000 000 000 000", "-": "000 000 111 000 000", ".": "000 000 000 000 010",
    "_": "000 000 000 000 111", ":": "000 010 000 010 000", "/": "001 001 010 100 100",
}
GLYPHS: dict[str, np.ndarray] = {
    char: np.array([[bit == "1" for bit in row] for row in rows.split()], dtype=bool)
    for char, rows in _GLYPHS.items()
}


def supports(text: str) -> bool:
    """True if every character of ``text`` has a glyph."""
    return all(char in GLYPHS for char in text.upper())


def text_mask(text: str, scale: int = 1) -> np.ndarray:
    """``text`` as a bool mask (True = ink), glyphs one font pixel apart, each font pixel drawn as
    ``scale`` × ``scale`` pixels."""
    if not supports(text):
        raise ValueError(f"the bitmap font cannot draw {text!r}")
    if not text:
        return np.zeros((GLYPH_HEIGHT * scale, 0), dtype=bool)
    gap = np.zeros((GLYPH_HEIGHT, 1), dtype=bool)
    parts: list[np.ndarray] = []
    for i, char in enumerate(text.upper()):
        if i:
            parts.append(gap)
        parts.append(GLYPHS[char])
    return np.kron(np.hstack(parts), np.ones((scale, scale), dtype=bool))
