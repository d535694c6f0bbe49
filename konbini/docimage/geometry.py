"""Pixel boxes on page images."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Box:
    """An axis-aligned pixel box, ``left``/``top`` inclusive, ``right``/``bottom`` exclusive."""

    left: int
    top: int
    right: int
    bottom: int

    @property
    def width(self) -> int:
        return self.right - self.left

    @property
    def height(self) -> int:
        return self.bottom - self.top

    def expanded(self, margin: int) -> Box:
        """This box grown by ``margin`` pixels on every side (may leave the image; see clip)."""
        return Box(self.left - margin, self.top - margin, self.right + margin, self.bottom + margin)

    def scaled(self, factor: float) -> Box:
        """This box in the pixels of an image ``factor`` times as large."""
        return Box(
            int(self.left * factor),
            int(self.top * factor),
            round(self.right * factor),
            round(self.bottom * factor),
        )

    def clipped(self, width: int, height: int) -> Box:
        """This box limited to an image of ``width`` × ``height`` pixels."""
        return Box(
            max(0, min(self.left, width)),
            max(0, min(self.top, height)),
            max(0, min(self.right, width)),
            max(0, min(self.bottom, height)),
        )
