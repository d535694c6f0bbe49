"""Typed failures of the rendering engine.

They are plain exceptions, not wire errors: the issuing server maps :class:`GlyphMissing` to the
catalogue reason ``CHARACTERS_NOT_SUPPORTED`` and treats :class:`FontMissing` as a deployment
fault (the server should refuse to start rather than print boxes).
"""

from __future__ import annotations


class RenderError(Exception):
    """Base of every rendering failure."""


class FontMissing(RenderError):
    """No usable font was found, or the configured one does not exist or cannot draw Japanese."""


class GlyphMissing(RenderError):
    """The font has no glyph for a character: printing it would show a box (.notdef).

    ``char`` is the whole cluster (base character plus any variation selector), so the caller can
    name exactly what cannot be printed. Its code points are in ``codepoints`` ("U+845B U+E0102").
    """

    def __init__(self, char: str) -> None:
        self.char = char
        self.codepoints = " ".join(f"U+{ord(c):04X}" for c in char)
        super().__init__(f"the font has no glyph for {self.codepoints}")


class LayoutError(RenderError):
    """A layout cannot be drawn as asked (a block wider than the page, an empty table width)."""
